"""The experiment part of the Admin tab: the form, the experiment list, the live stage view, the report, the study.

Like the rest of the tab it starts empty: the choices (corpora, encoders) and every table arrive only in
answers to a logged-in session. Each callback checks the login (`webapp.experiments` does, through
`require_admin`) and turns a user error into a message beside the button that caused it, never a traceback.
Messages are rewritten from the experiment's state on every refresh, so none outlives what it describes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

from obt_eval.errors import ObtEvalError
from webapp import experiments as E
from webapp.auth import AdminSession, NotAuthorised, require_admin
from webapp.context import AppContext
from webapp.report_view import report_view

PRIVATE = {"api_visibility": "private"}
log = logging.getLogger("obt-eval.app")


def problem(exc: Exception) -> str:
    """A user error as one readable line: the message, then what to do."""
    text = str(exc)
    message, _, hint = text.partition("\n  what to do:")
    return f"⚠ {message.strip()}" + (f" — {hint.strip()}" if hint.strip() else "")


def guarded(*message_outputs: gr.components.Component) -> Callable:
    """Turn user errors (not logged in, bad input) into a message in `message_outputs`; never into data."""

    def wrap(fn: Callable[..., dict]) -> Callable[..., dict]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> dict:
            try:
                return fn(*args, **kwargs)
            except (NotAuthorised, ObtEvalError) as exc:
                return {out: problem(exc) for out in message_outputs}
            except Exception as exc:  # noqa: BLE001 — a bug must not leave a traceback (or nothing) on the page
                log.exception("admin callback %s failed", fn.__name__)
                return {out: f"⚠ this failed unexpectedly ({type(exc).__name__}); the app's log has the details"
                        for out in message_outputs}

        return run

    return wrap


@dataclass
class ExperimentPanel:
    """The panel's components and what the tab's login, logout and timer call to fill them."""

    login_outputs: list[Any] = field(default_factory=list)
    tick_outputs: list[Any] = field(default_factory=list)
    tick_inputs: list[Any] = field(default_factory=list)
    logout_outputs: list[Any] = field(default_factory=list)
    on_login: Callable[[AdminSession], dict] | None = None
    on_tick: Callable[..., dict] | None = None
    on_logout: Callable[[], dict] | None = None


def build_experiment_panel(ctx: AppContext, admin_state: gr.State, timer: gr.Timer) -> ExperimentPanel:
    started = gr.State(None)  # the experiment this page started (its message follows its state)
    listed = gr.State([])  # the experiment names the dropdown offers (the timer updates it when they change)
    with gr.Accordion("New experiment", open=True, elem_id="obt-exp-form", elem_classes=["obt-section"]):
        gr.Markdown("Compare encoders on one corpus with identical settings: layer and k search, units, one "
                    "vocoder each, synthesis of the same held-out utterances, machine metrics, a listening study "
                    "and a decision report.", elem_classes=["obt-muted"])
        with gr.Row(elem_classes=["obt-wrap"]):
            preset = gr.Dropdown(choices=E.preset_choices(), value="", label="Preset (fills the form)",
                                 elem_id="obt-exp-preset", scale=2, min_width=220)
            name = gr.Textbox(label="Experiment name", max_lines=1, max_length=E.MAX_TEXT, elem_id="obt-exp-name",
                              placeholder="e.g. satere-first", scale=1, min_width=180)
        corpus = gr.Dropdown(choices=[], label="Corpus", elem_id="obt-exp-corpus",
                             info="Ingested corpora of the workspace (add one under Corpora below)")
        encoders = gr.CheckboxGroup(choices=[], label="Encoders to compare (name · size · licence)",
                                    elem_id="obt-exp-encoders", elem_classes=["obt-encoders"])
        other_encoders = gr.Textbox(label="Other encoders (optional)", max_lines=1, max_length=4 * E.MAX_TEXT,
                                    elem_id="obt-exp-other-encoders",
                                    placeholder="e.g. utter-project/mHuBERT-147, /data/checkpoints/my-hubert",
                                    info="Hugging Face ids or checkpoint folders on the server, comma-separated")
        with gr.Row(elem_classes=["obt-wrap"]):
            layers = gr.Textbox(value="default", label="Layers", max_lines=1, max_length=E.MAX_TEXT,
                                elem_id="obt-exp-layers", min_width=160,
                                info="default (each encoder's registered layer), auto (search all) or 12-18")
            ks = gr.Textbox(value="100", label="k values (codebook sizes)", max_lines=1, max_length=E.MAX_TEXT,
                            elem_id="obt-exp-ks", min_width=160, info="e.g. 100 or 100, 150, 200")
        with gr.Row(elem_classes=["obt-wrap"]):
            vocoder = gr.Dropdown(choices=["reference", "small", "tiny"], value="reference", label="Vocoder preset",
                                  elem_id="obt-exp-vocoder", min_width=140,
                                  info="reference: the published HiFi-GAN recipe; tiny: a quick look")
            steps = gr.Number(value=None, precision=0, minimum=1, label="Vocoder training steps",
                              elem_id="obt-exp-steps", min_width=140, info="empty: the preset's")
            utterances = gr.Number(value=50, precision=0, minimum=2, maximum=300, label="Study utterances",
                                   elem_id="obt-exp-utts", min_width=140, info="held out, heard in the study")
        with gr.Row(elem_classes=["obt-wrap", "obt-run-row"]):
            run_btn = gr.Button("Run", variant="primary", elem_id="obt-exp-run", scale=0, min_width=120, size="md")
            run_msg = gr.Markdown(elem_id="obt-exp-msg", elem_classes=["obt-msg"])

    with gr.Accordion("Experiments", open=True, elem_id="obt-exp-view", elem_classes=["obt-section"]):
        exp_list = gr.Dataframe(headers=E.EXPERIMENT_COLUMNS, interactive=False, wrap=False, elem_id="obt-exp-list",
                                label="Experiments (click a row to follow it)", elem_classes=["obt-table-box"],
                                max_height=260)
        with gr.Row(elem_classes=["obt-wrap"]):
            pick = gr.Dropdown(choices=[], label="Experiment", elem_id="obt-exp-pick", scale=2, min_width=180)
            refresh_btn = gr.Button("Refresh", elem_id="obt-exp-refresh", scale=0, min_width=90, size="md")
            cancel_btn = gr.Button("Cancel", variant="stop", interactive=False, elem_id="obt-exp-cancel", scale=0,
                                   min_width=100, size="md")
            resume_btn = gr.Button("Resume", interactive=False, elem_id="obt-exp-resume", scale=0, min_width=100,
                                   size="md")
        action_msg = gr.Markdown(elem_id="obt-exp-action-msg", elem_classes=["obt-msg"])
        summary = gr.Markdown(elem_id="obt-exp-summary")
        stages = gr.HTML(E.stages_html(None), elem_id="obt-stages")
        log = gr.HTML("", elem_id="obt-exp-log")

    with gr.Accordion("Decision report", open=True, elem_id="obt-report-box", elem_classes=["obt-section"]):
        with gr.Row(elem_classes=["obt-wrap"]):
            report_btn = gr.Button("Show the decision report", interactive=False, elem_id="obt-report-btn", scale=0,
                                   min_width=220, size="md")
            report_msg = gr.Markdown(elem_id="obt-report-msg", elem_classes=["obt-msg"])
        downloads = gr.HTML("", elem_id="obt-report-downloads")
        report = gr.HTML("", elem_id="obt-report")

    with gr.Accordion("Listening study", open=True, elem_id="obt-study-box", elem_classes=["obt-section"]):
        with gr.Row(elem_classes=["obt-wrap", "obt-run-row"]):
            raters = gr.Number(value=3, precision=0, minimum=1, maximum=500, label="Raters to invite",
                               elem_id="obt-study-raters", scale=0, min_width=140)
            study_btn = gr.Button("Create the listening study from this experiment", interactive=False,
                                  elem_id="obt-study-btn", scale=0, min_width=420, size="md")
        grow = gr.Checkbox(value=True, label="Add blocks if needed (every invited rater gets trials)",
                           elem_id="obt-study-grow")
        study_msg = gr.Markdown(elem_id="obt-study-msg", elem_classes=["obt-msg"])
        invitations = gr.HTML("", elem_id="obt-invitations", js_on_load=E.COPY_JS)

    form = [preset, name, corpus, encoders, other_encoders, layers, ks, vocoder, steps, utterances]

    def view(session: AdminSession, selected: str | None, advance: bool = False) -> dict:
        """Stage table, log, summary and buttons of the selected experiment (or of none)."""
        if not selected:
            return {summary: "", stages: E.stages_html(None), log: "",
                    cancel_btn: gr.Button(interactive=False), resume_btn: gr.Button(interactive=False),
                    report_btn: gr.Button(interactive=False), study_btn: gr.Button(interactive=False)}
        state = E.status(ctx, session, selected, advance=advance)
        can = E.actions(state)
        title, text = E.job_log(ctx, E.log_job(state))
        return {summary: E.summary_line(state), stages: E.stages_html(state), log: E.log_html(title, text),
                cancel_btn: gr.Button(interactive=can.cancel), resume_btn: gr.Button(interactive=can.resume),
                report_btn: gr.Button(interactive=can.report), study_btn: gr.Button(interactive=can.study)}

    def started_message(session: AdminSession, name_started: str | None) -> dict:
        if not name_started:
            return {}
        try:
            state = E.status(ctx, session, name_started)
        except ObtEvalError:
            return {run_msg: ""}
        st = state["state"]
        text = {"running": f"▶ **{name_started}** is running: {state['done']} of {state['total']} stages done. "
                           "Follow it below.",
                "done": f"✓ **{name_started}** finished. Its decision report is below.",
                "failed": f"✗ **{name_started}** stopped: a stage failed (see below).",
                "cancelled": f"■ **{name_started}** was cancelled."}.get(st, f"{name_started}: {st}")
        return {run_msg: text}

    def listing(session: AdminSession, selected: str | None) -> tuple[dict, str | None]:
        """The experiment table and dropdown; keeps the selection, else follows the newest. Returns the updates
        and the experiment now selected."""
        names = E.experiment_names(ctx, session)
        value = selected if selected in names else (names[0] if names else None)
        return {exp_list: E.experiments_table(ctx, session), pick: gr.Dropdown(choices=names, value=value),
                listed: names}, value

    def on_login(session: AdminSession) -> dict:
        require_admin(session)
        names = E.experiment_names(ctx, session)
        first = names[0] if names else None
        rows = E.corpora(ctx)
        values = E.form_values("demo" if not rows and not names else None)
        if not values["corpus"] and rows:
            values["corpus"] = rows[0]["name"]
        return {preset: values["preset"], name: values["name"],
                corpus: gr.Dropdown(choices=E.corpus_choices(ctx, session, values["preset"] or None),
                                    value=values["corpus"]),
                encoders: gr.CheckboxGroup(choices=E.encoder_choices(), value=values["encoders"]),
                other_encoders: values["other_encoders"], layers: values["layers"], ks: values["ks"],
                vocoder: values["vocoder_preset"],
                steps: values["vocoder_steps"], utterances: values["study_utterances"], run_msg: "",
                exp_list: E.experiments_table(ctx, session), pick: gr.Dropdown(choices=names, value=first),
                listed: names, **view(session, first)}

    @guarded(run_msg)
    def on_preset(session: AdminSession, chosen: str) -> dict:
        require_admin(session)
        chosen = E.bounded_text(chosen, "preset")
        values = E.form_values(chosen or None)
        return {name: values["name"],
                corpus: gr.Dropdown(choices=E.corpus_choices(ctx, session, chosen or None), value=values["corpus"]),
                encoders: values["encoders"], other_encoders: values["other_encoders"], layers: values["layers"],
                ks: values["ks"], vocoder: values["vocoder_preset"], steps: values["vocoder_steps"],
                utterances: values["study_utterances"], run_msg: "", started: None}

    @guarded(run_msg)
    def on_run(session: AdminSession, *values: Any) -> dict:
        form_data = dict(zip(E.FORM_FIELDS, values, strict=True))
        started_name = E.run(ctx, session, form_data)
        return {started: started_name, timer: gr.Timer(active=True), report: "", downloads: "", invitations: "",
                study_msg: "", action_msg: "", **listing(session, started_name)[0],
                **started_message(session, started_name), **view(session, started_name)}

    @guarded(action_msg)
    def on_pick(session: AdminSession, selected: str | None) -> dict:
        require_admin(session)
        return {action_msg: "", report: "", downloads: "", invitations: "", study_msg: "",
                **view(session, selected or None)}

    @guarded(action_msg)
    def on_row(session: AdminSession, evt: gr.SelectData) -> dict:
        require_admin(session)
        row = getattr(evt, "row_value", None) or []
        if not row:
            return {}
        chosen = E.known(ctx, str(row[0]))
        return {pick: gr.Dropdown(choices=E.experiment_names(ctx, session), value=chosen)}

    @guarded(action_msg)
    def on_refresh(session: AdminSession, selected: str | None, chosen_preset: str | None,
                   chosen_corpus: str | None) -> dict:
        """The list, the selected experiment and the corpora now, and the timer on again if anything runs
        (e.g. started from another page or the command line while this page was idle)."""
        require_admin(session)
        updates, now = listing(session, selected)
        choices = E.corpus_choices(ctx, session, E.bounded_text(chosen_preset, "preset") or None)
        keep = chosen_corpus if chosen_corpus in {value for _, value in choices} else None
        return {action_msg: "", timer: gr.Timer(active=E.any_running(ctx)), corpus: gr.Dropdown(choices=choices,
                                                                                                 value=keep),
                **updates, **view(session, now)}

    @guarded(action_msg)
    def on_cancel(session: AdminSession, selected: str | None) -> dict:
        state = E.cancel(ctx, session, selected)
        return {action_msg: f"■ {state['name']} cancelled: its running stages were stopped. Resume goes on.",
                **listing(session, selected)[0], **view(session, selected)}

    @guarded(action_msg)
    def on_resume(session: AdminSession, selected: str | None) -> dict:
        state = E.resume(ctx, session, selected)
        return {action_msg: f"▶ {state['name']} resumed: finished stages are kept.", timer: gr.Timer(active=True),
                **listing(session, selected)[0], **view(session, selected)}

    @guarded(report_msg)
    def on_report(session: AdminSession, selected: str | None) -> dict:
        shown = report_view(ctx, session, selected)
        return {report: shown["html"], downloads: shown["downloads"], report_msg: ""}

    @guarded(study_msg)
    def on_study(session: AdminSession, selected: str | None, count: float | None, grow_ok: bool) -> dict:
        made = E.create_study(ctx, session, selected, count, grow_ok)
        return {invitations: E.invitations_html(made["study"], made["invites"]), study_msg: E.capacity_note(made)}

    def on_tick(session: AdminSession, selected: str | None, name_started: str | None, shown: list | None) -> dict:
        if not session.ok:
            return {}
        try:
            out = {exp_list: E.experiments_table(ctx, session), **view(session, selected, advance=True),
                   **started_message(session, name_started)}
            names = E.experiment_names(ctx, session)
            if names != (shown or []):  # one started elsewhere (another page, the CLI): offer it, follow it
                value = selected if selected in names else (names[0] if names else None)
                out |= {pick: gr.Dropdown(choices=names, value=value), listed: names}
            return out
        except ObtEvalError:
            return {}

    def on_logout() -> dict:
        """Nothing a researcher saw stays on the page after logging out."""
        return {exp_list: pd.DataFrame(columns=E.EXPERIMENT_COLUMNS), pick: gr.Dropdown(choices=[], value=None),
                corpus: gr.Dropdown(choices=[], value=None), encoders: gr.CheckboxGroup(choices=[], value=[]),
                other_encoders: "", summary: "", stages: E.stages_html(None), log: "", report: "", downloads: "",
                invitations: "", run_msg: "", action_msg: "", study_msg: "", report_msg: "", started: None, listed: []}

    view_outputs = [summary, stages, log, cancel_btn, resume_btn, report_btn, study_btn]
    preset.input(on_preset, [admin_state, preset],
                 [name, corpus, encoders, other_encoders, layers, ks, vocoder, steps, utterances, run_msg, started],
                 **PRIVATE)
    run_btn.click(on_run, [admin_state, *form],
                  [started, timer, report, downloads, invitations, study_msg, action_msg, exp_list, pick, listed,
                   run_msg, *view_outputs], **PRIVATE)
    pick.change(on_pick, [admin_state, pick], [action_msg, report, downloads, invitations, study_msg, *view_outputs],
                show_progress="hidden", **PRIVATE)
    exp_list.select(on_row, [admin_state], [pick, action_msg], show_progress="hidden", **PRIVATE)
    refresh_btn.click(on_refresh, [admin_state, pick, preset, corpus],
                      [action_msg, timer, corpus, exp_list, pick, listed, *view_outputs], **PRIVATE)
    cancel_btn.click(on_cancel, [admin_state, pick], [action_msg, exp_list, pick, listed, *view_outputs], **PRIVATE)
    resume_btn.click(on_resume, [admin_state, pick], [action_msg, timer, exp_list, pick, listed, *view_outputs],
                     **PRIVATE)
    report_btn.click(on_report, [admin_state, pick], [report, downloads, report_msg], **PRIVATE)
    study_btn.click(on_study, [admin_state, pick, raters, grow], [invitations, study_msg], **PRIVATE)

    return ExperimentPanel(
        login_outputs=[*form, run_msg, exp_list, pick, listed, *view_outputs],
        tick_outputs=[exp_list, run_msg, pick, listed, *view_outputs],
        tick_inputs=[pick, started, listed],
        logout_outputs=[exp_list, pick, corpus, encoders, other_encoders, summary, stages, log, report, downloads,
                        invitations, run_msg, action_msg, study_msg, report_msg, started, listed],
        on_login=on_login, on_tick=on_tick, on_logout=on_logout,
    )
