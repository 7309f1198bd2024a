"""ABX against an independent, slow, plain-Python reference (fastabx semantics, bug-fixed slicing)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from obt_eval.errors import BadInputError
from obt_eval.metrics.abx import AbxConfig, abx, abx_from_paths, dtw_both

# ------------------------------------------------------------------------------ slow reference


def ref_frame_distance(a, b, distance):
    if distance == "identical":
        return 0.0 if a[0] == b[0] else 1.0
    dot = sum(p * q for p, q in zip(a, b, strict=True))
    return math.acos(max(-1.0, min(1.0, dot))) / math.pi


def ref_normalise(frames):
    out = []
    for f in frames:
        norm = math.sqrt(sum(v * v for v in f))
        if norm == 0:
            out.append([1 / math.sqrt(len(f))] * len(f) + [-2e-12])
        else:
            out.append([v / norm for v in f] + [1e-12])
    return out


def ref_dtw(x, y, distance):
    """The fastabx C++ loop, transcribed: accumulated cost, back-track, divide by path length."""
    n, m = len(x), len(y)
    d = [[ref_frame_distance(x[i], y[j], distance) for j in range(m)] for i in range(n)]
    c = [[0.0] * m for _ in range(n)]
    c[0][0] = d[0][0]
    for i in range(1, n):
        c[i][0] = d[i][0] + c[i - 1][0]
    for j in range(1, m):
        c[0][j] = d[0][j] + c[0][j - 1]
    for i in range(1, n):
        for j in range(1, m):
            c[i][j] = d[i][j] + min(c[i - 1][j], c[i - 1][j - 1], c[i][j - 1])
    i, j, length = n - 1, m - 1, 1
    while i > 0 and j > 0:
        up, left, diag = c[i - 1][j], c[i][j - 1], c[i - 1][j - 1]
        if diag <= left and diag <= up:
            i, j = i - 1, j - 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        length += 1
    length += i + j
    return c[n - 1][m - 1] / length


def reference_abx(items, feats, speaker, context, distance, frame_offset=0.01, rate=50):
    segs = []
    for row in items.itertuples(index=False):
        f = feats.get(row.file)
        if f is None:
            continue
        s = math.ceil(round((row.onset - frame_offset) * rate, 6))
        e = math.floor(round((row.offset - frame_offset) * rate, 6)) + 1
        if e <= s or s < 0 or e > len(f):
            continue
        frames = [list(map(float, v)) for v in f[s:e]]
        if distance == "angular":
            frames = ref_normalise(frames)
        ctx = (row.prev, row.next) if context == "within" else None
        segs.append((frames, row.phone, ctx, row.speaker))
    cache = {}

    def dist(i, j):
        if (i, j) not in cache:
            cache[(i, j)] = ref_dtw(segs[i][0], segs[j][0], distance)
        return cache[(i, j)]

    def score(xs, as_, bs, symmetric):
        total, count = 0.0, 0
        for x in xs:
            for a in as_:
                if symmetric and a == x:
                    continue
                dxa = dist(min(x, a), max(x, a)) if symmetric else dist(x, a)
                for b in bs:
                    dxb = dist(x, b)
                    total += 1.0 if dxa < dxb else (0.5 if dxa == dxb else 0.0)
                    count += 1
        return 1 - total / count

    groups = {}
    for k, (_, ph, ctx, spk) in enumerate(segs):
        groups.setdefault((ctx, spk, ph), []).append(k)
    cells = []  # (A, B, ctx, spk, spk_x, error)
    keys = sorted(groups, key=str)
    for ctx, spk, pa in keys:
        for ctx2, spk2, pb in keys:
            if (ctx2, spk2) != (ctx, spk) or pb == pa:
                continue
            A, B = groups[(ctx, spk, pa)], groups[(ctx, spk, pb)]
            if speaker == "within":
                if len(A) >= 2:
                    cells.append((pa, pb, ctx, spk, spk, score(A, A, B, True)))
            else:
                for ctx3, sx, px in keys:
                    if ctx3 == ctx and px == pa and sx != spk:
                        cells.append((pa, pb, ctx, spk, sx, score(groups[(ctx, sx, pa)], A, B, False)))
    per = {}
    if speaker == "across" and context == "any":
        for pa, pb, _, _, _, err in cells:
            per.setdefault((pa, pb), []).append(err)
        return sum(sum(v) / len(v) for v in per.values()) / len(per)
    for pa, pb, _, spk, _, err in cells:
        per.setdefault((pa, pb, spk), []).append(err)
    pairs = {}
    for (pa, pb, _), v in per.items():
        pairs.setdefault((pa, pb), []).append(sum(v) / len(v))
    return sum(sum(v) / len(v) for v in pairs.values()) / len(pairs)


# --------------------------------------------------------------------------------- test data


def synthetic(n_files=6, n_phones=20, dim=8, seed=0, discrete=False, noise=1.0):
    """Item table + features like the note's generator: phones = noisy centroids, 3 speakers."""
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    phones = ["a", "e", "i", "p", "t"]
    cent = {p: rng.normal(0, 1, dim) for p in phones}
    rows, feats = [], {}
    for f in range(n_files):
        spk = ["s1", "s2", "s3"][f % 3]
        seq = [rnd.choice(phones) for _ in range(n_phones)]
        frames, t = [], 0.0
        for i, p in enumerate(seq):
            n = rnd.randint(2, 5)
            block = cent[p] + rng.normal(0, noise, (n, dim))
            frames.append(block)
            if 0 < i < len(seq) - 1:
                rows.append((f"u{f}", round(t, 4), round(t + n / 50, 4), p, seq[i - 1], seq[i + 1], spk))
            t += n / 50
        x = np.concatenate(frames).astype(np.float32)
        if discrete:
            x = rng.integers(0, 3, size=(len(x), 1)).astype(np.float32)  # ties galore
        feats[f"u{f}"] = x
    items = pd.DataFrame(rows, columns=["file", "onset", "offset", "phone", "prev", "next", "speaker"])
    return items, feats


