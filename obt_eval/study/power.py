"""Power and sample-size planning for an A/B MOS study, by simulating the design and fitting the primary model.

The closed-form t-test numbers (reference/listening-tests.md §3.5) assume independent paired units;
raters and utterances are crossed random factors, so the planner simulates whole studies instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.power import TTestPower
from tqdm.auto import tqdm

from obt_eval.study.mixed import fit_crossed_lmm
from obt_eval.study.simulate import VarianceComponents, simulate_ab_ratings


def primary_p(df: pd.DataFrame, a: str = "a") -> float:
    """p-value of the system effect in the crossed LMM (the same model `analyse` uses first)."""
    x = np.where(df["system"].to_numpy() == a, 0.5, -0.5)
    pos = np.where(df["position"].astype(str).to_numpy() == "A", 0.5, -0.5)
    r = pd.factorize(df["rater"])[0]
    u = pd.factorize(df["utterance"])[0]
    X = np.column_stack([np.ones(len(df)), x, pos])
    comps = {"rater": (r, None), "utterance": (u, None), "rater:system": (r, x), "utterance:system": (u, x)}
    fit = fit_crossed_lmm(df["score"].to_numpy(float), X, ["Intercept", "system", "position"], comps,
                          satterthwaite=("system",))
    return fit.test("system")[3]


def simulated_power(diff: float, raters: int, utterances: int, per_rater: int,
                    sd: VarianceComponents = VarianceComponents(), n_sims: int = 200, alpha: float = 0.05,
                    seed: int = 0) -> float:
    """Share of simulated studies in which the primary test rejects at `alpha`."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_sims):
        p = primary_p(simulate_ab_ratings(raters, utterances, per_rater, diff=diff, sd=sd, rng=rng))
        hits += bool(p < alpha)
    return hits / n_sims


def plan(diff: float, raters: Iterable[int], utterances: Iterable[int], per_rater: int | None = None,
         sd: VarianceComponents = VarianceComponents(), n_sims: int = 200, alpha: float = 0.05,
         target_power: float = 0.8, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Power for each (raters, utterances) design; the cheapest design reaching `target_power` is marked.

    `per_rater` is how many utterances each rater hears both systems for (default: all of them).
    """
    grid = [(r, u) for r in raters for u in utterances]
    rows = []
    for r, u in tqdm(grid, desc="power", disable=not progress):
        m = min(per_rater or u, u)
        power = simulated_power(diff, r, u, m, sd, n_sims, alpha, seed)
        half = 1.96 * math.sqrt(power * (1 - power) / n_sims)
        rows.append({"raters": r, "utterances": u, "per_rater": m, "ratings": 2 * r * m,
                     "power": power, "power_ci95": [max(0.0, power - half), min(1.0, power + half)]})
    reaching = [row for row in rows if row["power"] >= target_power]
    best = min(reaching, key=lambda row: (row["ratings"], row["raters"])) if reaching else None
    sd_diff = math.sqrt(4 * sd.residual**2 / 2 + sd.rater_slope**2 + sd.utterance_slope**2)
    return {
        "diff": diff, "alpha": alpha, "target_power": target_power, "n_sims": n_sims,
        "variance_components": asdict(sd), "designs": rows, "recommended": best,
        # For comparison only: independent paired units, which crossed designs are not.
        "naive_paired_units": _naive_units(diff, sd_diff, alpha, target_power),
    }


def _naive_units(diff: float, sd_diff: float, alpha: float, power: float) -> float | None:
    if diff == 0:
        return None
    return float(TTestPower().solve_power(effect_size=abs(diff) / sd_diff, alpha=alpha, power=power))


def components_from_fit(variances: dict[str, float]) -> VarianceComponents:
    """Variance components (SDs) estimated from pilot ratings by `analyse` → the planner's input."""
    return VarianceComponents(
        rater=variances.get("rater", 0.0),
        utterance=variances.get("utterance", 0.0),
        rater_slope=variances.get("rater:system", 0.0),
        utterance_slope=variances.get("utterance:system", 0.0),
        residual=variances.get("residual", 0.7),
    )
