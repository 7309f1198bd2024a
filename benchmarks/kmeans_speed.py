"""k-means speed and quality: the fairseq recipe vs `obt-eval units`' torch k-means, same features, one run.

(a) fairseq ``examples/hubert/simple_kmeans/learn_kmeans.py``: sklearn ``MiniBatchKMeans(k,
    init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
    init_size=None, reassignment_ratio=0.0)``;
(b) ``obt_eval.units.kmeans.fit_kmeans`` (k-means++ restarts on 100k frames, then Lloyd on all), on
    CUDA when present.
Both fit on the same frames; inertia (mean squared distance to the nearest centroid, fairseq's
logged score) is measured on the fit frames and on held-out frames. Features are a Gaussian mixture
with SSL-like dimensions, or a real feature store (--features). Prints one JSON object.

    python benchmarks/kmeans_speed.py                                   # CPU: 50k x 256, k=100
    python benchmarks/kmeans_speed.py --frames 1000000 --dim 1024 --k 100   # the issue's GPU goal
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
    ap.add_argument("--skip-fairseq", action="store_true", help="time only obt-eval (the recipe takes minutes)")
    args = ap.parse_args()

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
        "torch_threads": torch.get_num_threads(), "device": str(pick_device(args.device)),
    }
    if torch.cuda.is_available() and out["device"].startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)

    cfg = KMeansConfig(k=args.k, seed=args.seed, n_init=args.n_init, device=args.device)
    if out["device"].startswith("cuda"):
        fit_kmeans(fit_x[:20_000], KMeansConfig(k=args.k, n_init=1, max_iter=2, device=args.device))  # warm-up
        torch.cuda.synchronize()
    t = time.perf_counter()
    ours = fit_kmeans(fit_x, cfg)
    if out["device"].startswith("cuda"):
        torch.cuda.synchronize()
    ours_s = time.perf_counter() - t
    out["obt_eval"] = {
        "seconds": round(ours_s, 3), "iterations": ours.n_iter, "restarts": args.n_init,
        "fit_inertia": ours.inertia, "heldout_inertia": inertia_of(held_x, ours.centroids, device=args.device),
    }

    if not args.skip_fairseq:
        from sklearn.cluster import MiniBatchKMeans

        t = time.perf_counter()
        km = MiniBatchKMeans(args.k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                             max_no_improvement=100, n_init=20, init_size=None, reassignment_ratio=0.0,
                             random_state=args.seed, compute_labels=False).fit(fit_x)
        rec_s = time.perf_counter() - t
        centres = km.cluster_centers_.astype(np.float32)
        out["fairseq_recipe"] = {
            "seconds": round(rec_s, 3), "fit_inertia": inertia_of(fit_x, centres, device=args.device),
            "heldout_inertia": inertia_of(held_x, centres, device=args.device),
        }
        out["speedup"] = round(rec_s / ours_s, 2)
        out["heldout_inertia_ratio"] = out["obt_eval"]["heldout_inertia"] / out["fairseq_recipe"]["heldout_inertia"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
