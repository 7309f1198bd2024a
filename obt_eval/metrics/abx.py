"""ABX phone discrimination (ZeroSpeech / Libri-light definition, bug-fixed slicing, fastabx semantics).

Definition (reference/metrics-and-data.md §1): for a cell (phones A != B, same context/speaker
conditions), the score counts triplets (x in X, a in A, b in B), x != a, that are correct when
d(x, a) < d(x, b), ties counting half; the cell's error is 1 - that mean. d is DTW over an angular
(or 0/1 "identical", for units) frame distance, normalised by the back-tracked path length, with
fastabx's tie-break (diagonal, then left, then up) and orientation (x along the rows; for the
symmetric A-A matrix the earlier item along the rows). Cells average over contexts (and X speakers)
per (speaker, A, B), then over speakers per (A, B), then over (A, B) pairs.

Speed: every distinct pair of segments is aligned once for both orientations (they share the cost
lattice and differ only in path length), all pairs are batched across cells and aligned with an
anti-diagonal DTW in torch (GPU when present), and triplets are counted per cell with a sorted
search instead of an (X, A, B) cube.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from obt_eval.errors import BadInputError
from obt_eval.frames import store_frame_timing
from obt_eval.metrics import dtw_cpu

Speaker = Literal["within", "across"]
Context = Literal["within", "any"]
Distance = Literal["angular", "identical"]
ITEM_COLUMNS = ["file", "onset", "offset", "phone", "prev", "next", "speaker"]
MAX_DTW_BATCH = 8192


@dataclass
class AbxConfig:
    speaker: Speaker = "within"
    context: Context = "within"
    distance: Distance = "angular"
    # libri-light eval/eval_ABX.py and zerospeech benchmarks abx_LS/params.py: max_size_group=10, max_x_across=5
    max_size_group: int = 10  # 0 = no subsampling (exact, comparable with fastabx max_size_group=None)
    max_x_across: int = 5  # 0 = every other speaker
    seed: int = 0
    frame_rate: float = 50.0
    # centre of frame 0 (s); None = half a frame (ZeroSpeech/fastabx); obt-eval stores record their own
    # (frames.store_frame_timing: 0.0125 for wav2vec2-grid encoders, 0.0175 for w2v-BERT 2.0)
    frame_offset: float | None = None
    device: str | None = None
    dtype: Literal["float32", "float64"] = "float32"
    # DTW implementation: numba kernel on CPU, torch sweep on GPU ("auto"); both give the same numbers
    dtw_engine: Literal["auto", "torch", "numba"] = "auto"
    # elements per batched tensor (bounds memory, not results)
    budget: int = 1 << 24

    def validate(self) -> None:
        if self.speaker not in ("within", "across"):
            raise BadInputError(f"speaker mode must be 'within' or 'across', not {self.speaker!r}")
        if self.context not in ("within", "any"):
            raise BadInputError(f"context mode must be 'within' or 'any', not {self.context!r}")
        if self.distance not in ("angular", "identical"):
            raise BadInputError(f"distance must be 'angular' or 'identical', not {self.distance!r}")
        if self.max_size_group < 0 or self.max_x_across < 0:
            raise BadInputError("--max-size-group and --max-x-across must be >= 0 (0 = no limit)")


@dataclass
class AbxResult:
    error: float
    config: dict
    num_items: int
    num_cells: int
    num_pairs: int  # (A, B) phone pairs in the final mean
    num_alignments: int  # distinct segment pairs aligned
    skipped: dict[str, int]
    skipped_examples: list[str]
    seconds: float
    details: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # phone_a, phone_b, error

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "details"}
        d["error_percent"] = round(100 * self.error, 4)
        return d


# ------------------------------------------------------------------------------------ feature sources


class FeatureSource(Protocol):
    """Frames of a file id: (frames, dim) array, or None when the source has no such file."""

    def get(self, file: str) -> np.ndarray | None: ...


class MappingSource:
    def __init__(self, mapping: Mapping[str, np.ndarray]):
        self.mapping = mapping

    def get(self, file: str) -> np.ndarray | None:
        arr = self.mapping.get(file)
        if arr is None:
            return None
        arr = np.asarray(arr)
        return arr[:, None] if arr.ndim == 1 else arr


class NpyDirSource:
    """ZeroSpeech layout: ``<root>/<file>.npy`` (frames x dim), found recursively like fastabx."""

    def __init__(self, root: str | Path, extension: str = ".npy"):
        self.root = Path(root)
        self.files = {str(p.relative_to(self.root))[: -len(extension)]: p for p in self.root.rglob(f"*{extension}")}

    def get(self, file: str) -> np.ndarray | None:
        path = self.files.get(file)
        if path is None:
            return None
        arr = np.load(path)
        return arr[:, None] if arr.ndim == 1 else arr


class StoreSource:
    """An obt-eval FeatureStore or UnitsStore (units become one integer 'feature' per frame)."""

    def __init__(self, store):
        self.store = store

    def get(self, file: str) -> np.ndarray | None:
        if file not in self.store:
            return None
        arr = self.store.get(file)
        return arr[:, None] if arr.ndim == 1 else arr


def open_feature_source(path: str | Path) -> tuple[FeatureSource, float | None, str]:
    """(source, frame-0 centre or None for half a frame, kind) of a .npy folder, feature store or units store.

    A store's frame-0 centre is the one its sidecar records (`store_frame_timing`), so ABX segments of a
    w2v-BERT store start 5 ms later than those of a wav2vec2 store, as its frames do.
    """
    from obt_eval.atomic import read_json

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"no features at {path}", "pass a folder of <file>.npy, a feature store or a units store")
    sidecar = path / "sidecar.json"
    if sidecar.exists():
        fmt = str(read_json(sidecar).get("format", ""))
        if fmt.startswith("obt-eval-units"):
            from obt_eval.units.store import UnitsStore

            units = UnitsStore.open(path)
            return StoreSource(units), store_frame_timing(units)[1], "units"
        from obt_eval.features.store import FeatureStore

        store = FeatureStore.open(path)
        return StoreSource(store), store_frame_timing(store)[1], "features"
    source = NpyDirSource(path)
    if not source.files:
        raise BadInputError(f"{path} holds no .npy files",
                            "write one <file>.npy (frames x dim, 50 Hz) per item-file #file")
    return source, None, "npy"


# -------------------------------------------------------------------------------------- segments


@dataclass
class _Segments:
    items: pd.DataFrame  # kept rows, codes: phone, ctx, spk
    data: torch.Tensor  # (total_frames, dim), normalised for angular
    starts: torch.Tensor
    lengths: torch.Tensor
    lengths_np: np.ndarray
    starts_np: np.ndarray
    skipped: dict[str, int]
    examples: list[str]


def frame_bounds(
    onset: np.ndarray, offset: np.ndarray, rate: float, frame_offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Frames [start, end) whose centres lie within [onset, offset] (fastabx bug-fixed slicing).

    Rounding to 6 decimals first removes binary noise so that e.g. 0.03 s lands exactly on a frame edge.
    """
    lo = np.round((np.asarray(onset, np.float64) - frame_offset) * rate, 6)
    hi = np.round((np.asarray(offset, np.float64) - frame_offset) * rate, 6)
    return np.ceil(lo).astype(np.int64), np.floor(hi).astype(np.int64) + 1


