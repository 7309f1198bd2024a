"""ABX speed: `obt_eval.metrics.abx` on a synthetic item file like the one fastabx was timed on.

Reference (reference/metrics-and-data.md §1.4, fastabx 0.9.0 on a 2-core CPU): 29,600 items of
768-d features, max_size_group=10: within speaker/within context 3.4 s, within/any 3.6 s,
across/within 29.1 s. The generator is the note's: files of random phone sequences (10 phones,
3-8 frames each, 3 speakers), features = phone centroid + noise. Prints one JSON object.

    python benchmarks/abx_speed.py                         # ~3,000 items, 64-d (seconds)
    python benchmarks/abx_speed.py --items 29600 --dim 768 # the fastabx reference size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obt_eval.metrics.abx import AbxConfig, abx  # noqa: E402

PHONES = ["a", "e", "i", "o", "u", "p", "t", "k", "m", "n"]


def synthetic(items: int, dim: int, seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    cent = {p: rng.normal(0, 1, dim).astype(np.float32) for p in PHONES}
    rows, feats, f = [], {}, 0
    while len(rows) < items:
        spk = ["spkA", "spkB", "spkC"][f % 3]
        seq = [rnd.choice(PHONES) for _ in range(40)]
        frames, t = [], 0.0
        for i, p in enumerate(seq):
            n = rnd.randint(3, 8)
            frames.append(cent[p] + rng.normal(0, 1.0, (n, dim)).astype(np.float32))
            if 0 < i < len(seq) - 1 and len(rows) < items:
                rows.append((f"utt{f:05d}", round(t, 4), round(t + n / 50, 4), p, seq[i - 1], seq[i + 1], spk))
            t += n / 50
        feats[f"utt{f:05d}"] = np.concatenate(frames)
        f += 1
    return pd.DataFrame(rows, columns=["file", "onset", "offset", "phone", "prev", "next", "speaker"]), feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--max-size-group", type=int, default=10)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tasks", default="within/within,within/any,across/within")
    args = ap.parse_args()

    items, feats = synthetic(args.items, args.dim)
    out: dict = {"benchmark": "abx_speed", "items": len(items), "dim": args.dim, "max_size_group": args.max_size_group,
                 "host": platform.node(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "fastabx_reference_2core_s": {"within/within": 3.4, "within/any": 3.6, "across/within": 29.1},
                 "tasks": {}}
    for task in args.tasks.split(","):
        speaker, context = task.split("/")
        cfg = AbxConfig(speaker=speaker, context=context, max_size_group=args.max_size_group, device=args.device)
        t = time.perf_counter()
        res = abx(items, feats, cfg)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out["tasks"][task] = {"seconds": round(time.perf_counter() - t, 3), "error": res.error,
                              "cells": res.num_cells, "alignments": res.num_alignments, "device": res.config["device"]
                              or ("cuda" if torch.cuda.is_available() else "cpu")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
