"""k-means speed and quality, one run, same frames: obt-eval's backends vs plain faiss vs the fairseq recipe.

(a) ``obt_eval.units.kmeans.fit_kmeans`` with ``backend="torch"`` (k-means++ restarts on 100k frames,
    then exact Lloyd on all; on CUDA when present);
(b) the same with ``backend="faiss"`` (faiss-cpu init, then exact Lloyd on all frames);
(c) plain ``faiss.Kmeans(d, k, niter=20, seed)`` (faiss defaults: at most 256 frames per centre);
(d) fairseq ``examples/hubert/simple_kmeans/learn_kmeans.py``: sklearn ``MiniBatchKMeans(k,
    init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
    init_size=None, reassignment_ratio=0.0)``.
Inertia (mean squared distance to the nearest centroid, fairseq's logged score) is measured on the fit
frames and on held-out frames. Wall and CPU seconds are both printed, with the load average: on a shared
machine wall time grows with the load, CPU time much less. Features are a Gaussian mixture with
SSL-like dimensions, or a real feature store (--features). Prints one JSON object.

    python benchmarks/kmeans_speed.py                                   # CPU: 50k x 256, k=100
    python benchmarks/kmeans_speed.py --frames 200000 --dim 1024 --k 100 --threads 2   # issue 12's setting
    python benchmarks/kmeans_speed.py --frames 1000000 --dim 1024 --k 100   # the GPU goal
    python benchmarks/kmeans_speed.py --features workspace/features/demo/mfcc/L- --k 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obt_eval.units.kmeans import KMeansConfig, fit_kmeans, inertia_of, pick_device  # noqa: E402


def mixture(frames: int, dim: int, seed: int, components: int = 400) -> np.ndarray:
    """Frames drawn from an anisotropic Gaussian mixture: many more modes than k, like phone-ish features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (components, dim)).astype(np.float32)
    scales = rng.uniform(0.3, 1.2, (components, 1)).astype(np.float32)
    out = np.empty((frames, dim), np.float32)
    step = 100_000
    for s in range(0, frames, step):
        n = min(step, frames - s)
        comp = rng.integers(components, size=n)
        out[s : s + n] = centres[comp] + scales[comp] * rng.standard_normal((n, dim), dtype=np.float32)
    return out


def load_store(path: str, heldout_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from obt_eval.features.store import FeatureStore

    store = FeatureStore.open(path)
    ids = list(store.ids)
    np.random.default_rng(seed).shuffle(ids)
    cut = max(1, int(len(ids) * heldout_frac))
    return store.stack(ids[cut:]), store.stack(ids[:cut])


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--heldout", type=int, default=20_000)
    ap.add_argument("--features", help="a real feature store instead of the synthetic mixture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-init", type=int, default=KMeansConfig.n_init)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: all cores)")
    ap.add_argument("--skip", default="", help="comma list of runs to leave out: torch,faiss,faiss_plain,fairseq")
    ap.add_argument("--skip-fairseq", action="store_true", help="same as --skip fairseq (the recipe takes minutes)")
    ap.add_argument("--recipe-frames", type=int, default=None,
                    help="fit the fairseq recipe on only the first N frames (it takes ~20 CPU-minutes per 200k x 1024)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(","))) | ({"fairseq"} if args.skip_fairseq else set())
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(args.threads)
        except ImportError:
            pass
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # sklearn's threadpools read it at first use

    if args.features:
        fit_x, held_x = load_store(args.features, 0.2, args.seed)
        source = args.features
    else:
        allx = mixture(args.frames + args.heldout, args.dim, args.seed)
        fit_x, held_x = allx[: args.frames], allx[args.frames :]
        source = "gaussian-mixture"
    out: dict = {
        "benchmark": "kmeans_speed", "source": source, "frames": int(len(fit_x)), "heldout_frames": int(len(held_x)),
        "dim": int(fit_x.shape[1]), "k": args.k, "host": platform.node(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "device": str(pick_device(args.device)),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }
    if torch.cuda.is_available() and out["device"].startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
        fit_kmeans(fit_x[:20_000], KMeansConfig(k=args.k, n_init=1, max_iter=2, device=args.device,
                                                backend="torch"))  # warm-up

    def score(centres, **extra) -> dict:
        centres = np.asarray(centres, np.float32)
        return {**extra, "fit_inertia": inertia_of(fit_x, centres, device="cpu"),
                "heldout_inertia": inertia_of(held_x, centres, device="cpu")}

    for backend in ("torch", "faiss"):
        if backend in skip:
            continue
        cfg = KMeansConfig(k=args.k, seed=args.seed, n_init=args.n_init, device=args.device, backend=backend)
        res, wall, cpu = timed(lambda cfg=cfg: fit_kmeans(fit_x, cfg))
        out[f"obt_eval_{backend}"] = score(res.centroids, seconds=wall, cpu_seconds=cpu, iterations=res.n_iter,
                                           restarts=args.n_init, device=res.device)

    if "faiss_plain" not in skip:
        import faiss

        def plain():
            km = faiss.Kmeans(fit_x.shape[1], args.k, niter=20, seed=args.seed, verbose=False)
            km.train(np.ascontiguousarray(fit_x))
            return km.centroids

        centres, wall, cpu = timed(plain)
        out["faiss_kmeans_niter20"] = score(centres, seconds=wall, cpu_seconds=cpu)

    if "fairseq" not in skip:
        from sklearn.cluster import MiniBatchKMeans

        def recipe():
            return MiniBatchKMeans(args.k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                                   max_no_improvement=100, n_init=20, init_size=None, reassignment_ratio=0.0,
                                   random_state=args.seed, compute_labels=False).fit(recipe_x).cluster_centers_

        recipe_x = fit_x[: args.recipe_frames] if args.recipe_frames else fit_x
        centres, wall, cpu = timed(recipe)
        out["fairseq_recipe"] = score(centres, seconds=wall, cpu_seconds=cpu, frames=int(len(recipe_x)))
    out["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
