"""k-means in torch: k-means++ restarts on a subsample, then exact Lloyd iterations on all sampled frames.

Why not the field's recipe (fairseq ``learn_kmeans.py``, sklearn ``MiniBatchKMeans``)? It is slow to
sweep (minutes per fit on CPU) and mini-batch updates stop short of a Lloyd fixed point, so a few
restarts + full Lloyd in torch reach equal or lower inertia in a fraction of the time, on GPU when
present. Distances are computed in row chunks so 1M x 1024 frames fit; centroid sums use a
deterministic reduction (``index_add_`` on CPU, a one-hot matmul on CUDA, where ``index_add_`` uses
atomics), so a seed always gives the same codebook on the same device.

Inertia is reported as fairseq logs it: mean squared L2 distance of a frame to its centroid.

Backends (``KMeansConfig.backend``, recorded in the units sidecar): ``torch`` (this module, on CUDA
when present) and ``faiss`` (``obt_eval.units.faiss_kmeans``: faiss-cpu init + exact Lloyd). ``auto``
is torch: on 200k x 1024, k = 100 (``benchmarks/kmeans_speed.py``, 2 threads) the faiss init landed in
a worse basin (held-out inertia 1393.1 vs 1380.6) for 30 % less CPU time, so faiss is not "faster at
equal or better inertia" there. Both stop Lloyd by ``lloyd_converged`` and checkpoint the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from obt_eval.atomic import atomic_path, write_json
from obt_eval.errors import BadInputError
from obt_eval.integrity import CorruptArtifactError, file_checksum, read_sidecar, verify_file

log = logging.getLogger(__name__)


@dataclass
class KMeansConfig:
    """How a codebook is fitted. Defaults follow fairseq simple_kmeans where it has a counterpart."""

    k: int = 100
    # fairseq examples/hubert/simple_kmeans/README.md learns k-means on a 10 % utterance sample (--percent 0.1)
    sample_frac: float = 0.1
    seed: int = 0
    # restarts: each is a k-means++ init refined by Lloyd on `init_size` frames; the best one is refined on all.
    # Fewer than fairseq's n_init=20 because each restart ends in Lloyd, not a single k-means++ draw.
    n_init: int = 3
    # Restarts are compared on this many frames. fairseq's MiniBatchKMeans uses 3 * batch_size = 30 000; on
    # 1024-d features that overfits (k=100 -> 300 frames per centre) and picked a worse basin than the
    # recipe in benchmarks/kmeans_speed.py at 200k x 1024, while 100 000 beat it.
    init_size: int = 100_000
    init_iter: int = 5
    max_iter: int = 100
    # Lloyd stops when at most this fraction of the frames changed cluster in the last iteration (0: a
    # fixed point). A relative-inertia rule (1e-6) stopped after 4 iterations on 200k x 1024 while frames
    # were still moving and inertia still falling (issue 12): on a plateau each step gains little, the
    # steps together do not.
    tol: float = 1e-5
    device: str | None = None
    backend: str = "auto"  # auto | torch | faiss
    # elements of the (rows x k) distance block computed at once; bounds memory, not results
    chunk_elements: int = 1 << 24

    def fit_key(self) -> dict:
        """The settings that change the codebook (device and chunking do not, up to float rounding).

        The backend is recorded as resolved (``auto`` becomes ``faiss`` or ``torch``): the two backends
        initialise differently, so their codebooks differ.
        """
        d = asdict(self)
        d.pop("device")
        d.pop("chunk_elements")
        d["backend"] = resolve_backend(self.backend, self.device)
        return d


BACKENDS = ("auto", "torch", "faiss")


def resolve_backend(backend: str, device: str | None = None) -> str:
    """``auto`` is torch on every device (see the module docstring for the measurement behind it)."""
    if backend not in BACKENDS:
        raise BadInputError(f"unknown k-means backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if backend == "faiss":
            from obt_eval.units.faiss_kmeans import faiss_available

            if not faiss_available():
                raise BadInputError("the faiss backend needs faiss-cpu",
                                    "pip install faiss-cpu, or use --backend torch")
        return backend
    return "torch"


CHECKPOINT_EVERY = 5  # Lloyd iterations between saved states


def lloyd_converged(changed: int, n: int, tol: float) -> bool:
    """Stop Lloyd when at most `tol` of the `n` frames changed cluster in the last iteration (0 = fixed point)."""
    return changed <= tol * n


def may_stop_at(it: int, checkpoint_every: int | None) -> bool:
    """Whether convergence is tested at the start of iteration `it`.

    Not right after a checkpoint: a resumed fit has no previous labels there, so an uninterrupted fit
    skips the test too and both stop at the same iteration with the same codebook.
    """
    return not checkpoint_every or it % checkpoint_every != 0


@dataclass
class KMeansResult:
    centroids: np.ndarray  # (k, dim) float32
    inertia: float  # mean squared distance on the fit data
    n_iter: int
    init_inertia: float
    restart_inertias: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    backend: str = "torch"


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _chunk_rows(width: int, budget: int) -> int:
    return max(256, budget // max(width, 1))


def row_norms(x: torch.Tensor, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """Squared L2 norm of every row, in chunks (no full-size temporary)."""
    rows = _chunk_rows(x.shape[1], chunk_elements)
    return torch.cat([(x[s : s + rows] * x[s : s + rows]).sum(1) for s in range(0, x.shape[0], rows)])


def assign(
    x: torch.Tensor, centroids: torch.Tensor, *, chunk_elements: int = 1 << 24, x_sq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row and its squared distance, in chunks of rows."""
    c_sq = (centroids * centroids).sum(1)
    if x_sq is None:
        x_sq = row_norms(x, chunk_elements)
    rows = _chunk_rows(max(centroids.shape[0], x.shape[1]), chunk_elements)
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], rows):
        xc = x[s : s + rows]
        # ||x||^2 is constant per row: argmin needs only ||c||^2 - 2 x.c
        d = torch.addmm(c_sq.unsqueeze(0), xc, centroids.T, beta=1.0, alpha=-2.0)
        m, idx = d.min(1)
        labels[s : s + rows] = idx
        dists[s : s + rows] = (m + x_sq[s : s + rows]).clamp_min_(0)
    return labels, dists


