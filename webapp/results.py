"""Results for researchers: a one-screen decision summary, readable tables and plots, one-time CSV download links.

The statistics come from `obt_eval.study.statistics.analyse` (crossed mixed model as the primary
test, per-utterance paired tests, Holm, clustered CIs); this module only words and formats them.
Everything here returns HTML strings (escaped) so the page never depends on Markdown table layout,
and plots are PNG data URIs: nothing lands in Gradio's file cache, where any URL holder could fetch it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from db.models import Rater, System, Trial  # noqa: E402
from db.studies import get_study, ratings_frame  # noqa: E402
from obt_eval.study.ratings_csv import write_ratings_csv  # noqa: E402
from obt_eval.study.statistics import StatsConfig, analyse  # noqa: E402
from webapp.auth import AdminSession, require_admin  # noqa: E402
from webapp.context import AppContext  # noqa: E402
from webapp.downloads import DOWNLOADS, Downloads  # noqa: E402

NO_RATINGS = ("No ratings yet: share the invitations from the Admin tab (Studies → Invite raters). "
              "This page updates by itself as ratings arrive.")


def _p(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    value = float(value)
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _num(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):+.{digits}f}" if signed else f"{float(value):.{digits}f}"


def _ci(pair: Any, digits: int = 2, signed: bool = False) -> str:
    lo, hi = (pair or [None, None])[:2]
    if _num(lo) == "–" or _num(hi) == "–":
        return "–"
    return f"{_num(lo, digits, signed)} to {_num(hi, digits, signed)}"


def _e(value: Any) -> str:
    return html.escape(str(value))


# ---- the decision summary -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lead:
    """Which test system leads, by how much, and how sure we are (all from the analysis dict)."""

    leader: str | None
    runner_up: str | None
    leader_mos: float | None
    runner_up_mos: float | None
    diff: float | None  # leader − runner-up, MOS points
    diff_ci: tuple[float, float] | None
    p: float | None  # the primary test (mixed model), Holm-corrected across pairs when there are several
    significant: bool
    verdict: str  # one sentence a researcher can act on


def lead(res: dict, tested: list[str] | None = None, alpha: float | None = None) -> Lead:
    """The leading system among `tested` (default: all rated systems) and its margin over the runner-up."""
    alpha = float(res.get("alpha") or 0.05) if alpha is None else alpha
    rows = [r for r in res.get("systems", []) if r.get("mos") is not None and (tested is None or r["system"] in tested)]
    rows.sort(key=lambda r: -float(r["mos"]))
    if not rows:
        return Lead(None, None, None, None, None, None, None, False, "No system has ratings yet.")
    top = rows[0]
    if len(rows) == 1:
        return Lead(top["system"], None, top["mos"], None, None, None, None, False,
                    f"Only {top['system']} has ratings so far: nothing to compare yet.")
    second = rows[1]
    comp = next((c for c in res.get("comparisons", []) if {c["a"], c["b"]} == {top["system"], second["system"]}), None)
    sign = 1.0 if comp is None or comp["a"] == top["system"] else -1.0
    diff = float(top["mos"]) - float(second["mos"])
    ci = None
    p = None
    if comp is not None:
        est = comp.get("mixed_estimate")
        diff = sign * float(est if est is not None else comp.get("diff") or diff)
        raw = comp.get("mixed_ci95") or comp.get("diff_ci95")
        if raw and all(v is not None and math.isfinite(float(v)) for v in raw):
            lo, hi = sorted((sign * float(raw[0]), sign * float(raw[1])))
            ci = (lo, hi)
        for key in ("p_holm", "p_mixed"):
            if comp.get(key) is not None and math.isfinite(float(comp[key])):
                p = float(comp[key])
                break
    significant = p is not None and p < alpha and diff > 0
    name, other = top["system"], second["system"]
    margin = f"{diff:+.2f} MOS points over {other}"
    ci_text = f" (95 % CI {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else ""
    if p is None:
        verdict = f"{name} leads by {margin}{ci_text}; too few ratings to test the difference yet."
    elif significant:
        verdict = (f"{name} is better than {other} by {diff:.2f} MOS points{ci_text}, p = {_p(p).replace('< ', '<')}: "
                   f"a reliable difference at α = {alpha:g}.")
    else:
        verdict = (f"{name} leads by {margin}{ci_text}, but p = {_p(p)} ≥ {alpha:g}: not yet a reliable "
                   "difference. Collect more ratings before deciding.")
    return Lead(name, other, float(top["mos"]), float(second["mos"]), diff, ci, p, significant, verdict)


def screened_out(res: dict) -> list[tuple[str, str, bool]]:
    """(rater, reasons, excluded from this analysis) for every rater flagged by screening."""
    excluded = set(res.get("excluded_raters") or [])
    out = []
    for row in res.get("screening") or []:
        if row.get("flagged") or row.get("rater") in excluded:
            reasons = row.get("reasons") or ""
            reasons = "; ".join(reasons) if isinstance(reasons, list) else str(reasons)
            out.append((str(row.get("rater")), reasons or "left out by the researcher", row.get("rater") in excluded))
    return out


def summary_html(res: dict, lead_: Lead, progress: dict, scale: tuple[int, int] = (1, 5),
                 reference: dict | None = None) -> str:
    """The one-screen answer: who leads, by how much, how sure; how much data; who was screened out and why."""
    cls = "obt-verdict obt-verdict-sure" if lead_.significant else "obt-verdict"
    parts = [f'<div class="{cls}" role="status"><p class="obt-verdict-text">{_e(lead_.verdict)}</p>']
    if lead_.leader is not None and lead_.runner_up is not None:
        parts.append('<dl class="obt-facts">')
        facts = [
            ("Leader", f"{lead_.leader} · MOS {_num(lead_.leader_mos)}"),
            ("Runner-up", f"{lead_.runner_up} · MOS {_num(lead_.runner_up_mos)}"),
            ("Difference", f"{_num(lead_.diff, signed=True)} points"
             + (f" (95 % CI {lead_.diff_ci[0]:+.2f} to {lead_.diff_ci[1]:+.2f})" if lead_.diff_ci else "")),
            ("p-value", f"{_p(lead_.p)} (mixed model, Holm)" if lead_.p is not None else "– (too few ratings)"),
        ]
        if reference:
            facts.append(("Reference", f"{reference['system']} · MOS {_num(reference.get('mos'))} (natural speech)"))
        parts += [f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts]
        parts.append("</dl>")
    parts.append("</div>")
    trials, rated = progress.get("trials", 0), progress.get("trials_rated", 0)
    parts.append(
        f'<p class="obt-counts"><strong>{res["n_raters"]}</strong> raters · <strong>{res["n_ratings"]}</strong> '
        f'ratings · <strong>{res["n_utterances"]}</strong> utterances · {rated} of {trials} trials done '
        f'({progress.get("raters", 0)} invited) · MOS scale {scale[0]}–{scale[1]}</p>')
    flagged = screened_out(res)
    if flagged:
        items = "".join(f"<li><strong>{_e(r)}</strong>: {_e(why)} — "
                        f"{'left out of these results' if out else 'still included (tick the box to leave out)'}</li>"
                        for r, why, out in flagged)
        parts.append(f'<div class="obt-screened"><p>Screened out / flagged raters:</p><ul>{items}</ul></div>')
    else:
        parts.append('<p class="obt-screened">No rater flagged by screening (attention checks, repeats, '
                     'straight-lining, agreement).</p>')
    return "".join(parts)


# ---- the tables -----------------------------------------------------------------------------------------------


def _table(caption: str, headers: list[str], rows: list[list[str]], note: str = "", numeric_from: int = 1,
           long: tuple[int, ...] = (), after: list[str] | None = None) -> str:
    """A table in its own horizontally scrolling box (a phone never scrolls the whole page sideways).

    Columns from `numeric_from` on are right-aligned figures; `long` columns (reasons) wrap; `after` lines (model
    formulas) go under the table, where they wrap at the page width instead of widening the table."""
    def cls(i: int) -> str:
        return ' class="long"' if i in long else (' class="num"' if i >= numeric_from else "")

    head = "".join(f'<th scope="col"{cls(i)}>{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    lines = [x for x in (after or []) if x]
    after_html = ('<ul class="obt-after">' + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>") if lines else ""
    note_html = f'<p class="obt-note">{_e(note)}</p>' if note else ""
    return (f'<section class="obt-table-block"><h3>{_e(caption)}</h3>{note_html}<div class="obt-table-wrap" '
            f'tabindex="0" role="region" aria-label="{_e(caption)}"><table class="obt-table"><thead><tr>{head}</tr>'
            f"</thead><tbody>{body}</tbody></table></div>{after_html}</section>")


MOS_COLUMNS = ["System", "MOS (1–5)", "95 % CI", "Ratings", "Raters", "SD"]
COMPARISON_COLUMNS = ["Comparison (A vs B)", "Difference A − B (MOS points)", "95 % CI", "p (mixed model)",
                      "p (Holm)", "p (paired\u00a0t)", "p (Wilcoxon)", "Effect size dz"]
PREFERENCE_COLUMNS = ["Pair (A vs B)", "Prefer A", "Prefer B", "No preference", "Share for A (95 % CI)"]
SCREENING_COLUMNS = ["Rater", "Flagged", "Why"]


def mos_columns(scale: tuple[int, int]) -> list[str]:
    return ["System", f"MOS ({scale[0]}–{scale[1]})", *MOS_COLUMNS[2:]]


def tables_html(res: dict, scale: tuple[int, int] = (1, 5)) -> str:
    out = [_table("Mean opinion score per system", mos_columns(scale), [
        [r["system"], _num(r.get("mos")), _ci(r.get("ci95")), str(r.get("n", "–")), str(r.get("n_raters", "–")),
         _num(r.get("sd"))] for r in res["systems"]],
        note="95 % confidence intervals are cluster-robust by rater and utterance.")]
    comps, models = [], []
    for c in res["comparisons"]:
        ci = c.get("mixed_ci95") or c.get("diff_ci95")
        est = c.get("mixed_estimate", c.get("diff"))
        comps.append([f"{c['a']} vs {c['b']}", _num(est, 2, True), _ci(ci, 2, True), _p(c.get("p_mixed")),
                      _p(c.get("p_holm")), _p(c.get("p_paired_t")), _p(c.get("p_wilcoxon")), _num(c.get("d_z"))])
        models.append(f"{c['a']} vs {c['b']} — {c['model']}" if c.get("model") else "")
    if comps:
        out.append(_table("Pairwise comparisons", COMPARISON_COLUMNS, comps,
                          note="Primary test: crossed linear mixed model, Holm-corrected across pairs. Paired t and "
                               "Wilcoxon use per-utterance mean differences. The model fitted for each pair is listed "
                               "under the table.", after=models))
    if res.get("preferences"):
        out.append(_table("Preferences", PREFERENCE_COLUMNS, [
            [f"{p.get('a')} vs {p.get('b')}", str(p.get("a_preferred", "")), str(p.get("b_preferred", "")),
             str(p.get("no_preference", "")), f"{_num(p.get('share_a'))} ({_ci(p.get('share_a_ci95'))})"]
            for p in res["preferences"]]))
    screening = res.get("screening") or []
    if screening:
        out.append(_table("Rater screening", SCREENING_COLUMNS, [
            [str(r.get("rater")), "yes" if r.get("flagged") else "no", str(r.get("reasons") or "–")]
            for r in screening], numeric_from=99, long=(2,)))
    return "".join(out)


# ---- plots ----------------------------------------------------------------------------------------------------


def png_data_uri(fig) -> str:
    """The figure as an inline PNG, cropped to its content (no label is cut off) and closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def mos_figure(res: dict, scale: tuple[int, int] = (1, 5)):
    """MOS with 95 % CIs, one horizontal row per system (long names stay readable; CIs stay inside the axes)."""
    rows = sorted(res["systems"], key=lambda r: float(r.get("mos") or 0))
    height = 1.3 + 0.5 * len(rows)
    fig, ax = plt.subplots(figsize=(5.0, height))
    for i, r in enumerate(rows):
        mos = r.get("mos")
        if mos is None:
            continue
        lo, hi = r.get("ci95") or [mos, mos]
        lo = mos if lo is None else max(scale[0] - 0.4, lo)
        hi = mos if hi is None else min(scale[1] + 0.4, hi)
        ax.errorbar([mos], [i], xerr=[[mos - lo], [hi - mos]], fmt="o", capsize=5, color="#c2410c", ms=7)
        ax.annotate(f"{mos:.2f}", (mos, i), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=10)
    ax.set_yticks(range(len(rows)), [r["system"] for r in rows])
    ax.set_xlim(scale[0] - 0.5, scale[1] + 0.5)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"MOS ({scale[0]}–{scale[1]}), 95 % CI")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def rater_figure(df: pd.DataFrame, scale: tuple[int, int] = (1, 5)):
    """Per-rater score distributions (a straight-liner or a reversed scale shows at a glance)."""
    regular = df[df["kind"].eq("regular")] if "kind" in df else df
    raters = sorted(regular["rater"].unique())
    fig, ax = plt.subplots(figsize=(5.0, 1.3 + 0.3 * max(3, len(raters))))
    ax.boxplot([regular.loc[regular["rater"] == r, "score"].astype(float) for r in raters], showmeans=True,
               orientation="horizontal")
    ax.set_yticks(range(1, len(raters) + 1), raters, fontsize=9)
    ax.set_xlim(scale[0] - 0.5, scale[1] + 0.5)
    ax.set_xlabel("Score given")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plots_html(res: dict, df: pd.DataFrame, scale: tuple[int, int]) -> str:
    mos = png_data_uri(mos_figure(res, scale))
    raters = png_data_uri(rater_figure(df, scale))
    return (f'<div class="obt-plots"><figure><img src="{mos}" alt="MOS per system with 95 % confidence '
            f'intervals"><figcaption>MOS per system (95 % CI)</figcaption></figure>'
            f'<figure><img src="{raters}" alt="Distribution of scores per rater"><figcaption>Scores per rater'
            "</figcaption></figure></div>")


