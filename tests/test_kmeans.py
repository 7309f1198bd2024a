"""k-means: determinism, resume after a kill, parity with the fairseq recipe, the units folder it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obt_eval.errors import BadInputError
from obt_eval.features.store import FeatureStoreWriter
from obt_eval.units import kmeans as km
from obt_eval.units.kmeans import KMeansConfig, fit_kmeans, inertia_of, predict
from obt_eval.units.learn import learn_units
from obt_eval.units.store import UnitsStore


def blobs(n=3000, dim=16, centres=40, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 2, (centres, dim))
    return (c[rng.integers(centres, size=n)] + rng.normal(0, spread, (n, dim))).astype(np.float32), c


def make_store(path, n_utts=30, dim=8, seed=0, nan_uids=(), empty_uids=()):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (12, dim))
    items = []
    for i in range(n_utts):
        uid = f"u{i:03d}"
        n = 0 if uid in empty_uids else int(rng.integers(20, 60))
        x = centres[rng.integers(12, size=n)] + rng.normal(0, 0.5, (n, dim))
        if uid in nan_uids:
            x[0, 0] = np.nan
        items.append((uid, x.astype(np.float32)))
    writer = FeatureStoreWriter(path, {"dim": dim, "layer": 3, "encoder": "toy", "corpus": "toycorpus"})
    writer.write_shard(0, items[: n_utts // 2])
    writer.write_shard(1, items[n_utts // 2 :])
    return writer.finalize(2)


def test_same_seed_same_codebook_other_seed_differs():
    x, _ = blobs(n=1500)
    cfg = KMeansConfig(k=20, seed=3, n_init=2)
    a, b = fit_kmeans(x, cfg), fit_kmeans(x, cfg)
    assert np.array_equal(a.centroids, b.centroids) and a.inertia == b.inertia
    c = fit_kmeans(x, KMeansConfig(k=20, seed=4, n_init=2))
    assert not np.array_equal(a.centroids, c.centroids)


def test_lloyd_reaches_a_fixed_point():
    x, _ = blobs(spread=1.5)
    res = fit_kmeans(x, KMeansConfig(k=30, n_init=3, tol=0.0, max_iter=300))
    labels, _ = predict(x, res.centroids)
    # at a Lloyd fixed point every centroid is the mean of its frames
    for j in np.unique(labels)[:5]:
        np.testing.assert_allclose(res.centroids[j], x[labels == j].mean(0), atol=1e-4)
    assert res.n_iter < 300  # converged, not cut off


def test_heldout_inertia_no_worse_than_fairseq_minibatch_recipe():
    from sklearn.cluster import MiniBatchKMeans

    x, c = blobs(n=2500, dim=16, centres=60, spread=1.5, seed=1)
    rng = np.random.default_rng(9)
    held = (c[rng.integers(60, size=2000)] + rng.normal(0, 1.5, (2000, 16))).astype(np.float32)
    ours = fit_kmeans(x, KMeansConfig(k=25, seed=0))
    recipe = MiniBatchKMeans(25, init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100,
                             n_init=20, init_size=None, reassignment_ratio=0.0, random_state=0).fit(x)
    assert inertia_of(held, ours.centroids) <= inertia_of(held, recipe.cluster_centers_) * 1.001


def test_killed_fit_resumes_to_the_same_codebook(tmp_path, monkeypatch):
    x, _ = blobs(n=4000, spread=2.0, seed=2)
    cfg = KMeansConfig(k=40, n_init=1, tol=0.0, max_iter=40, init_size=500)
    clean = fit_kmeans(x, cfg)
    assert clean.n_iter > 6  # the kill below happens mid-fit

    original = km._Checkpoint.save_lloyd

    def save_then_die(self, *args):
        original(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(km._Checkpoint, "save_lloyd", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit_kmeans(x, cfg, checkpoint=tmp_path / "ck")
    assert (tmp_path / "ck" / "init.npz").exists() and (tmp_path / "ck" / "lloyd.npz").exists()
    monkeypatch.setattr(km._Checkpoint, "save_lloyd", original)
    resumed = fit_kmeans(x, cfg, checkpoint=tmp_path / "ck")
    np.testing.assert_array_equal(resumed.centroids, clean.centroids)
    # a checkpoint of other settings is ignored, not mixed in
    other = fit_kmeans(x, KMeansConfig(k=40, n_init=1, tol=0.0, max_iter=40, init_size=500, seed=1),
                       checkpoint=tmp_path / "ck")
    assert not np.array_equal(other.centroids, clean.centroids)


def test_gpu_centroid_sums_match_cpu_ones():
    import torch

    x = torch.from_numpy(blobs(n=700)[0])
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 9, 700))
    a, ca = km._centroid_sums(x, labels, 9, 1000, onehot=False)  # CPU path: index_add_
    b, cb = km._centroid_sums(x, labels, 9, 1000, onehot=True)  # CUDA path: one-hot matmul, in chunks
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    assert torch.equal(ca, cb)


def test_bad_inputs_raise_clear_errors():
    x, _ = blobs(n=50)
    with pytest.raises(BadInputError, match="larger than the 50 frames"):
        fit_kmeans(x, KMeansConfig(k=60))
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        fit_kmeans(bad, KMeansConfig(k=5))
    with pytest.raises(BadInputError):
        fit_kmeans(x[:, 0], KMeansConfig(k=5))


def test_learn_units_writes_assigns_and_reuses(tmp_path):
    store = make_store(tmp_path / "feats", nan_uids=("u004",), empty_uids=("u007",))
    cfg = KMeansConfig(k=12, sample_frac=0.5, seed=0)
    res = learn_units(store, cfg, out_dir=tmp_path / "units", progress=False)
    units = UnitsStore.open(tmp_path / "units")
    meta = units.meta
    assert units.k == 12 and meta["seed"] == 0 and meta["layer"] == 3 and meta["encoder"] == "toy"
    assert meta["corpus"] == "toycorpus" and meta["features"] == str(store.path.resolve())
    assert meta["sample_frames"] > 0 and meta["heldout_inertia"] is not None and meta["inertia"] > 0
    assert set(res.skipped) == {"u004", "u007"} and "u004" not in units
    assert len(units) == 28 and not (tmp_path / "units" / ".kmeans-work").exists()
    # every frame gets its nearest centroid
    for uid in ("u000", "u010", "u029"):
        np.testing.assert_array_equal(units.get(uid), predict(store.get(uid), units.codebook)[0])
    again = learn_units(store, cfg, out_dir=tmp_path / "units", progress=False)
    assert again.reused
    with pytest.raises(BadInputError, match="other settings"):
        learn_units(store, KMeansConfig(k=8, sample_frac=0.5), out_dir=tmp_path / "units", progress=False)
    forced = learn_units(store, KMeansConfig(k=8, sample_frac=0.5), out_dir=tmp_path / "units", force=True,
                         progress=False)
    assert forced.units.k == 8 and not forced.reused


def test_k_larger_than_sample_names_the_fix(tmp_path):
    store = make_store(tmp_path / "feats", n_utts=4)
    with pytest.raises(BadInputError, match="sample-frac"):
        learn_units(store, KMeansConfig(k=500, sample_frac=0.25), out_dir=tmp_path / "u", progress=False)


def test_units_cli_json(tmp_path, workspace):
    from typer.testing import CliRunner

    from obt_eval_cli.main import build_app

    make_store(tmp_path / "feats")
    result = CliRunner().invoke(build_app(), ["units", "--features", str(tmp_path / "feats"), "--k", "10",
                                              "--sample-frac", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["k"] == 10 and summary["utterances"] == 30
    assert summary["units"].startswith(str(workspace.root / "units"))
    help_text = CliRunner().invoke(build_app(), ["units", "--help"]).stdout
    assert "--sample-frac" in help_text
