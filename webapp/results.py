"""Results for researchers: the study analysis as tables and plots, and one-time CSV download links.

The statistics come from `obt_eval.study.statistics.analyse` (crossed mixed model as the primary
test, per-utterance paired tests, Holm, clustered CIs); this module only formats them.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from db.studies import get_study, ratings_frame  # noqa: E402
from obt_eval.study.ratings_csv import write_ratings_csv  # noqa: E402
from obt_eval.study.statistics import StatsConfig, analyse  # noqa: E402
from webapp.auth import AdminSession, require_admin  # noqa: E402
from webapp.context import AppContext  # noqa: E402
from webapp.downloads import DOWNLOADS, Downloads  # noqa: E402


def _p(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _num(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def study_ratings(ctx: AppContext, session: AdminSession, name: str) -> tuple[pd.DataFrame, dict]:
    require_admin(session)
    with ctx.db.session() as s:
        study = get_study(s, name)
        return ratings_frame(s, study), dict(study.protocol)


def analysis_markdown(res: dict) -> str:
    """MOS, comparisons, preferences and screening as Markdown tables."""
    out = [f"**{res['n_ratings']} ratings** from **{res['n_raters']} raters** on **{res['n_utterances']} "
           f"utterances**" + (f"; excluded raters: {', '.join(res['excluded_raters'])}" if res["excluded_raters"]
                              else "")]
    out.append("### MOS per system (95% CI clustered by rater and utterance)\n\n| system | MOS | 95% CI | n | SD |\n"
               "|---|---|---|---|---|")
    for row in res["systems"]:
        ci = row.get("ci95") or [None, None]
        out.append(f"| {row['system']} | {_num(row.get('mos'))} | {_num(ci[0])} – {_num(ci[1])} | {row.get('n')} | "
                   f"{_num(row.get('sd'))} |")
    out.append("### Pairwise comparisons\n\nPrimary test: crossed linear mixed model (`p_mixed`), Holm-corrected "
               "across pairs (`p_holm`). Paired t and Wilcoxon use per-utterance mean differences.\n\n"
               "| A | B | diff (A−B) | p mixed | p Holm | p paired t | p Wilcoxon | d_z | model |\n"
               "|---|---|---|---|---|---|---|---|---|")
    for c in res["comparisons"]:
        out.append(f"| {c['a']} | {c['b']} | {_num(c.get('diff'), 3)} | {_p(c.get('p_mixed'))} | "
                   f"{_p(c.get('p_holm'))} | {_p(c.get('p_paired_t'))} | {_p(c.get('p_wilcoxon'))} | "
                   f"{_num(c.get('d_z'))} | {c.get('model', '')} |")
    if res.get("preferences"):
        out.append("### Preferences\n\n| A | B | prefer A | prefer B | none | share A (95% CI) |\n"
                   "|---|---|---|---|---|---|")
        for p in res["preferences"]:
            ci = p.get("share_a_ci95") or [None, None]
            out.append(f"| {p.get('a')} | {p.get('b')} | {p.get('a_preferred', '')} | {p.get('b_preferred', '')} | "
                       f"{p.get('no_preference', '')} | {_num(p.get('share_a'))} ({_num(ci[0])} – {_num(ci[1])}) |")
    screening = res.get("screening") or []
    if screening:
        cols = [c for c in screening[0] if c != "reasons"] + (["reasons"] if "reasons" in screening[0] else [])
        out.append("### Rater screening\n\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for row in screening:
            cells = []
            for c in cols:
                v = row.get(c)
                cells.append(_num(v) if isinstance(v, float) else ("; ".join(v) if isinstance(v, list) else str(v)))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def mos_plot(res: dict):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    rows = res["systems"]
    names = [r["system"] for r in rows]
    mos = [r.get("mos") or 0 for r in rows]
    lo = [m - (r.get("ci95") or [m, m])[0] for m, r in zip(mos, rows, strict=True)]
    hi = [(r.get("ci95") or [m, m])[1] - m for m, r in zip(mos, rows, strict=True)]
    ax.errorbar(range(len(names)), mos, yerr=[lo, hi], fmt="o", capsize=6, color="#ea580c")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylim(1, 5)
    ax.set_ylabel("MOS (95% CI)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def rater_plot(df: pd.DataFrame):
    """Per-rater score distributions (a straight-liner or a reversed scale shows at a glance)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    regular = df[df.get("kind", pd.Series("regular", index=df.index)).eq("regular")] if "kind" in df else df
    raters = sorted(regular["rater"].unique())
    ax.boxplot([regular.loc[regular["rater"] == r, "score"].astype(float) for r in raters], showmeans=True)
    ax.set_xticks(range(1, len(raters) + 1), raters, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0.5, 5.5)
    ax.set_ylabel("score")
    fig.tight_layout()
    return fig


def ratings_csv_bytes(df: pd.DataFrame, protocol: dict) -> bytes:
    """The long-format export (formula-injection neutralised by the study library)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_ratings_csv(df, Path(tmp) / "ratings.csv", protocol)
        return path.read_bytes()


def analysis_csv_bytes(res: dict) -> bytes:
    buf = io.StringIO()
    pd.DataFrame(res["comparisons"]).drop(columns=["variance_components"], errors="ignore").to_csv(buf, index=False)
    buf.write("\n")
    pd.DataFrame(res["systems"]).to_csv(buf, index=False)
    return buf.getvalue().encode()


def results(ctx: AppContext, session: AdminSession, name: str, exclude_flagged: bool,
            downloads: Downloads = DOWNLOADS) -> dict[str, Any]:
    """Everything the Results tab shows for study `name`."""
    require_admin(session)
    df, protocol = study_ratings(ctx, session, name)
    links: dict[str, str] = {}
    if df.empty:
        return {"markdown": "No ratings yet. Invite raters from the Admin tab.", "mos": None, "raters": None,
                "links": links, "analysis": None}
    res = analyse(df, StatsConfig(exclude_flagged=exclude_flagged))
    links["ratings"] = "download/" + downloads.add(f"{name}_ratings.csv", ratings_csv_bytes(df, protocol))
    links["analysis"] = "download/" + downloads.add(f"{name}_analysis.csv", analysis_csv_bytes(res))
    links["json"] = "download/" + downloads.add(f"{name}_results.json", json.dumps(res, indent=2).encode(),
                                                "application/json")
    return {"markdown": analysis_markdown(res), "mos": mos_plot(res), "raters": rater_plot(df), "links": links,
            "analysis": res}
