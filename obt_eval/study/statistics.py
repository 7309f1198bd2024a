"""Listening-test statistics that respect the design: ratings are clustered by rater and by utterance.

Per system: MOS with a two-way cluster-robust 95% CI. Per pair of systems: the paired t-test and
Wilcoxon (Pratt) on per-utterance mean differences (never on raw rating pairs — that is
pseudo-replication, ~24% false positives; reference/listening-tests.md §3.5), Cohen's d_z, and as the
primary test a crossed linear mixed model whose p-values are Holm-corrected across pairs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from obt_eval.errors import BadInputError
from obt_eval.study.mixed import fit_crossed_lmm
from obt_eval.study.screening import ScreeningConfig, screen_raters

REQUIRED_COLUMNS = ("rater", "utterance", "system", "score")

MODEL_FULL = ("crossed LMM: score ~ system + position + (1 + system || rater) + (1 + system || utterance), "
              "REML, Satterthwaite t")
MODEL_INTERCEPTS = ("crossed LMM without random slopes: score ~ system + position + (1 | rater) + (1 | utterance), "
                    "REML, Satterthwaite t")
MODEL_UTTERANCE_T = "paired t on per-utterance mean differences (mixed models failed)"


@dataclass(frozen=True)
class StatsConfig:
    """Analysis options; α = .05 and Holm across pairs as reference/listening-tests.md §3.5 recommends."""

    alpha: float = 0.05
    exclude_flagged: bool = False
    exclude_raters: tuple[str, ...] = ()
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    anchor_system: str = "anchor"


def check_ratings(df: pd.DataFrame) -> pd.DataFrame:
    """Validate and normalise a ratings table (types, scores numeric); raises BadInputError if unusable."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise BadInputError(
            f"the ratings table lacks the column(s) {', '.join(missing)}",
            "give a long-format CSV with one row per rating and at least: rater, utterance, system, score",
        )
    df = df.copy()
    for col in ("rater", "utterance", "system"):
        df[col] = df[col].astype(str)
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df = df[df["score"].notna()]
    if df.empty:
        raise BadInputError("the ratings table has no numeric scores", "check the score column")
    return df


def regular_ratings(df: pd.DataFrame) -> pd.DataFrame:
    """The ratings that count for the comparison: attention checks and repeats are QC only."""
    if "kind" not in df.columns:
        return df
    return df[df["kind"].fillna("regular").astype(str).eq("regular")]


def cluster_mean_ci(scores: np.ndarray, raters: np.ndarray, utterances: np.ndarray) -> tuple[float, float, int]:
    """Mean with a two-way (rater, utterance) cluster-robust SE (Cameron, Gelbach & Miller 2011).

    Returns (mean, se, df) with df = fewest clusters − 1 for the t quantile.
    """
    y = np.asarray(scores, dtype=float)
    n = y.size
    e = y - y.mean()

    def one_way(keys: np.ndarray) -> tuple[float, int]:
        sums = pd.Series(e).groupby(pd.Series(keys).to_numpy()).sum().to_numpy()
        g = sums.size
        return (g / (g - 1) if g > 1 else 1.0) * float(np.sum(sums**2)) / n**2, g

    v_r, g_r = one_way(np.asarray(raters))
    v_u, g_u = one_way(np.asarray(utterances))
    cells = np.char.add(np.char.add(np.asarray(raters, dtype=str), "\x1f"), np.asarray(utterances, dtype=str))
    v_ru, _ = one_way(cells)
    var = v_r + v_u - v_ru
    if var <= 0:  # the CGM estimator is not guaranteed positive; fall back to the larger one-way variance
        var = max(v_r, v_u)
    return float(y.mean()), math.sqrt(var), max(min(g_r, g_u) - 1, 1)


def system_summary(df: pd.DataFrame, systems: list[str]) -> list[dict[str, Any]]:
    out = []
    for system in systems:
        rows = df[df["system"] == system]
        if rows.empty:
            continue
        mean, se, dof = cluster_mean_ci(rows["score"].to_numpy(), rows["rater"].to_numpy(),
                                        rows["utterance"].to_numpy())
        half = float(stats.t.ppf(0.975, dof) * se)
        out.append({
            "system": system,
            "mos": mean,
            "ci95": [mean - half, mean + half],
            "se": se,
            "n": int(len(rows)),
            "sd": float(rows["score"].std(ddof=1)) if len(rows) > 1 else float("nan"),
            "n_raters": int(rows["rater"].nunique()),
            "n_utterances": int(rows["utterance"].nunique()),
        })
    return out