def _centroid_sums(
    x: torch.Tensor, labels: torch.Tensor, k: int, chunk_elements: int, onehot: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 per chunk, float64 across chunks: exact enough for 1M frames without a float64 copy of x
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    counts = torch.bincount(labels, minlength=k).to(sums.dtype)
    if onehot is None:
        onehot = x.device.type != "cpu"
    if not onehot:
        rows = _chunk_rows(x.shape[1], chunk_elements)
        for s in range(0, x.shape[0], rows):
            part = torch.zeros(k, x.shape[1], dtype=x.dtype)
            part.index_add_(0, labels[s : s + rows], x[s : s + rows])
            sums += part
    else:
        rows = _chunk_rows(k, chunk_elements)
        for s in range(0, x.shape[0], rows):
            lab = labels[s : s + rows]
            hot = torch.zeros(k, lab.shape[0], dtype=x.dtype, device=x.device)
            hot[lab, torch.arange(lab.shape[0], device=x.device)] = 1
            sums += hot @ x[s : s + rows]
    return sums, counts


def kmeans_plus_plus(
    x: torch.Tensor, k: int, rng: np.random.Generator, *, chunk_elements: int = 1 << 24
) -> torch.Tensor:
    """Greedy k-means++ (Arthur & Vassilvitskii; sklearn's 2 + log k local trials per centre).

    Sampling is done with numpy on the CPU so a seed picks the same frames on any device.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(1)
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = (x_sq - 2 * (x @ x[first]) + x_sq[first]).clamp_min_(0)
    for c in range(1, k):
        weights = closest.double().cpu().numpy()
        total = weights.sum()
        if not np.isfinite(total) or total <= 0:
            # every frame already coincides with a centre: duplicates are unavoidable, take any
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(weights), rng.random(trials) * total)
            cand = np.minimum(cand, n - 1)
        cand_t = torch.as_tensor(cand, device=x.device)
        cx = x[cand_t]
        # (n, trials) keeps the big operand row-major, which is several times faster on CPU
        d = torch.addmm(x_sq.unsqueeze(1) + x_sq[cand_t].unsqueeze(0), x, cx.T, alpha=-2.0).clamp_min_(0)
        d = torch.minimum(d, closest.unsqueeze(1))
        best = int(torch.argmin(d.sum(0)))
        centers[c] = cx[best]
        closest = d[:, best].contiguous()
    return centers


LloydCallback = Callable[[int, torch.Tensor, float], None]


def lloyd(
    x: torch.Tensor,
    centers: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    chunk_elements: int = 1 << 24,
    start_iter: int = 0,
    prev_inertia: float = math.inf,
    on_iter: LloydCallback | None = None,
    checkpoint_every: int | None = None,
) -> tuple[torch.Tensor, float, int]:
    """Exact Lloyd iterations; empty clusters are moved onto the frames farthest from their centre."""
    k = centers.shape[0]
    centers = centers.clone()
    x_sq = row_norms(x, chunk_elements)  # constant across iterations
    prev_labels = None
    it = start_iter
    inertia = prev_inertia
    while it < max_iter:
        labels, dists = assign(x, centers, chunk_elements=chunk_elements, x_sq=x_sq)
        inertia = float(dists.double().mean())
        if (prev_labels is not None and may_stop_at(it, checkpoint_every)
                and lloyd_converged(int((labels != prev_labels).sum()), x.shape[0], tol)):
            break
        sums, counts = _centroid_sums(x, labels, k, chunk_elements)
        empty = torch.nonzero(counts == 0).flatten()
        new = (sums / counts.clamp_min(1).unsqueeze(1)).to(x.dtype)
        if empty.numel():
            far = torch.topk(dists, min(empty.numel(), x.shape[0])).indices
            new[empty[: far.numel()]] = x[far]
        centers = new
        prev_labels, prev_inertia = labels, inertia
        it += 1
        if on_iter is not None:
            on_iter(it, centers, inertia)
    labels, dists = assign(x, centers, chunk_elements=chunk_elements, x_sq=x_sq)
    return centers, float(dists.double().mean()), it


def _subsample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def fit_kmeans(
    data: np.ndarray | torch.Tensor,
    config: KMeansConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> KMeansResult:
    """Fit a codebook on `data` (frames x dim).

    With `checkpoint` (a folder), the chosen initialisation and the Lloyd state every few iterations
    are saved there, so a killed fit resumes and ends with the same codebook as an uninterrupted one.
    """
    cfg = config or KMeansConfig()
    t0 = time.perf_counter()
    device = pick_device(cfg.device)
    x = torch.as_tensor(np.asarray(data, dtype=np.float32) if not isinstance(data, torch.Tensor) else data)
    x = x.to(device=device, dtype=torch.float32)
    if x.ndim != 2:
        raise BadInputError(f"k-means needs a (frames, dim) array, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if cfg.k < 1:
        raise BadInputError(f"k must be at least 1, got {cfg.k}")
    if cfg.k > n:
        raise BadInputError(
            f"k={cfg.k} is larger than the {n} frames available to fit on",
            "lower --k, or raise --sample-frac so more frames are sampled",
        )
    if not bool(torch.isfinite(x).all()):
        raise BadInputError("features contain NaN or infinite values", "re-extract the features; check the audio")

    state = _Checkpoint(Path(checkpoint), cfg, n) if checkpoint else None
    backend = resolve_backend(cfg.backend, cfg.device)
    if backend == "faiss":
        from obt_eval.units.faiss_kmeans import fit_faiss

        centroids, inertia, n_iter, init_inertia, restarts = fit_faiss(x.cpu().numpy(), cfg, state, progress)
        return KMeansResult(centroids=centroids, inertia=inertia, n_iter=n_iter, init_inertia=init_inertia,
                            restart_inertias=restarts, seconds=time.perf_counter() - t0, device="cpu",
                            backend="faiss")
    rng = np.random.default_rng(cfg.seed)
    restart_inertias: list[float] = []
    init = state.load_init() if state else None
    if init is None:
        sub = x[torch.as_tensor(_subsample(n, cfg.init_size, rng), device=device)]
        best: tuple[float, torch.Tensor] | None = None
        for r in range(cfg.n_init):
            if progress:
                progress(f"restart {r + 1}/{cfg.n_init}")
            c0 = kmeans_plus_plus(sub, cfg.k, np.random.default_rng([cfg.seed, r]), chunk_elements=cfg.chunk_elements)
            c, inertia, _ = lloyd(sub, c0, max_iter=cfg.init_iter, tol=cfg.tol, chunk_elements=cfg.chunk_elements)
            restart_inertias.append(inertia)
            if best is None or inertia < best[0]:
                best = (inertia, c)
        assert best is not None
        init_inertia, centers = best
        if state:
            state.save_init(centers, init_inertia, restart_inertias)
    else:
        centers, init_inertia, restart_inertias = init
        centers = centers.to(device)

    start_iter, prev_inertia = 0, math.inf
    resumed = state.load_lloyd() if state else None
    if resumed is not None:
        centers, start_iter, prev_inertia = resumed
        centers = centers.to(device)

    def on_iter(it: int, c: torch.Tensor, inertia: float) -> None:
        if progress:
            progress(f"Lloyd iteration {it}: inertia {inertia:.4f}")
        if state and it % CHECKPOINT_EVERY == 0:
            state.save_lloyd(c, it, inertia)

    centers, inertia, n_iter = lloyd(
        x, centers, max_iter=cfg.max_iter, tol=cfg.tol, chunk_elements=cfg.chunk_elements,
        start_iter=start_iter, prev_inertia=prev_inertia, on_iter=on_iter, checkpoint_every=CHECKPOINT_EVERY,
    )
    return KMeansResult(
        centroids=centers.float().cpu().numpy(),
        inertia=inertia,
        n_iter=n_iter,
        init_inertia=float(init_inertia),
        restart_inertias=[float(v) for v in restart_inertias],
        seconds=time.perf_counter() - t0,
        device=str(device),
        backend="torch",
    )


def predict(data: np.ndarray, centroids: np.ndarray, *, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Units (nearest centroid) and squared distances for frames `data` (frames x dim)."""
    dev = pick_device(device)
    x = torch.as_tensor(np.asarray(data, dtype=np.float32), device=dev)
    c = torch.as_tensor(np.asarray(centroids, dtype=np.float32), device=dev)
    if x.ndim != 2 or x.shape[1] != c.shape[1]:
        raise BadInputError(f"features of shape {tuple(x.shape)} do not match a codebook of dim {c.shape[1]}")
    labels, dists = assign(x, c)
    return labels.cpu().numpy(), dists.double().cpu().numpy()


def inertia_of(data: np.ndarray, centroids: np.ndarray, *, device: str | None = None) -> float:
    """Mean squared distance of frames to their nearest centroid (fairseq's logged k-means score)."""
    return float(predict(data, centroids, device=device)[1].mean())


class _Checkpoint:
    """Fit state on disk: ``init.npz`` (chosen restart), ``lloyd.npz`` (centres every 5 iterations).

    ``fit-key.json`` records the settings they belong to and the checksum of each file. A damaged file
    (overwritten, truncated, half-copied) is discarded with a warning and the fit goes on from the
    previous good state (a damaged ``lloyd.npz``: from the chosen restart; a damaged ``init.npz``: the
    restarts run again, which the seed makes identical) - it never stops on a raw ``BadZipFile``.
    """

    def __init__(self, folder: Path, cfg: KMeansConfig, n: int):
        self.folder = folder
        key = json.dumps({**cfg.fit_key(), "n": n}, sort_keys=True)
        self.key = hashlib.sha256(key.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        self.meta = folder / "fit-key.json"
        old: dict = {}
        if self.meta.exists():
            try:
                old = read_sidecar(self.meta)
            except CorruptArtifactError as exc:
                log.warning("k-means checkpoint: %s; starting the fit from scratch", str(exc).splitlines()[0])
        self.recorded: dict[str, str] = {}
        if old.get("key") == self.key:
            self.recorded = dict(old.get("checksums") or {})
        else:
            for name in ("init.npz", "lloyd.npz"):
                (folder / name).unlink(missing_ok=True)
        self._write_meta()

    def _write_meta(self) -> None:
        write_json(self.meta, {"key": self.key, "checksums": self.recorded})

    def _save(self, name: str, **arrays) -> None:
        with atomic_path(self.folder / name, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        self.recorded[name] = file_checksum(self.folder / name)
        self._write_meta()

    def _load(self, name: str, keys: tuple[str, ...], fallback: str) -> dict[str, np.ndarray] | None:
        """The arrays of `name`, or None when it is absent or damaged (then it is deleted)."""
        path = self.folder / name
        if not path.exists():
            return None
        try:
            # a file without a recorded checksum (older versions) must at least load whole
            verify_file(path, self.recorded.get(name))
            with np.load(path) as z:
                return {k: np.asarray(z[k]) for k in keys}
        except (CorruptArtifactError, OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if isinstance(exc, CorruptArtifactError) else f"{path}: {exc!r}"
            log.warning("k-means checkpoint damaged, discarded (%s); %s", reason, fallback)
            path.unlink(missing_ok=True)
            self.recorded.pop(name, None)
            self._write_meta()
            return None

    def save_init(self, centers: torch.Tensor, inertia: float, restarts: list[float]) -> None:
        self._save("init.npz", centers=centers.cpu().numpy(), inertia=inertia, restarts=np.asarray(restarts))

    def load_init(self) -> tuple[torch.Tensor, float, list[float]] | None:
        z = self._load("init.npz", ("centers", "inertia", "restarts"), "running the k-means++ restarts again")
        if z is None:
            return None
        return torch.from_numpy(z["centers"]), float(z["inertia"]), z["restarts"].tolist()

    def save_lloyd(self, centers: torch.Tensor, it: int, inertia: float) -> None:
        self._save("lloyd.npz", centers=centers.cpu().numpy(), it=it, inertia=inertia)

    def load_lloyd(self) -> tuple[torch.Tensor, int, float] | None:
        z = self._load("lloyd.npz", ("centers", "it", "inertia"), "Lloyd iterations restart from the chosen restart")
        if z is None:
            return None
        return torch.from_numpy(z["centers"]), int(z["it"]), float(z["inertia"])
