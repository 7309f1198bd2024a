"""demo corpus -> search (mfcc, logmel, tiny wav2vec2) -> compare, and unit-metrics on what search made."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from obt_eval.corpus import Corpus
from obt_eval.errors import NotFoundError
from obt_eval.metrics.unit_report import UnitMetricsConfig, unit_metrics
from obt_eval.report.compare import compare
from obt_eval.search import SearchConfig, search_layers
from obt_eval.units.learn import sidecar_hash
from obt_eval.workspace import Workspace
from obt_eval_cli.main import build_app


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A small ingested demo corpus (twice, as two 'languages'), searched with three encoders."""
    from conftest import save_tiny_model

    from obt_eval.corpus.ingest import ingest
    from obt_eval.demo_corpus import make_demo_corpus

    root = tmp_path_factory.mktemp("search")
    ws = Workspace.at(root / "ws")
    info = make_demo_corpus(root / "demo", languages=("pt-br",), speakers_per_language=2, sentences_per_language=6)
    for name in ("demo", "demo2"):
        ingest(info.wav_dir, name, ws, metadata=info.metadata_path, alignments=info.textgrid_dir, progress=False)
    save_tiny_model(root / "tiny-w2v2")
    cfg = SearchConfig(ks=[8, 16], sample_frac=0.5, n_init=1)
    results = {
        "mfcc": search_layers("demo", "mfcc", None, ws, cfg, progress=False),
        "logmel": search_layers("demo", "logmel", None, ws, SearchConfig(ks=[8], sample_frac=0.5, n_init=1),
                                progress=False),
        "tiny": search_layers("demo", str(root / "tiny-w2v2"), [1, 2], ws,
                              SearchConfig(ks=[8], sample_frac=0.5, n_init=1), progress=False),
    }
    return ws, root, results


def test_search_scores_every_layer_and_k_and_names_the_best(searched):
    ws, _, results = searched
    mfcc = results["mfcc"]
    assert list(mfcc.rows["k"]) == [8, 16] and mfcc.best_layer is None and mfcc.best_metric == "abx_within"
    for col in ("abx_within", "abx_across", "pnmi", "shuffled_pnmi", "silhouette_units", "silhouette_phones",
                "unit_abx_within", "heldout_inertia", "units_hash", "features_hash"):
        assert mfcc.rows[col].notna().all(), col
    # formant-synthesised speech: MFCC separates phones far better than chance, PNMI beats shuffled units
    assert mfcc.rows["abx_within"].iloc[0] < 0.2
    assert (mfcc.rows["pnmi"] > mfcc.rows["shuffled_pnmi"] + 0.1).all()
    tiny = results["tiny"]
    assert sorted(tiny.rows["layer"]) == [1, 2] and tiny.best_layer in (1, 2)
    best_abx = tiny.rows.loc[tiny.rows["layer"] == tiny.best_layer, "abx_within"].iloc[0]
    assert best_abx == tiny.rows["abx_within"].min() == pytest.approx(tiny.best_score)
    saved = json.loads((tiny.path / "results.json").read_text())
    assert saved["encoder"] == "tiny-w2v2" and saved["best_layer"] == tiny.best_layer
    assert (tiny.path / "results.csv").exists()


def test_search_again_reuses_features_and_units(searched):
    ws, _, results = searched
    before = results["mfcc"].rows["units"].tolist()
    mtimes = [(Path(u) / "sidecar.json").stat().st_mtime for u in before]
    again = search_layers("demo", "mfcc", None, ws, SearchConfig(ks=[8, 16], sample_frac=0.5, n_init=1),
                          progress=False)
    assert again.rows["units"].tolist() == before
    assert [(Path(u) / "sidecar.json").stat().st_mtime for u in before] == mtimes
    pd.testing.assert_series_equal(again.rows["pnmi"], results["mfcc"].rows["pnmi"])


