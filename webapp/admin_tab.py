"""The Admin tab (researchers): log in, run experiments and follow them, register corpora, manage studies.

The experiment is the unit of work (`webapp.experiment_panel`: form, stage view, report, study); the raw
job console stays, folded away. Everything on this tab starts empty: the choices, tables and job details
arrive only in answers to a logged-in session, so the page every rater downloads (Gradio's config) holds
no corpus, encoder or system name. One timer refreshes what runs, and stops when nothing does.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from obt_eval.errors import BadInputError
from webapp import admin as A
from webapp import experiments as E
from webapp.auth import (
    AdminSession,
    check_password,
    client_address,
    cookie_key,
    login_oauth,
    require_admin,
    researcher_ticket,
)
from webapp.context import AppContext
from webapp.experiment_panel import build_experiment_panel, guarded

PRIVATE = {"api_visibility": "private"}
TICK_SECONDS = 2.0
# After a login the page trades its one-time ticket for the HttpOnly researcher cookie that uploads need
# (a Gradio callback cannot set a cookie); logging out clears it.
EXCHANGE_JS = """(ticket) => { if (ticket) fetch('auth/researcher', {method: 'POST', credentials: 'same-origin',
  headers: {'Content-Type': 'application/json'}, body: JSON.stringify({ticket: ticket})}); return []; }"""
LOGOUT_JS = "() => { fetch('auth/logout', {method: 'POST', credentials: 'same-origin'}); return []; }"


def build_admin_tab(ctx: AppContext, admin_state: gr.State) -> dict:
    with gr.Column(elem_id="obt-login") as login_box:
        gr.Markdown("## Researchers\nLog in to run experiments, create studies and invite raters.")
        password = gr.Textbox(label="Password", type="password", max_lines=1, max_length=1024, elem_id="obt-password")
        login_btn = gr.Button("Log in", variant="primary", elem_id="obt-login-btn")
        if ctx.config.oauth:
            gr.LoginButton()
            oauth_btn = gr.Button("Continue with my Hugging Face account")
        else:
            oauth_btn = None
    status = gr.Markdown(elem_id="obt-admin-status", elem_classes=["obt-msg"])
    ticket = gr.Textbox(visible=False, elem_id="obt-upload-ticket")
    timer = gr.Timer(TICK_SECONDS, active=False)
    selected_job = gr.State(None)
    with gr.Column(visible=False, elem_id="obt-admin-panel", elem_classes=["obt-admin"]) as panel:
        with gr.Row(elem_classes=["obt-wrap", "obt-who"]):
            who = gr.Markdown()
            logout_btn = gr.Button("Log out", size="sm", scale=0, min_width=90)
        experiments = build_experiment_panel(ctx, admin_state, timer)

        with gr.Accordion("Corpora", open=False, elem_id="obt-corpora-box", elem_classes=["obt-section"]):
            corpora_df = gr.Dataframe(interactive=False, label="Corpora in the workspace", elem_id="obt-corpora",
                                      elem_classes=["obt-table-box"])
            with gr.Group(elem_id="obt-segment-box"):
                segment = gr.Checkbox(label="Cut long recordings (whole chapters) at pauses into segments "
                                            "(for both ways of adding recordings below)",
                                      value=False, elem_id="obt-segment")
                with gr.Row(elem_classes=["obt-wrap"]):
                    seg_min = gr.Number(value=2.0, minimum=0.1, maximum=3600, label="Shortest segment (s)",
                                        min_width=140, elem_id="obt-segment-min")
                    seg_max = gr.Number(value=15.0, minimum=0.1, maximum=3600, label="Longest segment (s)",
                                        min_width=140, elem_id="obt-segment-max")
                    seg_vad = gr.Dropdown(choices=[("Silero VAD", "silero"), ("energy", "energy")], value="silero",
                                          label="Pause detector", min_width=140, elem_id="obt-segment-vad")
            with gr.Tab("Upload recordings"):
                up_files = gr.File(file_count="multiple", label="Audio files, metadata.csv, or a zip archive",
                                   elem_id="obt-upload-files")
                up_name = gr.Textbox(label="Corpus name", max_lines=1, max_length=120, elem_id="obt-upload-name")
                up_btn = gr.Button("Upload and ingest", elem_id="obt-upload-btn")
            with gr.Tab("A folder on the server"):
                roots_note = gr.Markdown(elem_classes=["obt-muted"])
                reg_folder = gr.Textbox(label="Folder of recordings", max_lines=1, max_length=A.MAX_FIELD_CHARS,
                                        elem_id="obt-reg-folder")
                reg_name = gr.Textbox(label="Corpus name", max_lines=1, max_length=120, elem_id="obt-reg-name")
                reg_meta = gr.Textbox(label="metadata.csv (optional)", max_lines=1, max_length=A.MAX_FIELD_CHARS)
                reg_align = gr.Textbox(label="TextGrid folder or item file (optional)", max_lines=1,
                                       max_length=A.MAX_FIELD_CHARS)
                reg_btn = gr.Button("Ingest folder", elem_id="obt-reg-btn")
            ingest_msg = gr.Markdown(elem_id="obt-ingest-msg", elem_classes=["obt-msg"])

        with gr.Accordion("Studies", open=False, elem_id="obt-studies-box", elem_classes=["obt-section"]):
            studies_df = gr.Dataframe(interactive=False, label="Studies", elem_id="obt-studies",
                                      elem_classes=["obt-table-box"])
            with gr.Row(elem_classes=["obt-wrap"]):
                study = gr.Dropdown(choices=[], label="Study", elem_id="obt-study", scale=2, min_width=160)
                studies_btn = gr.Button("Refresh", elem_id="obt-studies-refresh", scale=0, min_width=90)
                open_btn = gr.Button("Open", scale=0, min_width=80)
                close_btn = gr.Button("Close", scale=0, min_width=80)
            with gr.Row(elem_classes=["obt-wrap", "obt-run-row"]):
                invite_count = gr.Number(value=5, precision=0, minimum=1, maximum=500, label="New raters", scale=0,
                                         min_width=120)
                invite_btn = gr.Button("Create invitations", elem_id="obt-invite-btn", scale=0, min_width=160)
            studies_msg = gr.Markdown(elem_id="obt-studies-msg", elem_classes=["obt-msg"])
            invites_df = gr.Dataframe(interactive=False, wrap=True, label="Invitations", elem_id="obt-invites",
                                      elem_classes=["obt-table-box"])
            gr.Markdown("**New study** from synthesized stimuli (`name=folder`, one per system; folders may be names "
                        "under `workspace/stimuli/`).")
            new_name = gr.Textbox(label="Study name", max_lines=1, max_length=120)
            new_systems = gr.Textbox(label="Systems", lines=2, max_length=A.MAX_FIELD_CHARS,
                                     placeholder="systemA=stimuli_folder_a, systemB=...")
            new_reference = gr.Textbox(label="Natural reference (optional)", max_lines=1, max_length=A.MAX_FIELD_CHARS,
                                       placeholder="natural=folder")
            with gr.Row(elem_classes=["obt-wrap"]):
                new_target = gr.Number(value=10, precision=0, label="Ratings per stimulus", min_width=140)
                new_block = gr.Number(value=10, precision=0, label="Trials per rater block", min_width=140)
            new_btn = gr.Button("Create study (as a job)")

        with gr.Accordion("Advanced: job console", open=False, elem_id="obt-console",
                          elem_classes=["obt-section"]):
            gr.Markdown("Single steps as jobs, for what the experiment form does not cover.",
                        elem_classes=["obt-muted"])
            with gr.Row(elem_classes=["obt-wrap", "obt-run-row"]):
                kind = gr.Dropdown(choices=[], label="Job kind", elem_id="obt-job-kind", scale=1, min_width=180)
                launch_btn = gr.Button("Launch job", variant="primary", elem_id="obt-launch", scale=0, min_width=130,
                                       size="md")
            kind_help = gr.Markdown(elem_classes=["obt-muted"])
            params = gr.Code(language="json", label="Parameters (JSON)", elem_id="obt-job-params", lines=6)
            console_msg = gr.Markdown(elem_id="obt-console-msg", elem_classes=["obt-msg"])
            jobs_df = gr.Dataframe(headers=A.JOB_COLUMNS, interactive=False, wrap=False, elem_id="obt-jobs",
                                   label="Jobs (click a row for its log)", elem_classes=["obt-table-box"],
                                   max_height=320)
            with gr.Row(elem_classes=["obt-wrap"]):
                cancel_btn = gr.Button("Cancel job", variant="stop", interactive=False, elem_id="obt-cancel",
                                       scale=0, min_width=130, size="md")
                resume_btn = gr.Button("Resume job", interactive=False, elem_id="obt-resume", scale=0, min_width=130,
                                       size="md")
            job_info = gr.Markdown(elem_id="obt-job-info")
            job_log = gr.HTML("", elem_id="obt-job-log")

    # --- the job console's pieces -------------------------------------------------------------------------------

    def job_view(session: AdminSession, jid: int | None) -> dict:
        info, text = A.job_detail(ctx, session, jid)
        can_cancel, can_resume = A.job_actions(ctx, session, jid)
        return {job_info: info, job_log: E.log_html(f"job {jid}", text) if jid else "",
                cancel_btn: gr.Button(interactive=can_cancel), resume_btn: gr.Button(interactive=can_resume)}

    def first_corpus() -> str | None:
        rows = E.corpora(ctx)
        return rows[0]["name"] if rows else None

    def overview(session: AdminSession) -> dict:
        user = require_admin(session)
        names = A.study_names(ctx, session)
        template, help_text = A.job_template(session, A.DEFAULT_KIND, first_corpus())
        return {
            login_box: gr.Column(visible=False), panel: gr.Column(visible=True),
            timer: gr.Timer(active=E.any_running(ctx)), who: f"Logged in as **{user}**.",
            kind: gr.Dropdown(choices=A.job_kinds(session), value=A.DEFAULT_KIND), params: template,
            kind_help: help_text, jobs_df: A.jobs_table(ctx, session),
            corpora_df: A.corpora_table(ctx, session), studies_df: A.studies_table(ctx, session),
            study: gr.Dropdown(choices=names, value=names[-1] if names else None),
            roots_note: A.data_roots_text(ctx, session), selected_job: None, console_msg: "",
            **job_view(session, None), **experiments.on_login(session),
        }

    job_outputs = [job_info, job_log, cancel_btn, resume_btn]
    overview_outputs = [login_box, panel, timer, who, kind, params, kind_help, jobs_df, corpora_df, studies_df, study,
                        roots_note, selected_job, console_msg, status, ticket, *job_outputs,
                        *experiments.login_outputs]
    signing_key = cookie_key(ctx.config.secret, ctx.config.admin_password)

    @guarded(status)
    def on_login(pw: str, session: AdminSession, request: gr.Request) -> dict:
        client = client_address(getattr(getattr(request, "client", None), "host", None),
                                request.headers.get("x-forwarded-for") if request is not None else None,
                                ctx.config.trusted_proxies)
        if not check_password(ctx.db, session, pw if isinstance(pw, str) else "", ctx.config.admin_password, client):
            return {status: "⚠ wrong password"}
        return overview(session) | {status: "", ticket: researcher_ticket(signing_key, session.user)}

    @guarded(status)
    def on_oauth(session: AdminSession, profile: gr.OAuthProfile | None) -> dict:
        if not login_oauth(session, profile.username if profile else None, ctx.config.admin_users):
            return {status: "⚠ this Hugging Face account is not a researcher of this app"}
        return overview(session) | {status: "", ticket: researcher_ticket(signing_key, session.user)}

    def on_logout(session: AdminSession) -> dict:
        session.user = None
        return {login_box: gr.Column(visible=True), panel: gr.Column(visible=False), timer: gr.Timer(active=False),
                status: "Logged out.", jobs_df: pd.DataFrame(columns=A.JOB_COLUMNS), job_info: "", job_log: "",
                ticket: "", selected_job: None, **experiments.on_logout()}

    @guarded(console_msg)
    def on_kind(session: AdminSession, k: str) -> dict:
        if not k:
            return {console_msg: ""}
        template, help_text = A.job_template(session, k, first_corpus())
        return {params: template, kind_help: help_text, console_msg: ""}

    @guarded(console_msg)
    def on_launch(session: AdminSession, k: str, p: str) -> dict:
        job = A.launch(ctx, session, k, p)
        # no "queued" message to go stale: the job is selected and its live state shows below the table
        return {console_msg: "", selected_job: job.id, jobs_df: A.jobs_table(ctx, session),
                timer: gr.Timer(active=True), **job_view(session, job.id)}

    def on_tick(session: AdminSession, jid: int | None, *panel_inputs) -> dict:
        if not session.ok:
            return {timer: gr.Timer(active=False)}
        active = E.any_running(ctx)  # before the views: a run that ends in between gets one more refresh
        try:
            console = {jobs_df: A.jobs_table(ctx, session), corpora_df: A.corpora_table(ctx, session),
                       **job_view(session, jid)}
        except Exception:  # noqa: BLE001 — a job row that vanished must not stop the refresh
            console = {}
        return {timer: gr.Timer(active=active), **console, **experiments.on_tick(session, *panel_inputs)}

    @guarded(console_msg)
    def on_select(session: AdminSession, evt: gr.SelectData) -> dict:
        require_admin(session)
        row = evt.row_value if getattr(evt, "row_value", None) else None
        if not row:
            return {}
        try:
            jid = int(str(row[0]))
        except ValueError:
            raise BadInputError("that row names no job") from None
        return {selected_job: jid, console_msg: "", **job_view(session, jid)}

    @guarded(console_msg)
    def on_cancel(session: AdminSession, jid: int | None) -> dict:
        job = A.cancel(ctx, session, jid)
        return {console_msg: "", jobs_df: A.jobs_table(ctx, session), **job_view(session, job.id)}

    @guarded(console_msg)
    def on_resume(session: AdminSession, jid: int | None) -> dict:
        job = A.resume(ctx, session, jid)
        return {console_msg: "", jobs_df: A.jobs_table(ctx, session), timer: gr.Timer(active=True),
                **job_view(session, job.id)}

    @guarded(ingest_msg)
    def on_register(session: AdminSession, folder: str, name: str, meta: str, align: str, seg: bool,
                    smin: float | None, smax: float | None, vad: str | None) -> dict:
        job = A.register_corpus(ctx, session, folder, name, meta, align, bool(seg), smin, smax, vad)
        return {ingest_msg: f"Ingest job {job.id} takes it from here: the corpus appears in the table above and in "
                            "the experiment form when it is done (its log: Advanced: job console).",
                selected_job: job.id, jobs_df: A.jobs_table(ctx, session), timer: gr.Timer(active=True)}

    @guarded(ingest_msg)
    def on_upload(session: AdminSession, files: list | None, name: str, seg: bool, smin: float | None,
                  smax: float | None, vad: str | None) -> dict:
        job = A.upload_corpus(ctx, session, files, name, ctx.uploaded, bool(seg), smin, smax, vad)
        return {ingest_msg: f"Uploaded; ingest job {job.id} takes it from here: the corpus appears in the table above "
                            "and in the experiment form when it is done (its log: Advanced: job console).",
                selected_job: job.id, jobs_df: A.jobs_table(ctx, session), timer: gr.Timer(active=True)}

    @guarded(studies_msg)
    def on_studies(session: AdminSession, name: str | None) -> dict:
        names = A.study_names(ctx, session)
        return {studies_df: A.studies_table(ctx, session), corpora_df: A.corpora_table(ctx, session),
                study: gr.Dropdown(choices=names, value=name if name in names else (names[-1] if names else None)),
                invites_df: A.invites_table(ctx, session, name if name in names else ""), studies_msg: ""}

    @guarded(studies_msg)
    def on_status(session: AdminSession, name: str, new_status: str) -> dict:
        A.set_study_status(ctx, session, name, new_status)
        return {studies_msg: f"Study {name} is {new_status}.", studies_df: A.studies_table(ctx, session)}

    @guarded(studies_msg)
    def on_invite(session: AdminSession, name: str, count: float) -> dict:
        A.make_invites(ctx, session, name, int(count or 1))
        return {studies_msg: f"Invitations created for {name}. Send each rater their own link.",
                invites_df: A.invites_table(ctx, session, name), studies_df: A.studies_table(ctx, session)}

    @guarded(studies_msg)
    def on_new_study(session: AdminSession, name: str, systems: str, ref: str, target: float, block: float) -> dict:
        job = A.create_study_job(ctx, session, name, systems, ref, target, block)
        return {studies_msg: f"Creating the study as job {job.id}; press Refresh when it is done.",
                selected_job: job.id, jobs_df: A.jobs_table(ctx, session), timer: gr.Timer(active=True)}

    login_btn.click(on_login, [password, admin_state], overview_outputs, **PRIVATE).then(
        None, [ticket], None, js=EXCHANGE_JS, **PRIVATE)
    password.submit(on_login, [password, admin_state], overview_outputs, **PRIVATE).then(
        None, [ticket], None, js=EXCHANGE_JS, **PRIVATE)
    if oauth_btn is not None:
        oauth_btn.click(on_oauth, [admin_state], overview_outputs, **PRIVATE).then(
            None, [ticket], None, js=EXCHANGE_JS, **PRIVATE)
    logout_btn.click(on_logout, [admin_state],
                     [login_box, panel, timer, status, jobs_df, job_info, job_log, ticket, selected_job,
                      *experiments.logout_outputs], **PRIVATE).then(None, None, None, js=LOGOUT_JS, **PRIVATE)
    kind.input(on_kind, [admin_state, kind], [params, kind_help, console_msg], **PRIVATE)
    launch_btn.click(on_launch, [admin_state, kind, params], [console_msg, selected_job, jobs_df, timer, *job_outputs],
                     **PRIVATE)
    timer.tick(on_tick, [admin_state, selected_job, *experiments.tick_inputs],
               [timer, jobs_df, corpora_df, *job_outputs, *experiments.tick_outputs], show_progress="hidden",
               **PRIVATE)
    jobs_df.select(on_select, [admin_state], [selected_job, console_msg, *job_outputs], **PRIVATE)
    cancel_btn.click(on_cancel, [admin_state, selected_job], [console_msg, jobs_df, *job_outputs], **PRIVATE)
    resume_btn.click(on_resume, [admin_state, selected_job], [console_msg, jobs_df, timer, *job_outputs], **PRIVATE)
    reg_btn.click(on_register, [admin_state, reg_folder, reg_name, reg_meta, reg_align, segment, seg_min, seg_max,
                                seg_vad], [ingest_msg, selected_job, jobs_df, timer], **PRIVATE)
    up_btn.click(on_upload, [admin_state, up_files, up_name, segment, seg_min, seg_max, seg_vad],
                 [ingest_msg, selected_job, jobs_df, timer], **PRIVATE)
    study.input(on_studies, [admin_state, study], [studies_df, corpora_df, study, invites_df, studies_msg], **PRIVATE)
    studies_btn.click(on_studies, [admin_state, study], [studies_df, corpora_df, study, invites_df, studies_msg],
                      **PRIVATE)
    open_btn.click(lambda s, n: on_status(s, n, "open"), [admin_state, study], [studies_msg, studies_df], **PRIVATE)
    close_btn.click(lambda s, n: on_status(s, n, "closed"), [admin_state, study], [studies_msg, studies_df],
                    **PRIVATE)
    invite_btn.click(on_invite, [admin_state, study, invite_count], [studies_msg, invites_df, studies_df], **PRIVATE)
    new_btn.click(on_new_study, [admin_state, new_name, new_systems, new_reference, new_target, new_block],
                  [studies_msg, selected_job, jobs_df, timer], **PRIVATE)
    return {"login": login_btn, "password": password}
