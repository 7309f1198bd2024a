"""The Results tab (researchers): a decision summary first, then tables, plots, CSV downloads, unit-metrics report.

It answers only a logged-in session (the login is on the Admin tab and shared through the same server-side
gr.State). It loads by itself when the tab is opened and, while it stays open, a timer re-checks a cheap
signature of the study (counts of ratings and raters) and recomputes the analysis only when that changed.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from sqlalchemy import select

from db.models import Study
from obt_eval.errors import ObtEvalError
from webapp import results as RS
from webapp.auth import AdminSession, NotAuthorised, require_admin
from webapp.context import AppContext
from webapp.downloads import DOWNLOADS

PRIVATE = {"api_visibility": "private"}
TICK_SECONDS = 5.0
MIN_RECOMPUTE_SECONDS = 15.0  # ratings arriving every second must not keep the analysis running all the time
LINK_MARGIN_SECONDS = 120.0  # renew download links this long before they expire
LOGIN_FIRST = ("You are not logged in as a researcher. Log in on the <strong>Admin</strong> tab; this tab then "
               "shows the results by itself.")


@dataclass
class ResultsView:
    """What this browser's Results tab shows now (server side), so a timer tick can send only what changed."""

    names: list[str] = field(default_factory=list)
    study: str | None = None
    exclude: bool = False
    signature: tuple | None = None
    computed_at: float = 0.0
    files: dict = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    logged_in: bool = False


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
    return "\n\n---\n\n".join(parts) if parts else ("No encoder comparison yet: run a `search` job and then "
                                                   "`compare` from the Admin tab.")


def _links_valid(links: dict[str, str]) -> bool:
    return bool(links) and all(DOWNLOADS.waiting(url.rsplit("/", 1)[-1], LINK_MARGIN_SECONDS) for url in links.values())


def _study_names(ctx: AppContext, session: AdminSession) -> list[str]:
    require_admin(session)
    with ctx.db.session() as s:
        return list(s.scalars(select(Study.name).order_by(Study.created_at)))


def build_results_tab(ctx: AppContext, admin_state: gr.State) -> dict:
    view_state = gr.State(ResultsView())
    gr.Markdown("## Results\nWhich system leads, by how much and how sure — updated as ratings arrive.",
                elem_classes=["obt-intro"])
    # Empty until the tab is opened: a logged-in researcher must never see "log in first", even for a moment.
    status = gr.HTML("", elem_id="obt-results-status")
    with gr.Column(visible=False, elem_id="obt-results-body") as body:  # shown once a researcher is logged in
        study = gr.Dropdown(choices=[], label="Study", elem_id="obt-results-study")
        exclude = gr.Checkbox(label="Leave out raters flagged by screening", value=False,
                              elem_id="obt-results-exclude")
        summary = gr.HTML("", elem_id="obt-results-summary")
        links = gr.HTML("", elem_id="obt-results-links")
        tables = gr.HTML("", elem_id="obt-results-tables")
        plots = gr.HTML("", elem_id="obt-results-plots")
        with gr.Accordion("Unit metrics: encoder comparison report", open=False):
            report_btn = gr.Button("Load report", size="sm")
            report = gr.Markdown()
    timer = gr.Timer(TICK_SECONDS, active=False)
    outputs = [status, body, study, summary, links, tables, plots, timer]

    def logged_out(view: ResultsView) -> dict:
        view.logged_in, view.signature, view.links, view.files = False, None, {}, {}
        return {status: f'<p class="obt-hint">{LOGIN_FIRST}</p>', body: gr.Column(visible=False), summary: "",
                links: "", tables: "", plots: "",
                study: gr.Dropdown(choices=[], value=None), timer: gr.Timer(active=False)}

    def refresh(session: AdminSession, view: ResultsView, name: str | None, excl: bool, force: bool) -> dict:
        """The tab's content; on a tick only what changed (unchanged outputs are skipped, not re-sent)."""
        if not isinstance(view, ResultsView):  # the state lives on the server; a scripted client cannot set it
            view = ResultsView()
        try:
            require_admin(session)
        except NotAuthorised:
            return logged_out(view) if view.logged_in or force else {timer: gr.Timer(active=False)}
        out: dict = {}
        if not view.logged_in:
            out[status] = ""
            out[body] = gr.Column(visible=True)
            view.logged_in = True
        names = _study_names(ctx, session)
        chosen = name if name in names else (view.study if view.study in names else (names[-1] if names else None))
        if names != view.names or chosen != name:
            view.names = names
            out[study] = gr.Dropdown(choices=names, value=chosen)
        if chosen is None:
            view.study, view.signature = None, None
            return out | {summary: '<p class="obt-empty">No study yet: create one on the Admin tab (Studies → New '
                                   'study), or run the one-click demo there.</p>',
                          links: "", tables: "", plots: "", timer: gr.Timer(active=True)}
        try:
            sig = RS.signature(ctx, session, chosen)
            changed = force or sig != view.signature or chosen != view.study or bool(excl) != view.exclude
            due = force or time.monotonic() - view.computed_at >= MIN_RECOMPUTE_SECONDS
            if changed and (due or chosen != view.study or bool(excl) != view.exclude):
                res = RS.results(ctx, session, chosen, bool(excl))
                view.study, view.exclude, view.signature = chosen, bool(excl), sig
                view.computed_at = time.monotonic()
                view.files = res["files"]
                view.links = RS.mint_links(view.files) if view.files else {}
                stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC")
                out |= {summary: res["summary"] + f'<p class="obt-updated">Updated {stamp}; refreshes by itself '
                                                  "while this tab is open.</p>",
                        tables: res["tables"], plots: res["plots"], links: RS.links_html(view.links), status: ""}
            elif view.files and not _links_valid(view.links):
                view.links = RS.mint_links(view.files)
                out[links] = RS.links_html(view.links)
        except NotAuthorised:
            return logged_out(view)
        except ObtEvalError as exc:
            out[status] = f'<p class="obt-error">⚠ {html.escape(str(exc).replace(chr(10) + "  what to do:", " —"))}</p>'
        except Exception as exc:  # noqa: BLE001 — a failing analysis is reported, the page stays usable
            out[status] = f'<p class="obt-error">⚠ the analysis failed: {html.escape(type(exc).__name__)}: ' \
                          f"{html.escape(str(exc))}</p>"
        out[timer] = gr.Timer(active=True)
        return out

    def on_open(session: AdminSession, view: ResultsView, name: str | None, excl: bool) -> dict:
        return refresh(session, view, name, excl, force=view.signature is None)

    def on_tick(session: AdminSession, view: ResultsView, name: str | None, excl: bool) -> dict:
        return refresh(session, view, name, excl, force=False)

    def on_choose(session: AdminSession, view: ResultsView, name: str | None, excl: bool) -> dict:
        return refresh(session, view, name, excl, force=True)

    def on_report(session: AdminSession) -> dict:
        try:
            return {report: unit_report_markdown(ctx, session)}
        except NotAuthorised as exc:
            return {report: f"⚠ {str(exc).splitlines()[0]}"}

    inputs = [admin_state, view_state, study, exclude]
    quiet = {"show_progress": "hidden", **PRIVATE}
    timer.tick(on_tick, inputs, outputs, **quiet)
    study.input(on_choose, inputs, outputs, **quiet)
    exclude.input(on_choose, inputs, outputs, **quiet)
    report_btn.click(on_report, [admin_state], [report], **PRIVATE)
    return {"open": on_open, "inputs": inputs, "outputs": outputs, "timer": timer, "status": status}