def test_compare_writes_table_plots_and_traceable_sources(searched):
    ws, _, _ = searched
    res = compare("demo", ws)
    assert set(res.summary["encoder"]) == {"mfcc", "logmel", "tiny-w2v2"}
    for key in ("markdown", "csv", "html", "abx_plot", "pnmi_plot", "sources"):
        assert Path(res.files[key]).exists(), key
    for png in ("abx_by_layer.png", "pnmi_vs_k.png"):
        assert (res.out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (res.out_dir / "table.md").read_text()
    assert "Best layer per encoder" in md and "tiny-w2v2" in md
    table = pd.read_csv(res.out_dir / "table.csv")
    assert len(table) == 2 + 1 + 2  # mfcc k=8,16; logmel k=8; tiny layers 1,2
    sources = json.loads((res.out_dir / "sources.json").read_text())
    for row in sources["pnmi_vs_k.png"]:
        assert sidecar_hash(row["units"]) == row["units_hash"]  # every number names its artifact
    # links are relative to the page: they resolve from its folder, wherever the workspace lives
    import re
    from urllib.parse import unquote

    hrefs = re.findall(r'href="([^"]+)"', (res.out_dir / "table.html").read_text())
    assert hrefs and not any(h.startswith(("file:", "/")) for h in hrefs)
    for href in hrefs:
        assert (res.out_dir / unquote(href)).exists(), href
    only = compare("demo", ws, ["mfcc"], out_dir=res.out_dir.parent / "only")
    assert list(only.summary["encoder"]) == ["mfcc"]
    with pytest.raises(NotFoundError, match="obt-eval search"):
        compare("demo", ws, ["xlsr53"])
    with pytest.raises(NotFoundError):
        compare("nocorpus", ws)


def test_unit_metrics_on_search_units_and_crosslingual(searched):
    ws, _, results = searched
    units = results["mfcc"].rows["units"].iloc[0]
    # the same recordings ingested as a second corpus: transfer must equal its own codebook exactly
    from obt_eval.features.extract import extract_features
    from obt_eval.units.kmeans import KMeansConfig
    from obt_eval.units.learn import learn_units

    store = extract_features(Corpus.open("demo2", ws), "mfcc", None, ws, progress=False)[None]
    other = learn_units(store, KMeansConfig(k=8, sample_frac=0.5, n_init=1), workspace=ws, progress=False)
    out = unit_metrics(units, workspace=ws, config=UnitMetricsConfig(silhouette_sample=500),
                       crosslingual_units=other.units.path)
    for key in ("pnmi", "shuffled_pnmi", "phone_purity", "cluster_purity", "silhouette", "bitrate",
                "bitrate_dedup", "abx_within", "abx_across", "abx_gap", "speaker_probe_accuracy"):
        assert key in out, (key, out["not_computed"])
    assert out["sample_size"] == 500 and out["not_computed"] == {}
    assert out["bitrate_dedup"] < out["bitrate"]
    # one bitrate definition: unit-metrics and search (hence compare) report the same number for the same units
    row = results["mfcc"].rows.iloc[0]
    assert out["bitrate"] == pytest.approx(row["bitrate"])
    assert out["bitrate_dedup"] == pytest.approx(row["bitrate_dedup"])
    durations = Corpus.open("demo", ws).manifest.set_index("id")["duration"]
    assert out["seconds"] == pytest.approx(float(durations.sum()))  # audio seconds, not frames / 50
    cross = out["crosslingual"]
    assert cross["transfer_pnmi"] == pytest.approx(out["pnmi"])
    assert cross["usage_jsd"] == pytest.approx(0.0) and cross["argmax_agreement"] == 1.0
    assert cross["transfer_abx_within"] == pytest.approx(cross["own_abx_within_b"])
    assert json.loads((Path(units) / "metrics.json").read_text())["k"] == 8


def test_cli_search_compare_unit_metrics_json(searched, monkeypatch):
    ws, _, results = searched
    monkeypatch.setenv("OBT_EVAL_HOME", str(ws.root))
    runner = CliRunner()
    r = runner.invoke(build_app(), ["search", "--corpus", "demo", "--encoder", "mfcc", "--k", "8,16",
                                    "--sample-frac", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["best_metric"] == "abx_within"
    r = runner.invoke(build_app(), ["compare", "--corpus", "demo", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout.strip().splitlines()[-1])["summary"]) == 3
    r = runner.invoke(build_app(), ["unit-metrics", results["mfcc"].rows["units"].iloc[1], "--no-abx", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["k"] == 16
    corpus = Corpus.open("demo", ws)
    feats = results["mfcc"].rows["features"].iloc[0]
    r = runner.invoke(build_app(), ["abx", str(corpus.item_path), feats, "--json"])
    assert "no ABX cell" in str(r.exception)  # the abx command itself never changes the context silently
    r = runner.invoke(build_app(), ["abx", str(corpus.item_path), feats, "--context", "any", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["config"]["frame_offset"] == 0.0125
    for cmd in ("units", "abx", "unit-metrics", "search", "compare"):
        assert runner.invoke(build_app(), [cmd, "--help"]).exit_code == 0