def pair_subset(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Ratings of a and b; with trial ids, only the trials that presented a against b."""
    rows = df[df["system"].isin([a, b])]
    if "trial" in df.columns and df["trial"].notna().all() and not df.empty:
        trial_systems = df.groupby("trial")["system"].agg(lambda s: frozenset(s))
        # element-wise: with pandas' string dtype an empty result cannot be compared with a frozenset
        keep = trial_systems[trial_systems.map(lambda pair: pair == frozenset((a, b)))].index
        if len(keep):
            rows = rows[rows["trial"].isin(keep)]
    return rows


def utterance_tests(rows: pd.DataFrame, a: str, b: str) -> dict[str, Any]:
    """Paired t and Wilcoxon (Pratt) on per-utterance mean differences, Cohen's d_z."""
    means = rows.groupby(["utterance", "system"])["score"].mean().unstack()
    if a not in means or b not in means:
        d = np.array([])
    else:
        d = (means[a] - means[b]).dropna().to_numpy()
    out: dict[str, Any] = {"n_utterances": int(d.size), "diff": float(d.mean()) if d.size else float("nan")}
    if d.size < 2:
        out.update(p_paired_t=float("nan"), diff_ci95=[float("nan")] * 2, p_wilcoxon=float("nan"), d_z=float("nan"))
        return out
    sd = float(d.std(ddof=1))
    if sd == 0:
        out.update(p_paired_t=1.0 if d.mean() == 0 else 0.0, diff_ci95=[float(d.mean())] * 2,
                   p_wilcoxon=1.0 if d.mean() == 0 else float("nan"), d_z=float("nan"))
        return out
    t = stats.ttest_1samp(d, 0.0)
    ci = t.confidence_interval(0.95)
    # Integer scores give many zero differences: the default zero_method='wilcox' silently drops them.
    # With zeros or ties scipy falls back to a slow permutation test; the normal approximation
    # (tie-corrected) is what R's wilcox.test uses in that case too.
    method = "asymptotic" if np.any(d == 0) or len(np.unique(np.abs(d))) < d.size else "auto"
    p_w = float(stats.wilcoxon(d, zero_method="pratt", method=method).pvalue) if np.any(d != 0) else 1.0
    out.update(p_paired_t=float(t.pvalue), diff_ci95=[float(ci.low), float(ci.high)], p_wilcoxon=p_w,
               d_z=float(d.mean() / sd))
    return out


def mixed_test(rows: pd.DataFrame, a: str, b: str) -> dict[str, Any]:
    """The primary test: crossed LMM on the pair's ratings, with documented fallbacks if a fit fails."""
    x = np.where(rows["system"].to_numpy() == a, 0.5, -0.5)
    X_cols = [np.ones(len(rows)), x]
    names = ["Intercept", "system"]
    if "position" in rows.columns and rows["position"].nunique() == 2:
        X_cols.append(np.where(rows["position"].astype(str).to_numpy() == "A", 0.5, -0.5))
        names.append("position")
    X = np.column_stack(X_cols)
    r = pd.factorize(rows["rater"])[0]
    u = pd.factorize(rows["utterance"])[0]
    full = {"rater": (r, None), "utterance": (u, None), "rater:system": (r, x), "utterance:system": (u, x)}
    intercepts = {"rater": (r, None), "utterance": (u, None)}
    for label, comps in ((MODEL_FULL, full), (MODEL_INTERCEPTS, intercepts)):
        comps = {k: v for k, v in comps.items() if int(v[0].max()) >= 1}  # a factor needs two levels
        if not comps:
            continue
        try:
            fit = fit_crossed_lmm(rows["score"].to_numpy(float), X, names, comps, satterthwaite=("system",))
            est, se, dof, p, ci = fit.test("system")
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue
        if fit.converged and np.isfinite(p):
            result = {
                "p_mixed": p, "mixed_estimate": est, "mixed_se": se, "mixed_df": dof,
                "mixed_ci95": [ci[0], ci[1]], "model": label if fit.df_method == "satterthwaite"
                else label.replace("Satterthwaite", "containment df"),
                "variance_components": {k: math.sqrt(v) for k, v in fit.variances.items()}
                | {"residual": math.sqrt(fit.residual_variance)},
            }
            if "position" in names:
                result["position_effect"] = float(fit.beta[names.index("position")])
            return result
    return {"p_mixed": None, "model": MODEL_UTTERANCE_T}


def preference_summary(df: pd.DataFrame, systems: list[str]) -> list[dict[str, Any]]:
    """Preference shares per pair with Wilson 95% CIs and a two-sided binomial test (ties left out).

    These counts treat trials as independent; read them beside the clustered MOS comparison.
    """
    if "preference" not in df.columns or "trial" not in df.columns or "position" not in df.columns:
        return []
    answered = df[df["preference"].notna() & df["preference"].astype(str).isin(["A", "B", "none"])]
    out = []
    for a, b in itertools.combinations(systems, 2):
        rows = pair_subset(answered, a, b)
        if rows.empty:
            continue
        counts = {a: 0, b: 0, "none": 0}
        for _, trial in rows.groupby("trial"):
            pref = str(trial["preference"].iloc[0])
            if pref == "none":
                counts["none"] += 1
                continue
            chosen = trial.loc[trial["position"].astype(str) == pref, "system"]
            if len(chosen):
                counts[str(chosen.iloc[0])] += 1
        decisive = counts[a] + counts[b]
        entry: dict[str, Any] = {"a": a, "b": b, "a_preferred": counts[a], "b_preferred": counts[b],
                                 "no_preference": counts["none"], "n": decisive + counts["none"]}
        if decisive:
            lo, hi = proportion_confint(counts[a], decisive, alpha=0.05, method="wilson")
            entry.update(share_a=counts[a] / decisive, share_a_ci95=[float(lo), float(hi)],
                         p_binomial=float(stats.binomtest(counts[a], decisive, 0.5).pvalue))
        out.append(entry)
    return out


def default_order(df: pd.DataFrame) -> list[str]:
    """Reference systems first, then by name — the same order for `study results` and `stats` on its export."""
    names = sorted(set(df["system"]))
    if "system_role" in df.columns:
        refs = set(df.loc[df["system_role"].astype(str).eq("reference"), "system"])
        names = sorted(refs) + [n for n in names if n not in refs]
    return names


def analyse(df: pd.DataFrame, config: StatsConfig = StatsConfig(), systems: list[str] | None = None) -> dict[str, Any]:
    """The full analysis of a long-format ratings table; returns a JSON-ready dict.

    Keys: ``systems`` (mos, ci95, n, sd…), ``comparisons`` (a, b, diff, p_mixed, p_paired_t,
    p_wilcoxon, p_holm, d_z, model…), ``preferences``, ``screening``, ``excluded_raters``.
    """
    df = check_ratings(df)
    screening = screen_raters(df, config.screening, config.anchor_system)
    excluded = set(config.exclude_raters)
    if config.exclude_flagged and not screening.empty:
        excluded |= set(screening.loc[screening["flagged"], "rater"])
    kept = df[~df["rater"].isin(excluded)]
    regular = regular_ratings(kept)
    if regular.empty:
        raise BadInputError("no regular ratings left to analyse",
                            "check the exclusions, or rate some trials before asking for results")
    if systems is None:
        systems = default_order(regular)
    systems = [s for s in systems if (regular["system"] == s).any()]
    comparisons = []
    for a, b in itertools.combinations(systems, 2):
        rows = pair_subset(regular, a, b)
        entry: dict[str, Any] = {"a": a, "b": b, "n_ratings": int(len(rows)), "n_raters": int(rows["rater"].nunique())}
        entry |= utterance_tests(rows, a, b)
        entry |= mixed_test(rows, a, b)
        if entry["p_mixed"] is None:
            entry["p_mixed"] = entry["p_paired_t"]
        comparisons.append(entry)
    pvals = [c["p_mixed"] for c in comparisons]
    finite = [i for i, p in enumerate(pvals) if p is not None and np.isfinite(p)]
    holm = multipletests([pvals[i] for i in finite], method="holm")[1] if finite else []
    for c in comparisons:
        c["p_holm"] = float("nan")
    for i, p in zip(finite, holm, strict=True):
        comparisons[i]["p_holm"] = float(p)
        comparisons[i]["significant"] = bool(p < config.alpha)
    return clean_json({
        "n_ratings": int(len(regular)),
        "n_raters": int(regular["rater"].nunique()),
        "n_utterances": int(regular["utterance"].nunique()),
        "excluded_raters": sorted(excluded),
        "alpha": config.alpha,
        "systems": system_summary(regular, systems),
        "comparisons": comparisons,
        "preferences": preference_summary(regular, systems),
        "screening": screening.to_dict(orient="records"),
        "notes": [
            "p_mixed is the primary test; p_holm is p_mixed Holm-corrected across all pairs",
            "p_paired_t and p_wilcoxon use per-utterance mean differences, not raw rating pairs",
            "MOS CIs are two-way cluster-robust (rater, utterance)",
        ],
    })


def clean_json(value: Any) -> Any:
    """NaN and numpy scalars → JSON-safe values (NaN is not JSON; it becomes null)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