def normalize_with_singularity(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise rows and append a border column so a zero vector sits at maximal angular distance.

    Same construction as Libri-light/fastabx, so zero frames give the same numbers. Written into one
    preallocated (frames, dim + 1) tensor: the features of a corpus can be gigabytes.
    """
    norm = x.norm(dim=1, keepdim=True)
    zero = norm.squeeze(1) == 0
    out = torch.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype, device=x.device)
    torch.div(x, norm.clamp_min(torch.finfo(x.dtype).tiny), out=out[:, :-1])
    out[:, -1] = eps
    if bool(zero.any()):
        out[zero, :-1] = 1.0 / math.sqrt(x.shape[1])
        out[zero, -1] = -2 * eps
    return out


def _load_segments(items: pd.DataFrame, source: FeatureSource, cfg: AbxConfig, device: torch.device) -> _Segments:
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise BadInputError(f"item table lacks columns {missing}",
                            f"expected {ITEM_COLUMNS} (read_item_file gives them)")
    rate = cfg.frame_rate
    offset = 0.5 / rate if cfg.frame_offset is None else cfg.frame_offset
    items = items.reset_index(drop=True)
    start, end = frame_bounds(items["onset"].to_numpy(), items["offset"].to_numpy(), rate, offset)
    keep = np.zeros(len(items), bool)
    skipped = {"no_features": 0, "non_finite": 0, "outside_features": 0, "empty_segment": 0}
    examples: list[str] = []
    pieces: list[np.ndarray] = []
    dim = None
    files = items["file"].astype(str).to_numpy()
    order = np.argsort(files, kind="stable")
    bounds = np.flatnonzero(np.r_[True, files[order][1:] != files[order][:-1], True])
    seg_of_row = np.full(len(items), -1)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[lo:hi]
        fid = files[rows[0]]
        feats = source.get(fid)
        if feats is None:
            skipped["no_features"] += len(rows)
            examples.append(f"{fid}: no features ({len(rows)} items)")
            continue
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise BadInputError(f"features of {fid} have shape {feats.shape}", "each file must be (frames, dim)")
        if dim is None:
            dim = feats.shape[1]
        elif feats.shape[1] != dim:
            raise BadInputError(f"features of {fid} have dim {feats.shape[1]}, others {dim}", "use one encoder/layer")
        if not np.isfinite(feats).all():
            skipped["non_finite"] += len(rows)
            examples.append(f"{fid}: NaN/inf features ({len(rows)} items)")
            continue
        s, e = start[rows], end[rows]
        empty = e <= s
        outside = ~empty & ((s < 0) | (e > feats.shape[0]))
        ok = ~empty & ~outside
        skipped["empty_segment"] += int(empty.sum())
        skipped["outside_features"] += int(outside.sum())
        for r in rows[empty][:3]:
            examples.append(f"{fid} {items.at[r, 'onset']}-{items.at[r, 'offset']}: shorter than one frame")
        for r in rows[outside][:3]:
            examples.append(f"{fid} {items.at[r, 'onset']}-{items.at[r, 'offset']}: frames [{start[r]},{end[r]}) "
                            f"outside the {feats.shape[0]} frames")
        good = rows[ok]
        keep[good] = True
        seg_of_row[good] = np.arange(len(pieces), len(pieces) + len(good))
        pieces.extend(feats[a:b] for a, b in zip(s[ok].tolist(), e[ok].tolist(), strict=True))
    if not pieces:
        raise BadInputError(
            f"no usable ABX items ({', '.join(f'{k}={v}' for k, v in skipped.items() if v)})",
            "check that the item file's #file names match the feature files and the times fall inside them",
        )
    # segments in item order (pieces were appended file by file)
    kept_rows = np.flatnonzero(keep)
    piece_order = seg_of_row[kept_rows]
    lengths_np = np.array([pieces[i].shape[0] for i in piece_order], dtype=np.int64)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    if cfg.distance == "identical":
        if dim != 1:
            raise BadInputError(
                f"the 'identical' distance compares discrete units, but the features have {dim} dimensions",
                "pass a units store (or one unit id per frame), or use --distance angular",
            )
        data = torch.as_tensor(np.concatenate([pieces[i] for i in piece_order]).astype(np.float64), dtype=dtype)
    else:
        data = torch.as_tensor(np.concatenate([pieces[i] for i in piece_order]), dtype=dtype)
        data = normalize_with_singularity(data)
    kept = items.iloc[kept_rows].reset_index(drop=True)
    codes = pd.DataFrame({
        "phone": kept["phone"].astype(str),
        "ctx": (kept["prev"].astype(str) + "\t" + kept["next"].astype(str)) if cfg.context == "within" else "",
        "spk": kept["speaker"].astype(str),
    })
    starts = np.r_[0, np.cumsum(lengths_np)[:-1]]
    return _Segments(
        items=codes,
        data=data.to(device),
        starts=torch.as_tensor(starts, device=device),
        lengths=torch.as_tensor(lengths_np, device=device),
        lengths_np=lengths_np,
        starts_np=starts,
        skipped=skipped,
        examples=examples[:20],
    )


# ------------------------------------------------------------------------------------------- cells


@dataclass
class _Cells:
    a: list[np.ndarray]
    b: list[np.ndarray]
    x: list[np.ndarray]
    keys: pd.DataFrame  # phone_a, phone_b, ctx, spk, spk_x


def _build_cells(seg: _Segments, cfg: AbxConfig) -> _Cells:
    items = seg.items
    groups = items.groupby(["ctx", "spk", "phone"], sort=True).indices  # item positions, ascending
    rng = np.random.default_rng(cfg.seed)
    cap = cfg.max_size_group

    def sub(idx: np.ndarray) -> np.ndarray:
        if cap and len(idx) > cap:
            return np.sort(rng.choice(idx, size=cap, replace=False))
        return idx

    by_ctx: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for (ctx, spk, phone), idx in groups.items():
        by_ctx.setdefault(ctx, {}).setdefault(spk, {})[phone] = idx
    a_list, b_list, x_list, keys = [], [], [], []
    for ctx in sorted(by_ctx):
        speakers = by_ctx[ctx]
        for spk in sorted(speakers):
            phones = speakers[spk]
            for pa in sorted(phones):
                for pb in sorted(phones):
                    if pa == pb:
                        continue
                    if cfg.speaker == "within":
                        if len(phones[pa]) < 2:  # no a != x
                            continue
                        a = sub(phones[pa])
                        a_list.append(a)
                        b_list.append(sub(phones[pb]))
                        x_list.append(a)
                        keys.append((pa, pb, ctx, spk, spk))
                    else:
                        others = [s for s in sorted(speakers) if s != spk and pa in speakers[s]]
                        if cfg.max_x_across and len(others) > cfg.max_x_across:
                            pick = rng.choice(len(others), size=cfg.max_x_across, replace=False)
                            others = [others[i] for i in sorted(pick)]
                        for sx in others:
                            a_list.append(sub(phones[pa]))
                            b_list.append(sub(phones[pb]))
                            x_list.append(sub(speakers[sx][pa]))
                            keys.append((pa, pb, ctx, spk, sx))
    frame = pd.DataFrame(keys, columns=["phone_a", "phone_b", "ctx", "spk", "spk_x"])
    return _Cells(a_list, b_list, x_list, frame)


# --------------------------------------------------------------------------------------------- DTW


def frame_distances(u: torch.Tensor, v: torch.Tensor, distance: Distance) -> torch.Tensor:
    """(B, L1, d) x (B, L2, d) -> (B, L1, L2) frame distances (inputs normalised for angular)."""
    if distance == "identical":
        return (u[..., 0].unsqueeze(2) != v[..., 0].unsqueeze(1)).to(u.dtype)
    return torch.bmm(u, v.transpose(1, 2)).clamp_(-1, 1).acos_().div_(math.pi)


def dtw_both(dist: torch.Tensor, len1: torch.Tensor, len2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-normalised DTW of each (len1, len2) top-left block of `dist` (B, L1, L2), both orientations.

    Returns (forward, reverse): forward aligns rows to columns as given; reverse is the same
    alignment on the transposed matrix. The accumulated cost is identical; only the back-tracked path
    (and so its length) can differ, because the tie-break prefers 'left' over 'up'. The path length
    is carried forward along the back-tracking pointers, which equals back-tracking from the end.
    Anti-diagonals are swept in order with the batch as the contiguous inner dimension, keeping only
    the last two diagonals.
    """
    bsz, l1, l2 = dist.shape
    dev, dt = dist.device, dist.dtype
    steps = l1 + l2 - 1
    ii = torch.arange(l1, device=dev)
    jj = torch.arange(steps, device=dev).unsqueeze(1) - ii.unsqueeze(0)  # (T, L1)
    valid = (jj >= 0) & (jj < l2)
    flat = (ii.unsqueeze(0) * l2 + jj.clamp(0, l2 - 1)).reshape(-1)
    # skew[t, i, b] = dist[b, i, t - i]: diagonal t, row i, pair b
    skew = dist.reshape(bsz, l1 * l2).T[flat].reshape(steps, l1, bsz)
    skew = skew.masked_fill_(~valid.unsqueeze(2), float("inf"))
    inf = float("inf")
    # row 0 of each buffer is row -1 of the matrix (a sentinel at +inf): neighbours are plain slices
    c2 = torch.full((l1 + 1, bsz), inf, dtype=dt, device=dev)
    c1 = torch.full((l1 + 1, bsz), inf, dtype=dt, device=dev)
    f2 = torch.zeros((l1 + 1, bsz), dtype=torch.int32, device=dev)
    f1, r2, r1 = torch.zeros_like(f2), torch.zeros_like(f2), torch.zeros_like(f2)
    c1[1] = skew[0, 0]
    f1[1] = 1
    r1[1] = 1
    t_end = (len1 + len2 - 2).long()
    row = len1.long()
    total = torch.empty(bsz, dtype=dt, device=dev)
    plen_f = torch.empty(bsz, dtype=torch.int32, device=dev)
    plen_r = torch.empty(bsz, dtype=torch.int32, device=dev)
    ends = t_end.cpu().numpy()
    finishing = {int(t): torch.as_tensor(np.flatnonzero(ends == t), device=dev) for t in np.unique(ends)}

    def record(t: int, c: torch.Tensor, f: torch.Tensor, r: torch.Tensor) -> None:
        sel = finishing.get(t)
        if sel is not None:
            rs = row[sel]
            total[sel] = c[rs, sel]
            plen_f[sel] = f[rs, sel]
            plen_r[sel] = r[rs, sel]

    record(0, c1, f1, r1)
    best = torch.empty((l1, bsz), dtype=dt, device=dev)
    take_diag = torch.empty((l1, bsz), dtype=torch.bool, device=dev)
    take_side = torch.empty((l1, bsz), dtype=torch.bool, device=dev)
    for t in range(1, steps):
        up, left, diag = c1[:-1], c1[1:], c2[:-1]
        c0 = torch.empty_like(c1)
        c0[0] = inf
        torch.minimum(up, diag, out=best)
        torch.minimum(best, left, out=best)
        torch.add(skew[t], best, out=c0[1:])
        torch.le(diag, left, out=take_diag)
        take_diag &= diag <= up
        f0 = torch.empty_like(f1)
        f0[0] = 0
        torch.le(left, up, out=take_side)
        torch.where(take_diag, f2[:-1], torch.where(take_side, f1[1:], f1[:-1]), out=f0[1:])
        f0[1:] += 1
        r0 = torch.empty_like(r1)
        r0[0] = 0
        # reverse orientation: 'up' here is 'left' there, so it wins the tie
        torch.le(up, left, out=take_side)
        torch.where(take_diag, r2[:-1], torch.where(take_side, r1[:-1], r1[1:]), out=r0[1:])
        r0[1:] += 1
        record(t, c0, f0, r0)
        c2, c1, f2, f1, r2, r1 = c1, c0, f1, f0, r1, r0
    return total / plen_f.to(dt), total / plen_r.to(dt)


def _gather(seg: _Segments, idx: torch.Tensor, width: int) -> torch.Tensor:
    ar = torch.arange(width, device=idx.device)
    lens = seg.lengths[idx]
    mask = ar.unsqueeze(0) < lens.unsqueeze(1)
    src = torch.where(mask, seg.starts[idx].unsqueeze(1) + ar, torch.zeros_like(ar))
    out = seg.data[src.reshape(-1)].reshape(idx.shape[0], width, -1)
    return out * mask.unsqueeze(-1).to(out.dtype)


def _length_batches(sel_all: np.ndarray, lr: np.ndarray, lc: np.ndarray, budget: int, cap: int):
    """Pairs in batches of similar lengths, each batch's padded blocks within `budget` elements."""
    order = sel_all[np.lexsort((lc[sel_all], lr[sel_all]))]
    pos, n = 0, len(order)
    while pos < n:
        w1 = int(lr[order[pos]])
        w2_guess = int(lc[order[min(n - 1, pos + 4096)]])
        per_pair = w1 * w2_guess * 3 + (w1 + w2_guess) * (w1 + 1) * 3
        size = max(1, min(n - pos, budget // max(per_pair, 1), cap))
        sel = order[pos : pos + size]
        yield sel, int(lr[sel].max()), int(lc[sel].max())
        pos += size


def _store(fwd, rev, sel, f, b, swap) -> None:
    sw = swap[sel]
    fwd[sel] = np.where(sw, b, f)
    rev[sel] = np.where(sw, f, b)


def align_pairs(
    seg: _Segments,
    u: np.ndarray,
    v: np.ndarray,
    cfg: AbxConfig,
    groups: np.ndarray | None = None,
    progress: bool = False,
    engine: Literal["auto", "torch", "numba"] = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised DTW of segment pairs (u rows, v columns) and of (v rows, u columns).

    `groups` (one id per pair, both segments of a pair in the same group, e.g. one (context,
    speaker) cell group) lets dense groups be computed as one frame Gram matrix per group, batched:
    the pairs' distance blocks are then read out of it instead of gathering each pair's frames,
    which would move (L1 + L2) x dim floats per pair. Sparse groups (subsampled 'any' contexts) use
    the per-pair gather. The DTW itself runs as a numba kernel on CPU and as the torch
    anti-diagonal sweep on GPU (`engine` forces one; both give the same numbers).
    """
    n = len(u)
    fwd = np.empty(n, np.float64)
    rev = np.empty(n, np.float64)
    if n == 0:
        return fwd, rev
    lengths = seg.lengths_np
    lu, lv = lengths[u], lengths[v]
    swap = lu > lv  # shorter sequence along the rows: fewer anti-diagonal cells per step
    r = np.where(swap, v, u)
    c = np.where(swap, u, v)
    lr, lc = np.minimum(lu, lv), np.maximum(lu, lv)
    dev = seg.data.device
    if engine == "auto":
        engine = "numba" if dev.type == "cpu" and dtw_cpu.available() else "torch"
    nseg = len(lengths)
    groups = np.zeros(n, np.int64) if groups is None else np.asarray(groups, np.int64)

    # per group: the items its pairs use, their frames, and the block entries its pairs need
    gid, ginv = np.unique(groups, return_inverse=True)
    ng = len(gid)
    item_keys = np.sort(pd.unique(np.concatenate([ginv * nseg + r, ginv * nseg + c])))
    key_group, key_item = item_keys // nseg, item_keys % nseg
    frames = np.bincount(key_group, weights=lengths[key_item], minlength=ng).astype(np.int64)
    needed = np.bincount(ginv, weights=(lr * lc).astype(np.float64), minlength=ng)
    dense = (frames.astype(np.float64) ** 2 <= 4 * needed + 4096) & (frames * frames <= cfg.budget)
    # each item's frame offset inside its group's block (items sorted within group)
    first = np.searchsorted(key_group, np.arange(ng))
    cum = np.cumsum(lengths[key_item]) - lengths[key_item]
    key_off = cum - cum[np.minimum(first[key_group], len(cum) - 1)]

    def offsets(pairs: np.ndarray, items: np.ndarray) -> np.ndarray:
        return key_off[np.searchsorted(item_keys, ginv[pairs] * nseg + items)]

    bar = tqdm(total=n, desc="aligning segment pairs", unit="pair", disable=not progress, leave=False)
    pair_order = np.argsort(ginv, kind="stable")
    pair_bounds = np.r_[0, np.cumsum(np.bincount(ginv, minlength=ng))]
    dense_groups = np.flatnonzero(dense)
    dense_groups = dense_groups[np.argsort(frames[dense_groups], kind="stable")]
    gpos = 0
    while gpos < len(dense_groups):
        # groups of similar size share one padded batch of Gram matrices
        take = 1
        while gpos + take < len(dense_groups):
            f_next = int(frames[dense_groups[gpos + take]])
            if (take + 1) * f_next * f_next > cfg.budget:
                break
            take += 1
        batch = dense_groups[gpos : gpos + take]
        gpos += take
        fmax = max(1, int(frames[batch].max()))
        local = np.full(ng, -1, np.int64)
        local[batch] = np.arange(len(batch))
        in_batch = local[key_group] >= 0
        bk_group, bk_item, bk_off = local[key_group[in_batch]], key_item[in_batch], key_off[in_batch]
        rep = np.repeat(seg.starts_np[bk_item], lengths[bk_item]) + (
            np.arange(lengths[bk_item].sum()) - np.repeat(np.cumsum(lengths[bk_item]) - lengths[bk_item],
                                                          lengths[bk_item]))
        slot = np.repeat(bk_group * fmax + bk_off, lengths[bk_item]) + (
            np.arange(lengths[bk_item].sum()) - np.repeat(np.cumsum(lengths[bk_item]) - lengths[bk_item],
                                                          lengths[bk_item]))
        frame_idx = np.zeros(len(batch) * fmax, np.int64)
        frame_idx[slot] = rep
        fr = seg.data[torch.as_tensor(frame_idx, device=dev)].reshape(len(batch), fmax, -1)
        if cfg.distance == "identical":
            gram = (fr[..., 0].unsqueeze(2) != fr[..., 0].unsqueeze(1)).to(fr.dtype)
        else:
            gram = torch.bmm(fr, fr.transpose(1, 2)).clamp_(-1, 1).acos_().div_(math.pi)
        pairs = np.concatenate([pair_order[pair_bounds[g] : pair_bounds[g + 1]] for g in batch])
        m = local[ginv[pairs]]
        ro, co = offsets(pairs, r[pairs]), offsets(pairs, c[pairs])
        if engine == "numba":
            f, b = dtw_cpu.dtw_blocks(gram.cpu().numpy(), m, ro, co, lr[pairs], lc[pairs])
            _store(fwd, rev, pairs, f, b, swap)
        else:
            flat_gram = gram.reshape(-1)
            pos_of = np.empty(n, np.int64)
            pos_of[pairs] = np.arange(len(pairs))
            for sel, w1, w2 in _length_batches(pairs, lr, lc, cfg.budget, MAX_DTW_BATCH):
                k = pos_of[sel]
                rows = np.minimum(ro[k][:, None] + np.arange(w1), fmax - 1)
                cols = np.minimum(co[k][:, None] + np.arange(w2), fmax - 1)
                flat = (m[k][:, None, None] * fmax + rows[:, :, None]) * fmax + cols[:, None, :]
                blocks = flat_gram[torch.as_tensor(flat, device=dev)]
                f, b = dtw_both(blocks, torch.as_tensor(lr[sel], device=dev), torch.as_tensor(lc[sel], device=dev))
                _store(fwd, rev, sel, f.double().cpu().numpy(), b.double().cpu().numpy(), swap)
        bar.update(len(pairs))

    sparse = np.flatnonzero(~dense)
    if len(sparse):
        sel_all = np.concatenate([pair_order[pair_bounds[g] : pair_bounds[g + 1]] for g in sparse])
        dim = seg.data.shape[1]
        # the per-pair path also holds (L1 + L2) x dim gathered frames per pair
        budget = max(1, cfg.budget // max(1, dim // 8))
        for sel, w1, w2 in _length_batches(sel_all, lr, lc, budget, MAX_DTW_BATCH):
            ridx = torch.as_tensor(r[sel], device=dev)
            cidx = torch.as_tensor(c[sel], device=dev)
            dist = frame_distances(_gather(seg, ridx, w1), _gather(seg, cidx, w2), cfg.distance)
            if engine == "numba":
                zero = np.zeros(len(sel), np.int64)
                f, b = dtw_cpu.dtw_blocks(dist.cpu().numpy(), np.arange(len(sel)), zero, zero, lr[sel], lc[sel])
            else:
                ft, bt = dtw_both(dist, torch.as_tensor(lr[sel], device=dev), torch.as_tensor(lc[sel], device=dev))
                f, b = ft.double().cpu().numpy(), bt.double().cpu().numpy()
            _store(fwd, rev, sel, f, b, swap)
            bar.update(len(sel))
    bar.close()
    return fwd, rev


# --------------------------------------------------------------------------------------- scoring


def _pad(arrays: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(arrays), width), -1, np.int64)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _cell_scores(cells: _Cells, seg: _Segments, cfg: AbxConfig, progress: bool) -> tuple[np.ndarray, int]:
    """Error of every cell. Returns (errors, number of distinct segment pairs aligned)."""
    within = cfg.speaker == "within"
    ncell = len(cells.a)
    na = np.array([len(a) for a in cells.a])
    nb = np.array([len(b) for b in cells.b])
    nx = np.array([len(x) for x in cells.x])
    nseg = len(seg.lengths_np)

    # bucket cells by padded shape (powers of two) so each bucket is one batched computation
    def p2(v: np.ndarray) -> np.ndarray:
        return (1 << np.ceil(np.log2(np.maximum(v, 1))).astype(np.int64)).astype(np.int64)

    shape_key = np.stack([p2(nx), p2(na), p2(nb)], 1)
    buckets: dict[tuple[int, int, int], list[int]] = {}
    for i, key in enumerate(map(tuple, shape_key)):
        buckets.setdefault(key, []).append(i)

    # pass 1: the oriented pairs each bucket needs, as canonical keys lo * nseg + hi
    plans = []
    all_keys = []
    for (px, pa, pb), idx in buckets.items():
        X = _pad([cells.x[i] for i in idx], px)
        A = _pad([cells.a[i] for i in idx], pa)
        B = _pad([cells.b[i] for i in idx], pb)
        xa_u, xa_v = X[:, :, None], A[:, None, :]
        xb_u, xb_v = X[:, :, None], B[:, None, :]
        va = (xa_u >= 0) & (xa_v >= 0) & (xa_u != xa_v)
        vb = (xb_u >= 0) & (xb_v >= 0)
        ka = np.minimum(xa_u, xa_v) * nseg + np.maximum(xa_u, xa_v)
        kb = np.minimum(xb_u, xb_v) * nseg + np.maximum(xb_u, xb_v)
        # which orientation each entry reads: x along the rows, except the symmetric A-A matrix,
        # where fastabx aligns the earlier item along the rows and mirrors the value
        fa = np.ones_like(va) if within else (xa_u < xa_v)
        fb = xb_u < xb_v
        plans.append((idx, ka, va, fa, kb, vb, fb))
        all_keys += [ka[va], kb[vb]]
    # distinct pairs, and for every needed entry the index of its pair (factorize: no sort needed)
    codes, keys = pd.factorize(np.concatenate(all_keys))
    keys = np.asarray(keys, np.int64)
    split = np.cumsum([len(k) for k in all_keys])[:-1]
    code_parts = np.split(codes, split)
    # every pair lies inside one group: (context, speaker) within speakers, context across
    group_key = seg.items["ctx"] + "\x00" + seg.items["spk"] if within else seg.items["ctx"]
    item_group = pd.factorize(group_key)[0]
    fwd, rev = align_pairs(seg, keys // nseg, keys % nseg, cfg, groups=item_group[keys // nseg], progress=progress,
                           engine=cfg.dtw_engine)

    errors = np.empty(ncell, np.float64)
    for p, (idx, ka, va, fa, kb, vb, fb) in enumerate(plans):
        pos_a = np.zeros(ka.shape, np.int64)
        pos_a[va] = code_parts[2 * p]
        pos_b = np.zeros(kb.shape, np.int64)
        pos_b[vb] = code_parts[2 * p + 1]
        dxa = np.where(fa, fwd[pos_a], rev[pos_a])
        dxb = np.where(fb, fwd[pos_b], rev[pos_b])
        dxb = np.where(vb, dxb, np.inf)  # padding sorts last and is never counted below
        dxb.sort(axis=2)
        # per (x, a): b with d(x,b) > d(x,a) are correct, equal ones count half
        lt = _batched_searchsorted(dxb, dxa, "left")
        le = _batched_searchsorted(dxb, dxa, "right")
        n_b = vb.sum(axis=2, keepdims=True)
        per = np.where(va, (n_b - le) + 0.5 * (le - lt), 0.0)
        score = per.sum(axis=(1, 2))
        idx_arr = np.asarray(idx)
        triplets = nx[idx_arr] * (na[idx_arr] - (1 if within else 0)) * nb[idx_arr]
        errors[idx_arr] = 1.0 - score / triplets
    return errors, len(keys)


def _batched_searchsorted(sorted_rows: np.ndarray, values: np.ndarray, side: str) -> np.ndarray:
    """searchsorted of values (C, X, A) into sorted rows (C, X, B), row by row."""
    c, x, b = sorted_rows.shape
    a = values.shape[2]
    flat_sorted = torch.from_numpy(np.ascontiguousarray(sorted_rows.reshape(c * x, b)))
    flat_vals = torch.from_numpy(np.ascontiguousarray(values.reshape(c * x, a)))
    out = torch.searchsorted(flat_sorted, flat_vals, right=(side == "right"))
    return out.numpy().reshape(c, x, a)


def _aggregate(keys: pd.DataFrame, errors: np.ndarray, cfg: AbxConfig) -> pd.DataFrame:
    """Cells -> (A, B) errors, the fastabx `collapse(levels=...)` order (speaker_x dropped first)."""
    df = keys.assign(error=errors)
    if cfg.context == "within" or cfg.speaker == "within":
        # contexts (and, across, X speakers) -> per (A, B, speaker); then speakers -> per (A, B)
        per_spk = df.groupby(["phone_a", "phone_b", "spk"], sort=True)["error"].mean().reset_index()
        return per_spk.groupby(["phone_a", "phone_b"], sort=True)["error"].mean().reset_index()
    # across speakers, any context: fastabx collapses the speaker level over all (speaker, speaker_x) cells
    return df.groupby(["phone_a", "phone_b"], sort=True)["error"].mean().reset_index()


# ------------------------------------------------------------------------------------------- API


def abx(
    items: pd.DataFrame,
    features: FeatureSource | Mapping[str, np.ndarray],
    config: AbxConfig | None = None,
    *,
    progress: bool = False,
) -> AbxResult:
    """ABX error rate of `features` on the phone items of `items` (columns file, onset, offset, phone,
    prev, next, speaker, as `obt_eval.alignments.read_item_file` returns).

    Items whose file has no features, whose frames fall outside the features, that are shorter than
    one frame, or whose file has NaN features are skipped and counted in ``skipped``.
    """
    cfg = config or AbxConfig()
    cfg.validate()
    t0 = time.perf_counter()
    source = MappingSource(features) if isinstance(features, Mapping) else features
    device = torch.device(cfg.device) if cfg.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seg = _load_segments(items, source, cfg, device)
    cells = _build_cells(seg, cfg)
    if not cells.a:
        need = "two items of a phone per (context, speaker)" if cfg.speaker == "within" else \
            "the same phone and context from two speakers"
        raise BadInputError(
            f"no ABX cell can be formed from the {len(seg.items)} usable items (needs {need})",
            "use --context any, more data, or check the speaker and phone columns of the item file",
        )
    errors, aligned = _cell_scores(cells, seg, cfg, progress)
    details = _aggregate(cells.keys, errors, cfg)
    return AbxResult(
        error=float(details["error"].mean()),
        config={k: v for k, v in asdict(cfg).items() if k != "budget"},
        num_items=len(seg.items),
        num_cells=len(cells.a),
        num_pairs=len(details),
        num_alignments=int(aligned),
        skipped=seg.skipped,
        skipped_examples=seg.examples,
        seconds=time.perf_counter() - t0,
        details=details,
    )


def abx_context_fallback(
    items: pd.DataFrame, features: FeatureSource | Mapping[str, np.ndarray], config: AbxConfig, **kwargs
) -> AbxResult:
    """ABX within context; when no triphone repeats (small corpora), any context instead.

    Whether cells exist depends only on the items, so every encoder of a corpus falls back alike;
    ``result.config["context"]`` says which was used.
    """
    try:
        return abx(items, features, config, **kwargs)
    except BadInputError as exc:
        if config.context != "within" or "no ABX cell" not in str(exc):
            raise
        return abx(items, features, replace(config, context="any"), **kwargs)


def abx_from_paths(
    item_file: str | Path,
    features: str | Path,
    config: AbxConfig | None = None,
    *,
    progress: bool = False,
) -> AbxResult:
    """`abx` on an item file and a features folder (ZeroSpeech .npy layout, feature store or units store).

    The frame-time convention follows the source unless the config sets one: half a frame for .npy
    folders (ZeroSpeech, comparable with fastabx), the store's own frame-0 centre for obt-eval stores.
    """
    from obt_eval.alignments import read_item_file

    cfg = config or AbxConfig()
    source, offset, kind = open_feature_source(features)
    if cfg.frame_offset is None and kind != "npy":
        cfg = AbxConfig(**{**asdict(cfg), "frame_offset": offset})
    if kind == "units" and cfg.distance != "identical":
        cfg = AbxConfig(**{**asdict(cfg), "distance": "identical"})
    return abx(read_item_file(item_file), source, cfg, progress=progress)


AbxFn = Callable[..., AbxResult]