CASES = [(s, c) for s in ("within", "across") for c in ("within", "any")]


@pytest.mark.parametrize(("speaker", "context"), CASES)
def test_angular_equals_reference(speaker, context):
    items, feats = synthetic(n_files=9, n_phones=20, noise=1.5)
    feats["u0"][3] = 0.0  # a zero frame exercises the singularity border
    cfg = AbxConfig(speaker=speaker, context=context, max_size_group=0, max_x_across=0, dtype="float64")
    got = abx(items, feats, cfg)
    want = reference_abx(items, feats, speaker, context, "angular")
    # one flipped triplet would move the score by > 1e-6; this is equality up to summation order
    assert got.error == pytest.approx(want, abs=1e-12)
    assert got.num_cells > 20 and 0.0 < got.error < 0.5


@pytest.mark.parametrize(("speaker", "context"), CASES)
def test_identical_equals_reference_with_ties(speaker, context):
    items, feats = synthetic(n_files=9, n_phones=16, discrete=True, seed=1)
    cfg = AbxConfig(speaker=speaker, context=context, distance="identical", max_size_group=0, max_x_across=0)
    got = abx(items, feats, cfg)
    want = reference_abx(items, feats, speaker, context, "identical")
    assert got.error == pytest.approx(want, abs=1e-12)


def test_float32_default_close_to_reference():
    items, feats = synthetic(n_files=6, n_phones=16, noise=1.5)
    got = abx(items, feats, AbxConfig(max_size_group=0, context="any"))
    want = reference_abx(items, feats, "within", "any", "angular")
    assert got.error == pytest.approx(want, abs=2e-3)


@pytest.mark.parametrize(
    ("speaker", "context", "distance"),
    [("within", "within", "angular"), ("across", "any", "angular"), ("within", "any", "identical")],
)
def test_torch_and_numba_dtw_agree_exactly(speaker, context, distance):
    # within/within uses per-group Gram blocks; across/any subsampled, the per-pair path
    items, feats = synthetic(n_files=9, n_phones=20, noise=1.5, discrete=distance == "identical")
    base = dict(speaker=speaker, context=context, distance=distance, max_size_group=3, dtype="float64")
    a = abx(items, feats, AbxConfig(**base, dtw_engine="torch"))
    b = abx(items, feats, AbxConfig(**base, dtw_engine="numba"))
    assert a.error == b.error
    pd.testing.assert_frame_equal(a.details, b.details)


