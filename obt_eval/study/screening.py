"""Per-rater screening in the P.808 manner: attention checks, rating spread, agreement with the others, repeats.

Flagged raters are kept in the data (shadow exclusion, as TTS Arena does) and left out of the analysis
only when asked, so every exclusion is visible and reversible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ScreeningConfig:
    """Thresholds for flagging a rater.

    P.808 toolkit (microsoft/P.808 acr_result_parser): reject straight-liners (variance < 0.1) and
    sessions failing the gold/trapping clip; PCC with the others' MOS is its quality criterion.
    """

    min_score_variance: float = 0.1
    max_attention_failure_share: float = 0.25
    min_correlation: float = 0.0  # honest raters reach only ~0.2-0.5 when stimuli differ little
    min_overlap_for_correlation: int = 5
    max_repeat_abs_diff: float = 1.5


def _kind(df: pd.DataFrame) -> pd.Series:
    return df["kind"].fillna("regular") if "kind" in df.columns else pd.Series("regular", index=df.index)


def anchor_rows(df: pd.DataFrame, anchor_system: str = "anchor") -> pd.Series:
    """Rows that hold the degraded anchor (by ``system_role`` when exported, else by system name)."""
    if "system_role" in df.columns:
        return df["system_role"].astype(str).eq("anchor")
    return df["system"].astype(str).eq(anchor_system)


def attention_results(df: pd.DataFrame, anchor_system: str = "anchor") -> pd.DataFrame:
    """One row per attention trial: rater, trial, passed (the anchor scored below the other clip)."""
    kind = _kind(df)
    att = df[kind.eq("attention")].copy()
    if att.empty or "trial" not in att.columns:
        return pd.DataFrame(columns=["rater", "trial", "passed"])
    att["is_anchor"] = anchor_rows(att, anchor_system)
    out = []
    for (rater, trial), rows in att.groupby(["rater", "trial"], sort=False):
        anchor = rows[rows["is_anchor"]]
        other = rows[~rows["is_anchor"]]
        if anchor.empty or other.empty:
            continue
        passed = float(anchor["score"].iloc[0]) < float(other["score"].iloc[0])
        pref = anchor["preference"].iloc[0] if "preference" in anchor.columns else None
        if isinstance(pref, str) and pref == anchor["position"].iloc[0]:
            passed = False  # preferring the degraded clip is a failure even with sensible scores
        out.append({"rater": rater, "trial": trial, "passed": passed})
    return pd.DataFrame(out, columns=["rater", "trial", "passed"])


def repeat_differences(df: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute score difference between each repeated trial and its original, per rater."""
    if "repeat_of" not in df.columns or "trial" not in df.columns:
        return pd.DataFrame(columns=["rater", "trial", "abs_diff"])
    kind = _kind(df)
    rep = df[kind.eq("repeat") & df["repeat_of"].notna()]
    out = []
    for (rater, trial), rows in rep.groupby(["rater", "trial"], sort=False):
        original = df[(df["rater"] == rater) & (df["trial"].astype(str) == str(rows["repeat_of"].iloc[0]))]
        merged = rows.merge(original, on="system", suffixes=("", "_orig"))
        if merged.empty:
            continue
        out.append({"rater": rater, "trial": trial,
                    "abs_diff": float((merged["score"] - merged["score_orig"]).abs().mean())})
    return pd.DataFrame(out, columns=["rater", "trial", "abs_diff"])


def screen_raters(df: pd.DataFrame, config: ScreeningConfig = ScreeningConfig(),
                  anchor_system: str = "anchor") -> pd.DataFrame:
    """The screening table: one row per rater with its figures, ``flagged`` and the ``reasons``."""
    kind = _kind(df)
    regular = df[kind.eq("regular")]
    stim_sum = regular.groupby(["system", "utterance"])["score"].agg(["sum", "count"])
    attention = attention_results(df, anchor_system)
    repeats = repeat_differences(df)
    rows = []
    for rater, own in regular.groupby("rater", sort=True):
        scores = own["score"].astype(float)
        joined = own.join(stim_sum, on=["system", "utterance"])
        # Each rater's own ratings are taken out of the consensus they are compared with.
        own_sum = own.groupby(["system", "utterance"])["score"].transform("sum")
        own_n = own.groupby(["system", "utterance"])["score"].transform("count")
        others_n = joined["count"] - own_n
        others_mean = (joined["sum"] - own_sum) / others_n.where(others_n > 0)
        ok = others_mean.notna()
        corr = float("nan")
        if ok.sum() >= config.min_overlap_for_correlation and scores[ok].std() > 0 and others_mean[ok].std() > 0:
            corr = float(np.corrcoef(scores[ok], others_mean[ok])[0, 1])
        att = attention[attention["rater"] == rater]
        rep = repeats[repeats["rater"] == rater]
        fails = int((~att["passed"].astype(bool)).sum()) if len(att) else 0
        row = {
            "rater": rater,
            "n_ratings": int(len(own)),
            "mean": float(scores.mean()),
            "variance": float(scores.var(ddof=1)) if len(scores) > 1 else float("nan"),
            "corr_with_others": corr,
            "attention_checks": int(len(att)),
            "attention_failures": fails,
            "repeats": int(len(rep)),
            "repeat_abs_diff": float(rep["abs_diff"].mean()) if len(rep) else float("nan"),
        }
        reasons = []
        if len(att) and fails / len(att) > config.max_attention_failure_share:
            reasons.append(f"failed {fails}/{len(att)} attention checks")
        if np.isfinite(row["variance"]) and row["variance"] < config.min_score_variance:
            reasons.append(f"score variance {row['variance']:.2f} < {config.min_score_variance}")
        if np.isfinite(corr) and corr < config.min_correlation:
            reasons.append(f"correlation with the others {corr:.2f} < {config.min_correlation}")
        if np.isfinite(row["repeat_abs_diff"]) and row["repeat_abs_diff"] > config.max_repeat_abs_diff:
            reasons.append(f"repeat differs by {row['repeat_abs_diff']:.1f} points")
        row["flagged"] = bool(reasons)
        row["reasons"] = "; ".join(reasons)
        rows.append(row)
    return pd.DataFrame(rows)
