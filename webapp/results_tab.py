"""The Results tab (researchers): per-study statistics, plots, CSV downloads and the unit-metrics report.

Like the Admin tab it starts empty and answers only a logged-in session (the login is on the Admin tab
and shared through the same server-side gr.State).
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from obt_eval.errors import ObtEvalError
from webapp import admin as A
from webapp import results as RS
from webapp.auth import AdminSession, NotAuthorised, require_admin
from webapp.context import AppContext

PRIVATE = {"api_visibility": "private"}


def _links_html(links: dict[str, str]) -> str:
    if not links:
        return ""
    names = {"ratings": "Ratings (long CSV, one row per rating)", "analysis": "Analysis (CSV)",
             "json": "Full analysis (JSON)"}
    items = "".join(f'<li><a href="{html.escape(url)}" download>{names.get(k, k)}</a></li>' for k, url in links.items())
    return f"<p>Downloads (one-time links, valid 10 minutes):</p><ul>{items}</ul>"


def unit_report_markdown(ctx: AppContext, session: AdminSession) -> str:
    """The encoder comparison report(s) written by the metrics/compare jobs, if any."""
    require_admin(session)
    root = Path(ctx.workspace.root) / "reports" / "compare"
    parts = []
    for table in sorted(root.glob("*/table.md")) if root.exists() else []:
        text = table.read_text(encoding="utf-8")
        # images are files on the server, not URLs the browser can fetch: list them instead
        text = "\n".join(line for line in text.splitlines() if not line.startswith("!["))
        parts.append(text + f"\n\n_Plots: `{table.parent}`_")
    return "\n\n---\n\n".join(parts) if parts else "No encoder comparison yet: run a `search` job and then `compare`."


def build_results_tab(ctx: AppContext, admin_state: gr.State) -> dict:
    gr.Markdown("## Results\nLog in on the Admin tab first.")
    with gr.Row():
        study = gr.Dropdown(choices=[], label="Study", elem_id="obt-results-study", scale=2)
        refresh_btn = gr.Button("Refresh list", scale=0)
    exclude = gr.Checkbox(label="Leave out raters flagged by screening", value=False)
    show_btn = gr.Button("Show results", variant="primary", elem_id="obt-results-show")
    status = gr.Markdown(elem_id="obt-results-status")
    links = gr.HTML(elem_id="obt-results-links")
    with gr.Row():
        mos_plot = gr.Plot(label="MOS with 95% CI")
        rater_plot = gr.Plot(label="Scores per rater")
    tables = gr.Markdown(elem_id="obt-results-tables")
    with gr.Accordion("Unit metrics: encoder comparison report", open=False):
        report_btn = gr.Button("Load report")
        report = gr.Markdown()

    def on_refresh(session: AdminSession, current: str | None) -> dict:
        try:
            names = A.study_names(ctx, session)
        except NotAuthorised as exc:
            return {status: f"⚠ {str(exc).splitlines()[0]} — log in on the Admin tab"}
        value = current if current in names else (names[-1] if names else None)
        return {study: gr.Dropdown(choices=names, value=value), status: "" if names else "No studies yet."}

    def on_show(session: AdminSession, name: str | None, excl: bool) -> dict:
        try:
            require_admin(session)
            if not name:
                return {status: "Choose a study."}
            out = RS.results(ctx, session, name, bool(excl))
        except ObtEvalError as exc:
            return {status: f"⚠ {str(exc).replace(chr(10) + '  what to do:', ' —')}"}
        except Exception as exc:  # noqa: BLE001 — a failing analysis is reported, the page stays usable
            return {status: f"⚠ the analysis failed: {type(exc).__name__}: {exc}"}
        return {status: "", tables: out["markdown"], mos_plot: out["mos"], rater_plot: out["raters"],
                links: _links_html(out["links"])}

    def on_report(session: AdminSession) -> dict:
        try:
            return {report: unit_report_markdown(ctx, session)}
        except NotAuthorised as exc:
            return {report: f"⚠ {str(exc).splitlines()[0]}"}

    refresh_btn.click(on_refresh, [admin_state, study], [study, status], **PRIVATE)
    show_btn.click(on_show, [admin_state, study, exclude], [status, tables, mos_plot, rater_plot, links], **PRIVATE)
    report_btn.click(on_report, [admin_state], [report], **PRIVATE)
    return {"study": study, "refresh": on_refresh, "status": status}