# ---- downloads ------------------------------------------------------------------------------------------------


def ratings_csv_bytes(df: pd.DataFrame, protocol: dict) -> bytes:
    """The long-format export (formula-injection neutralised by the study library)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_ratings_csv(df, Path(tmp) / "ratings.csv", protocol)
        return path.read_bytes()


def _csv(rows: list[dict], drop: tuple[str, ...] = ()) -> bytes:
    frame = pd.DataFrame(rows).drop(columns=list(drop), errors="ignore")
    for col in frame.columns:  # lists (CIs, reasons) as "lo;hi" text, one value per cell
        frame[col] = frame[col].map(lambda v: ";".join(map(str, v)) if isinstance(v, list | tuple) else v)
    # a leading = + - @ would run as a formula in a spreadsheet (system names are researcher-chosen text)
    frame = frame.map(lambda v: "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v)
    return frame.to_csv(index=False).encode()


DOWNLOAD_NAMES = {"ratings": "Ratings (one row per rating)", "systems": "MOS per system",
                  "comparisons": "Pairwise comparisons", "preferences": "Preferences",
                  "screening": "Rater screening", "json": "Full analysis (JSON)"}


def download_files(name: str, res: dict, df: pd.DataFrame, protocol: dict) -> dict[str, tuple[str, bytes, str]]:
    """key -> (file name, bytes, media type): each analysis table as its own CSV, plus the ratings and the JSON."""
    files = {"ratings": (f"{name}_ratings.csv", ratings_csv_bytes(df, protocol), "text/csv"),
             "systems": (f"{name}_mos.csv", _csv(res["systems"]), "text/csv"),
             "comparisons": (f"{name}_comparisons.csv", _csv(res["comparisons"], ("variance_components",)),
                             "text/csv")}
    if res.get("preferences"):
        files["preferences"] = (f"{name}_preferences.csv", _csv(res["preferences"]), "text/csv")
    if res.get("screening"):
        files["screening"] = (f"{name}_screening.csv", _csv(res["screening"]), "text/csv")
    files["json"] = (f"{name}_results.json", json.dumps(res, indent=2).encode(), "application/json")
    return files


def mint_links(files: dict[str, tuple[str, bytes, str]], downloads: Downloads = DOWNLOADS) -> dict[str, str]:
    return {key: "download/" + downloads.add(fname, data, media) for key, (fname, data, media) in files.items()}


def links_html(links: dict[str, str]) -> str:
    if not links:
        return ""
    items = "".join(f'<li><a href="{_e(url)}" download data-kind="{_e(k)}">{_e(DOWNLOAD_NAMES.get(k, k))}</a></li>'
                    for k, url in links.items())
    return (f'<div class="obt-downloads"><p>Downloads (CSV; each link works once and is renewed here after use '
            f'or after a few minutes):</p><ul>{items}</ul></div>')


# ---- reading the study ----------------------------------------------------------------------------------------


def study_ratings(ctx: AppContext, session: AdminSession, name: str) -> tuple[pd.DataFrame, dict, dict, dict]:
    """(ratings, protocol, progress, system roles) of study `name`."""
    from db.studies import progress

    require_admin(session)
    with ctx.db.session() as s:
        study = get_study(s, name)
        roles = {n: r for n, r in s.execute(select(System.name, System.role).where(System.study_id == study.id))}
        return ratings_frame(s, study), dict(study.protocol), progress(s, study), roles


def signature(ctx: AppContext, session: AdminSession, name: str) -> tuple:
    """What changes when a rating arrives or a rater is invited: two COUNTs and a MAX (cheap, for the timer)."""
    require_admin(session)
    with ctx.db.session() as s:
        study = get_study(s, name)
        done, last = s.execute(select(func.count(Trial.id), func.max(Trial.submitted_at))
                               .where(Trial.study_id == study.id, Trial.submitted_at.is_not(None))).one()
        raters = s.scalar(select(func.count(Rater.id)).where(Rater.study_id == study.id)) or 0
        return (name, int(done or 0), str(last), int(raters), study.status)


def scale_of(protocol: dict) -> tuple[int, int]:
    keys = [int(k) for k in (protocol.get("scale_labels") or {}) if str(k).lstrip("-").isdigit()]
    return (min(keys), max(keys)) if keys else (1, 5)


def results(ctx: AppContext, session: AdminSession, name: str, exclude_flagged: bool) -> dict[str, Any]:
    """Everything the Results tab shows for study `name` (HTML pieces, download files, the analysis)."""
    require_admin(session)
    df, protocol, prog, roles = study_ratings(ctx, session, name)
    scale = scale_of(protocol)
    if df.empty:
        return {"summary": f'<p class="obt-empty">{_e(NO_RATINGS)}</p>'
                           f'<p class="obt-counts">{prog.get("raters", 0)} raters invited · 0 of '
                           f'{prog.get("trials", 0)} trials done</p>',
                "tables": "", "plots": "", "files": {}, "analysis": None}
    res = analyse(df, StatsConfig(exclude_flagged=exclude_flagged))
    tested = [n for n, r in roles.items() if r == "test"] or None
    refs = [r for r in res["systems"] if roles.get(r["system"]) == "reference"]
    the_lead = lead(res, tested)
    return {"summary": summary_html(res, the_lead, prog, scale, refs[0] if refs else None),
            "tables": tables_html(res, scale), "plots": plots_html(res, df, scale),
            "files": download_files(name, res, df, protocol), "analysis": res, "lead": the_lead}
