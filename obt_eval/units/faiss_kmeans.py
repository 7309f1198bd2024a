"""k-means with faiss on the CPU: faiss's own fast initialisation, then exact Lloyd on every sampled frame.

Why: measured on 200k x 1024, k = 100, 2 threads (issue 12), ``faiss.Kmeans`` (random init, 20
iterations on at most 256 frames per centre) fitted in 5.9 s with held-out inertia 1682.7, while the
torch path's k-means++ restarts on 100k frames took 13.9 s for 1690.4. k-means++ on 100k x 1024 is
the torch path's main CPU cost; faiss's init touches ~256 k frames and its BLAS assignment is fast.
On the benchmark's synthetic 200k x 1024 mixture, though, faiss's random init ended 0.9 % worse in
held-out inertia than k-means++ (benchmarks/kmeans_speed.py), so ``auto`` stays torch; this backend is
``--backend faiss``, to be chosen where it measures better on real features.

The recipe here, same checkpoints and determinism as ``obt_eval.units.kmeans``:
1. ``n_init`` faiss restarts (``nredo``) of ``FAISS_INIT_ITER`` iterations on faiss's seeded subsample
   of at most ``FAISS_POINTS_PER_CENTROID`` frames per centre; the best is checkpointed (``init.npz``);
2. exact Lloyd on all frames (faiss exhaustive search for the assignment, a sparse one-hot product for
   the new centres), checkpointed every 5 iterations (``lloyd.npz``), stopped by the same rule as the
   torch path (``lloyd_converged``). Step 2 only lowers the full-data inertia of step 1's codebook.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

FAISS_INIT_ITER = 20  # faiss.Kmeans' default niter (what the issue measured)
FAISS_POINTS_PER_CENTROID = 256  # faiss's default subsample for fitting (max_points_per_centroid)
CHECKPOINT_EVERY = 5  # = obt_eval.units.kmeans.CHECKPOINT_EVERY


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_init(x: np.ndarray, k: int, seed: int, n_init: int) -> tuple[np.ndarray, float, list[float]]:
    """Best of `n_init` faiss k-means runs on a seeded subsample; returns centres, their mean inertia on the
    subsample and each restart's (faiss's objective divided by the points it used)."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=FAISS_INIT_ITER, nredo=max(1, n_init), seed=int(seed),
                      max_points_per_centroid=FAISS_POINTS_PER_CENTROID, verbose=False)
    km.train(x)
    used = min(x.shape[0], k * FAISS_POINTS_PER_CENTROID)
    stats = km.iteration_stats
    finals = [stats[(r + 1) * FAISS_INIT_ITER - 1]["obj"] / used for r in range(max(1, n_init))
              if (r + 1) * FAISS_INIT_ITER - 1 < len(stats)]
    return np.ascontiguousarray(km.centroids, dtype=np.float32), float(min(finals) if finals else math.nan), finals


def faiss_assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre (faiss exhaustive L2 search) and squared distance of every row."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dists, labels = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return labels[:, 0].astype(np.int64), np.maximum(dists[:, 0], 0).astype(np.float64)


def _new_centres(x: np.ndarray, labels: np.ndarray, dists: np.ndarray, k: int) -> np.ndarray:
    """Means of each cluster (float64 sums); an empty cluster takes the frames farthest from their centre."""
    from scipy import sparse

    n = x.shape[0]
    onehot = sparse.csr_matrix((np.ones(n, np.float64), (labels, np.arange(n))), shape=(k, n))
    sums = np.asarray(onehot @ x.astype(np.float64, copy=False))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    centres = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        far = np.argsort(-dists, kind="stable")[: empty.size]
        centres[empty[: far.size]] = x[far]
    return centres


def faiss_lloyd(
    x: np.ndarray,
    centres: np.ndarray,
    *,
    max_iter: int,
    tol: float,
    start_iter: int = 0,
    on_iter: Callable[[int, np.ndarray, float], None] | None = None,
    checkpoint_every: int | None = None,
) -> tuple[np.ndarray, float, int]:
    """Exact Lloyd iterations on all of `x`, stopped by the torch path's rule (`lloyd_converged`)."""
    from obt_eval.units.kmeans import lloyd_converged, may_stop_at

    k = centres.shape[0]
    centres = np.array(centres, dtype=np.float32, copy=True)
    prev_labels: np.ndarray | None = None
    it = start_iter
    while it < max_iter:
        labels, dists = faiss_assign(x, centres)
        inertia = float(dists.mean())
        if (prev_labels is not None and may_stop_at(it, checkpoint_every)
                and lloyd_converged(int((labels != prev_labels).sum()), x.shape[0], tol)):
            break
        centres = _new_centres(x, labels, dists, k)
        prev_labels = labels
        it += 1
        if on_iter is not None:
            on_iter(it, centres, inertia)
    _, dists = faiss_assign(x, centres)
    return centres, float(dists.mean()), it


def fit_faiss(x: np.ndarray, cfg, state, progress) -> tuple[np.ndarray, float, int, float, list[float]]:
    """The faiss backend of ``fit_kmeans``: (centroids, inertia, iterations, init inertia, restart inertias)."""
    t0 = time.perf_counter()
    x = np.ascontiguousarray(x, dtype=np.float32)
    init = state.load_init() if state else None
    if init is None:
        if progress:
            progress(f"faiss init: {cfg.n_init} restarts x {FAISS_INIT_ITER} iterations")
        centres, init_inertia, restarts = faiss_init(x, cfg.k, cfg.seed, cfg.n_init)
        if state:
            import torch

            state.save_init(torch.from_numpy(centres), init_inertia, restarts)
    else:
        centres_t, init_inertia, restarts = init
        centres = centres_t.numpy().astype(np.float32)
    start_iter = 0
    resumed = state.load_lloyd() if state else None
    if resumed is not None:
        centres_t, start_iter, _ = resumed
        centres = centres_t.numpy().astype(np.float32)

    def on_iter(it: int, c: np.ndarray, inertia: float) -> None:
        if progress:
            progress(f"Lloyd iteration {it}: inertia {inertia:.4f} ({time.perf_counter() - t0:.1f} s)")
        if state and it % CHECKPOINT_EVERY == 0:
            import torch

            state.save_lloyd(torch.from_numpy(c), it, inertia)

    centres, inertia, n_iter = faiss_lloyd(x, centres, max_iter=cfg.max_iter, tol=cfg.tol, start_iter=start_iter,
                                           on_iter=on_iter, checkpoint_every=CHECKPOINT_EVERY)
    return centres, inertia, n_iter, float(init_inertia), [float(v) for v in restarts]
