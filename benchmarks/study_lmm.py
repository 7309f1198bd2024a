"""Speed and calibration of the primary listening-test model (crossed LMM) on simulated studies; prints JSON.

Run: python benchmarks/study_lmm.py [n_sims]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from obt_eval.study.power import primary_p
from obt_eval.study.simulate import simulate_ab_ratings


def main(n_sims: int = 200) -> None:
    rng = np.random.default_rng(0)
    design = {"raters": 20, "utterances": 40, "per_rater": 20}  # reference/listening-tests.md Appendix A
    t0 = time.perf_counter()
    null = [primary_p(simulate_ab_ratings(**design, diff=0.0, rng=rng)) < 0.05 for _ in range(n_sims)]
    elapsed = time.perf_counter() - t0
    power = [primary_p(simulate_ab_ratings(**design, diff=0.3, rng=rng)) < 0.05 for _ in range(n_sims)]
    print(json.dumps({"design": design, "n_sims": n_sims, "seconds_per_fit": elapsed / n_sims,
                      "false_positive_rate": float(np.mean(null)), "power_at_0.3": float(np.mean(power))}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