def test_dtw_orientation_differs_only_in_path_length():
    # a tie between 'left' and 'up' makes the two orientations take paths of different lengths
    d = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    want_f = ref_dtw([[v] for v in range(3)], [[v] for v in range(3)], "identical")
    import torch

    f, r = dtw_both(torch.tensor(d)[None], torch.tensor([3]), torch.tensor([3]))
    assert f.item() == pytest.approx(want_f)
    # reverse equals the forward DTW of the transposed matrix
    f2, _ = dtw_both(torch.tensor(d.T.copy())[None], torch.tensor([3]), torch.tensor([3]))
    assert r.item() == pytest.approx(f2.item())
    # ragged batch: each pair reads its own corner
    big = torch.rand(2, 4, 5, dtype=torch.float64)
    fb, rb = dtw_both(big, torch.tensor([2, 4]), torch.tensor([5, 3]))
    for b, (n, m) in enumerate([(2, 5), (4, 3)]):
        sub = big[b, :n, :m]
        f1, r1 = dtw_both(sub[None], torch.tensor([n]), torch.tensor([m]))
        assert fb[b].item() == pytest.approx(f1.item()) and rb[b].item() == pytest.approx(r1.item())


def test_subsampling_is_seeded_and_close():
    items, feats = synthetic(n_files=9, n_phones=30, noise=1.0)
    a = abx(items, feats, AbxConfig(context="any", max_size_group=3, seed=0))
    b = abx(items, feats, AbxConfig(context="any", max_size_group=3, seed=0))
    full = abx(items, feats, AbxConfig(context="any", max_size_group=0))
    assert a.error == b.error
    assert abs(a.error - full.error) < 0.1
    assert a.num_alignments < full.num_alignments


def test_separable_features_score_zero_and_random_near_chance():
    items, feats = synthetic(n_files=6, n_phones=20, noise=0.01)
    assert abx(items, feats, AbxConfig(max_size_group=0, context="any")).error == 0.0
    rng = np.random.default_rng(0)
    noise = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in feats.items()}
    assert abs(abx(items, noise, AbxConfig(max_size_group=0, context="any")).error - 0.5) < 0.1


def test_bad_items_are_skipped_and_counted():
    items, feats = synthetic(n_files=6, n_phones=16)
    extra = pd.DataFrame(
        [
            ("missing", 0.1, 0.2, "a", "e", "i", "s1"),  # file without features
            ("u0", 50.0, 50.1, "a", "e", "i", "s1"),  # beyond the end of the features
            ("u0", 0.100, 0.105, "a", "e", "i", "s1"),  # shorter than one frame
        ],
        columns=items.columns,
    )
    nan_feats = dict(feats, u5=np.full_like(feats["u5"], np.nan))
    good = abx(items[items.file != "u5"], feats, AbxConfig(max_size_group=0))
    res = abx(pd.concat([items, extra]), nan_feats, AbxConfig(max_size_group=0))
    assert res.skipped["no_features"] == 1
    assert res.skipped["outside_features"] == 1
    assert res.skipped["empty_segment"] == 1
    assert res.skipped["non_finite"] == int((items.file == "u5").sum())
    assert res.error == good.error  # skipped items change nothing else


def test_no_cells_and_wrong_inputs_raise_clear_errors():
    items, feats = synthetic(n_files=1, n_phones=4)
    with pytest.raises(BadInputError, match="no ABX cell"):
        abx(items.iloc[:1], feats, AbxConfig())
    with pytest.raises(BadInputError, match="no usable ABX items"):
        abx(items, {}, AbxConfig())
    with pytest.raises(BadInputError, match="identical"):
        abx(items, feats, AbxConfig(distance="identical"))
    with pytest.raises(BadInputError):
        abx(items, feats, AbxConfig(speaker="sideways"))  # type: ignore[arg-type]


def test_item_file_and_npy_folder_via_cli(tmp_path):
    from typer.testing import CliRunner

    from obt_eval.alignments import write_item_file
    from obt_eval_cli.main import build_app

    items, feats = synthetic(n_files=6, n_phones=12, noise=1.5)
    write_item_file(tmp_path / "x.item", items)
    (tmp_path / "feats").mkdir()
    for k, v in feats.items():
        np.save(tmp_path / "feats" / f"{k}.npy", v)
    lib = abx_from_paths(tmp_path / "x.item", tmp_path / "feats", AbxConfig(max_size_group=0, context="any"))
    want = reference_abx(items, feats, "within", "any", "angular")
    assert lib.error == pytest.approx(want, abs=1e-4)
    result = CliRunner().invoke(
        build_app(),
        ["abx", str(tmp_path / "x.item"), str(tmp_path / "feats"), "--context", "any", "--max-size-group", "0",
         "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["error"] == pytest.approx(lib.error)
