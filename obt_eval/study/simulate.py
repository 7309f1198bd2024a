"""Simulated listening-test ratings with crossed rater and utterance effects.

Used by the power planner and by the tests that check the statistics keep their false-positive
rate: scores come from the generative model of reference/listening-tests.md Appendix A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class VarianceComponents:
    """Standard deviations of the crossed random effects (MOS points).

    Defaults: the simulation of reference/listening-tests.md Appendix A (after Rosenberg &
    Ramabhadran 2017 and Camp et al. 2023: raters and utterances both vary, and so does the
    system effect).
    """

    rater: float = 0.5
    utterance: float = 0.4
    rater_slope: float = 0.25
    utterance_slope: float = 0.35
    residual: float = 0.7


def simulate_ab_ratings(
    raters: int = 20,
    utterances: int = 40,
    per_rater: int = 20,
    diff: float = 0.0,
    sd: VarianceComponents = VarianceComponents(),
    mean: float = 3.5,
    rng: np.random.Generator | int | None = None,
    systems: tuple[str, str] = ("a", "b"),
) -> pd.DataFrame:
    """Long-format ratings of an A/B study: each rater rates both systems for `per_rater` utterances.

    ``diff`` is the true MOS difference a − b. Scores are rounded and clipped to the 1–5 scale,
    positions are balanced within each rater. Columns: rater, utterance, system, score, position, trial.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    per_rater = min(per_rater, utterances)
    r_int = rng.normal(0, sd.rater, raters)
    r_slope = rng.normal(0, sd.rater_slope, raters)
    u_int = rng.normal(0, sd.utterance, utterances)
    u_slope = rng.normal(0, sd.utterance_slope, utterances)
    rows_r, rows_u, rows_trial, rows_first = [], [], [], []
    trial = 0
    for r in range(raters):
        chosen = rng.choice(utterances, size=per_rater, replace=False)
        flips = np.resize([True, False], per_rater)
        rng.shuffle(flips)
        for u, a_first in zip(chosen, flips, strict=True):
            rows_r.append(r)
            rows_u.append(u)
            rows_trial.append(trial)
            rows_first.append(a_first)
            trial += 1
    rr = np.repeat(np.asarray(rows_r), 2)
    uu = np.repeat(np.asarray(rows_u), 2)
    is_a = np.tile([True, False], len(rows_r))
    sign = np.where(is_a, 0.5, -0.5)
    latent = mean + r_int[rr] + u_int[uu] + sign * (diff + r_slope[rr] + u_slope[uu])
    latent += rng.normal(0, sd.residual, latent.size)
    score = np.clip(np.rint(latent), 1, 5).astype(int)
    a_first = np.repeat(np.asarray(rows_first), 2)
    position = np.where(is_a == a_first, "A", "B")
    return pd.DataFrame(
        {
            "rater": [f"r{i:03d}" for i in rr],
            "utterance": [f"u{i:03d}" for i in uu],
            "system": np.where(is_a, systems[0], systems[1]),
            "score": score,
            "position": position,
            "trial": np.repeat(np.asarray(rows_trial), 2),
        }
    )
