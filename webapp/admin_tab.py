"""The Admin tab (researchers): log in, run the demo, register corpora, launch and watch jobs, manage studies.

Everything on this tab starts empty: the choices, tables and job details arrive only in answers to a
logged-in session, so the page every rater downloads (Gradio's config) holds no corpus, encoder or
system name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gradio as gr
import pandas as pd

from obt_eval.errors import ObtEvalError
from webapp import admin as A
from webapp.auth import (
    AdminSession,
    NotAuthorised,
    check_password,
    client_address,
    cookie_key,
    login_oauth,
    require_admin,
    researcher_ticket,
)
from webapp.context import AppContext

PRIVATE = {"api_visibility": "private"}
# After a login the page trades its one-time ticket for the HttpOnly researcher cookie that uploads need
# (a Gradio callback cannot set a cookie); logging out clears it.
EXCHANGE_JS = """(ticket) => { if (ticket) fetch('auth/researcher', {method: 'POST', credentials: 'same-origin',
  headers: {'Content-Type': 'application/json'}, body: JSON.stringify({ticket: ticket})}); return []; }"""
LOGOUT_JS = "() => { fetch('auth/logout', {method: 'POST', credentials: 'same-origin'}); return []; }"


def _first_line(exc: Exception) -> str:
    return str(exc).replace("\n  what to do:", " —")


def build_admin_tab(ctx: AppContext, admin_state: gr.State) -> dict:
    with gr.Column(elem_id="obt-login") as login_box:
        gr.Markdown("## Researchers\nLog in to run the pipeline, create studies and invite raters.")
        password = gr.Textbox(label="Password", type="password", max_lines=1, elem_id="obt-password")
        login_btn = gr.Button("Log in", variant="primary", elem_id="obt-login-btn")
        if ctx.config.oauth:
            gr.LoginButton()
            oauth_btn = gr.Button("Continue with my Hugging Face account")
        else:
            oauth_btn = None
    status = gr.Markdown(elem_id="obt-admin-status")
    ticket = gr.Textbox(visible=False, elem_id="obt-upload-ticket")
    with gr.Column(visible=False, elem_id="obt-admin-panel") as panel:
        with gr.Row():
            who = gr.Markdown()
            logout_btn = gr.Button("Log out", size="sm", scale=0)
        with gr.Accordion("Try it: the one-click demo", open=True, elem_id="obt-demo-box") as demo_box:
            gr.Markdown(
                "Builds a small synthetic corpus (Portuguese and Guarani, espeak-ng), ingests it, extracts two "
                "weightless feature types, learns units, trains two tiny vocoders, synthesizes stimuli and opens "
                "a listening study with rater invitations. A few minutes on a CPU."
            )
            demo_btn = gr.Button("Run the demo", variant="primary", elem_id="obt-demo-btn")
        with gr.Accordion("Jobs", open=True):
            with gr.Row():
                kind = gr.Dropdown(choices=[], label="Job kind", elem_id="obt-job-kind", scale=1)
                launch_btn = gr.Button("Launch job", variant="primary", elem_id="obt-launch", scale=0)
            kind_help = gr.Markdown()
            params = gr.Code(language="json", label="Parameters (JSON)", elem_id="obt-job-params", lines=6)
            jobs_df = gr.Dataframe(headers=A.JOB_COLUMNS, interactive=False, wrap=True, elem_id="obt-jobs",
                                   label="Jobs (click a row for its log)")
            with gr.Row():
                job_id = gr.Number(label="Job id", precision=0, elem_id="obt-job-id", scale=1)
                cancel_btn = gr.Button("Cancel job", variant="stop", elem_id="obt-cancel", scale=0)
                resume_btn = gr.Button("Resume job", elem_id="obt-resume", scale=0)
            job_info = gr.Markdown(elem_id="obt-job-info")
            job_log = gr.Textbox(label="Log (last lines)", lines=12, max_lines=20, interactive=False,
                                 elem_id="obt-job-log", autoscroll=True)
        with gr.Accordion("Corpora", open=False):
            corpora_df = gr.Dataframe(interactive=False, label="Corpora in the workspace")
            with gr.Tab("Register a folder on the server"):
                reg_folder = gr.Textbox(label="Folder of recordings", max_lines=1)
                reg_name = gr.Textbox(label="Corpus name", max_lines=1)
                reg_meta = gr.Textbox(label="metadata.csv (optional)", max_lines=1)
                reg_align = gr.Textbox(label="TextGrid folder or item file (optional)", max_lines=1)
                reg_btn = gr.Button("Ingest folder")
            with gr.Tab("Upload recordings"):
                up_files = gr.File(file_count="multiple", label="Audio files, metadata.csv, or a zip archive",
                                   elem_id="obt-upload-files")
                up_name = gr.Textbox(label="Corpus name", max_lines=1, elem_id="obt-upload-name")
                up_btn = gr.Button("Upload and ingest", elem_id="obt-upload-btn")
        with gr.Accordion("Studies", open=False):
            studies_df = gr.Dataframe(interactive=False, label="Studies", elem_id="obt-studies")
            with gr.Row():
                study = gr.Dropdown(choices=[], label="Study", elem_id="obt-study", scale=2)
                studies_btn = gr.Button("Refresh", elem_id="obt-studies-refresh", scale=0)
                open_btn = gr.Button("Open", scale=0)
                close_btn = gr.Button("Close", scale=0)
            with gr.Row():
                invite_count = gr.Number(value=5, precision=0, label="New raters", scale=1)
                invite_btn = gr.Button("Create invitations", elem_id="obt-invite-btn", scale=0)
            invites_df = gr.Dataframe(interactive=False, wrap=True, label="Invitations", elem_id="obt-invites")
            gr.Markdown("**New study** from synthesized stimuli (`name=folder`, one per system; folders may be names "
                        "under `workspace/stimuli/`).")
            new_name = gr.Textbox(label="Study name", max_lines=1)
            new_systems = gr.Textbox(label="Systems", lines=2, placeholder="systemA=stimuli_folder_a, systemB=...")
            new_reference = gr.Textbox(label="Natural reference (optional)", max_lines=1, placeholder="natural=folder")
            with gr.Row():
                new_target = gr.Number(value=10, precision=0, label="Ratings per stimulus")
                new_block = gr.Number(value=10, precision=0, label="Trials per rater block")
            new_btn = gr.Button("Create study (as a job)")
    timer = gr.Timer(2.0, active=False)

    def guarded(fn: Callable[..., dict]) -> Callable[..., dict]:
        """Turn user errors (not logged in, bad parameters) into a status line; never into data."""

        @functools.wraps(fn)
        def run(*args, **kwargs) -> dict:
            try:
                return fn(*args, **kwargs)
            except NotAuthorised as exc:
                return {status: f"⚠ {_first_line(exc)}"}
            except ObtEvalError as exc:
                return {status: f"⚠ {_first_line(exc)}"}

        return run

    def overview(session: AdminSession) -> dict:
        user = require_admin(session)
        names = A.study_names(ctx, session)
        return {
            login_box: gr.Column(visible=False), panel: gr.Column(visible=True), timer: gr.Timer(active=True),
            who: f"Logged in as **{user}**. Workspace: `{ctx.workspace.root}`",
            demo_box: gr.Accordion(open=A.workspace_empty(ctx)),
            kind: gr.Dropdown(choices=A.job_kinds(session)), jobs_df: A.jobs_table(ctx, session),
            corpora_df: A.corpora_table(ctx, session), studies_df: A.studies_table(ctx, session),
            study: gr.Dropdown(choices=names, value=names[-1] if names else None),
        }

    overview_outputs = [login_box, panel, timer, who, demo_box, kind, jobs_df, corpora_df, studies_df, study, status,
                        ticket]
    signing_key = cookie_key(ctx.config.secret, ctx.config.admin_password)

    @guarded
    def on_login(pw: str, session: AdminSession, request: gr.Request) -> dict:
        client = client_address(getattr(getattr(request, "client", None), "host", None),
                                request.headers.get("x-forwarded-for") if request is not None else None,
                                ctx.config.trusted_proxies)
        if not check_password(ctx.db, session, pw if isinstance(pw, str) else "", ctx.config.admin_password, client):
            return {status: "⚠ wrong password"}
        return overview(session) | {status: "", ticket: researcher_ticket(signing_key, session.user)}

    @guarded
    def on_oauth(session: AdminSession, profile: gr.OAuthProfile | None) -> dict:
        if not login_oauth(session, profile.username if profile else None, ctx.config.admin_users):
            return {status: "⚠ this Hugging Face account is not a researcher of this app"}
        return overview(session) | {status: "", ticket: researcher_ticket(signing_key, session.user)}

    def on_logout(session: AdminSession) -> dict:
        session.user = None
        return {login_box: gr.Column(visible=True), panel: gr.Column(visible=False), timer: gr.Timer(active=False),
                status: "Logged out.", jobs_df: pd.DataFrame(columns=A.JOB_COLUMNS), job_info: "", job_log: "",
                ticket: ""}

    @guarded
    def on_kind(session: AdminSession, k: str) -> dict:
        if not k:
            return {}
        template, help_text = A.job_template(session, k)
        return {params: template, kind_help: help_text}

    @guarded
    def on_launch(session: AdminSession, k: str, p: str) -> dict:
        job = A.launch(ctx, session, k, p)
        return {status: f"Job {job.id} ({job.kind}) queued.", job_id: job.id, jobs_df: A.jobs_table(ctx, session)}

    @guarded
    def on_tick(session: AdminSession, jid: float | None) -> dict:
        if not session.ok:
            return {timer: gr.Timer(active=False)}
        info, log_text = A.job_detail(ctx, session, int(jid) if jid else None)
        return {jobs_df: A.jobs_table(ctx, session), job_info: info, job_log: log_text}

    @guarded
    def on_select(session: AdminSession, evt: gr.SelectData) -> dict:
        require_admin(session)
        row = evt.row_value if getattr(evt, "row_value", None) else None
        if not row:
            return {}
        jid = int(row[0])
        info, log_text = A.job_detail(ctx, session, jid)
        return {job_id: jid, job_info: info, job_log: log_text}

    @guarded
    def on_cancel(session: AdminSession, jid: float | None) -> dict:
        job = A.cancel(ctx, session, int(jid) if jid else None)
        return {status: f"Job {job.id} {job.state}.", jobs_df: A.jobs_table(ctx, session)}

    @guarded
    def on_resume(session: AdminSession, jid: float | None) -> dict:
        job = A.resume(ctx, session, int(jid) if jid else None)
        return {status: f"Job {job.id} queued again; it continues from its artifacts.",
                jobs_df: A.jobs_table(ctx, session)}

    @guarded
    def on_demo(session: AdminSession) -> dict:
        job = A.start_demo(ctx, session)
        return {status: f"Demo started (job {job.id}). Watch it below; the study appears under Studies when done.",
                job_id: job.id, jobs_df: A.jobs_table(ctx, session)}

    @guarded
    def on_register(session: AdminSession, folder: str, name: str, meta: str, align: str) -> dict:
        job = A.register_corpus(ctx, session, folder, name, meta, align)
        return {status: f"Ingest job {job.id} queued.", job_id: job.id, jobs_df: A.jobs_table(ctx, session)}

    @guarded
    def on_upload(session: AdminSession, files: list | None, name: str) -> dict:
        job = A.upload_corpus(ctx, session, files, name, ctx.uploaded)
        return {status: f"Uploaded; ingest job {job.id} queued.", job_id: job.id, jobs_df: A.jobs_table(ctx, session)}

    @guarded
    def on_studies(session: AdminSession, name: str | None) -> dict:
        names = A.study_names(ctx, session)
        return {studies_df: A.studies_table(ctx, session), corpora_df: A.corpora_table(ctx, session),
                study: gr.Dropdown(choices=names, value=name if name in names else (names[-1] if names else None)),
                invites_df: A.invites_table(ctx, session, name if name in names else "")}

    @guarded
    def on_status(session: AdminSession, name: str, new_status: str) -> dict:
        A.set_study_status(ctx, session, name, new_status)
        return {status: f"Study {name} is {new_status}.", studies_df: A.studies_table(ctx, session)}

    @guarded
    def on_invite(session: AdminSession, name: str, count: float) -> dict:
        A.make_invites(ctx, session, name, int(count or 1))
        return {status: f"Invitations created for {name}. Send each rater their own link.",
                invites_df: A.invites_table(ctx, session, name), studies_df: A.studies_table(ctx, session)}

    @guarded
    def on_new_study(session: AdminSession, name: str, systems: str, ref: str, target: float, block: float) -> dict:
        job = A.create_study_job(ctx, session, name, systems, ref, target, block)
        return {status: f"Study job {job.id} queued.", job_id: job.id, jobs_df: A.jobs_table(ctx, session)}

    login_btn.click(on_login, [password, admin_state], overview_outputs, **PRIVATE).then(
        None, [ticket], None, js=EXCHANGE_JS, **PRIVATE)
    password.submit(on_login, [password, admin_state], overview_outputs, **PRIVATE).then(
        None, [ticket], None, js=EXCHANGE_JS, **PRIVATE)
    if oauth_btn is not None:
        oauth_btn.click(on_oauth, [admin_state], overview_outputs, **PRIVATE).then(
            None, [ticket], None, js=EXCHANGE_JS, **PRIVATE)
    logout_btn.click(on_logout, [admin_state], [login_box, panel, timer, status, jobs_df, job_info, job_log, ticket],
                     **PRIVATE).then(None, None, None, js=LOGOUT_JS, **PRIVATE)
    kind.change(on_kind, [admin_state, kind], [params, kind_help, status], **PRIVATE)
    launch_btn.click(on_launch, [admin_state, kind, params], [status, job_id, jobs_df], **PRIVATE)
    timer.tick(on_tick, [admin_state, job_id], [jobs_df, job_info, job_log, status, timer], show_progress="hidden",
               **PRIVATE)
    jobs_df.select(on_select, [admin_state], [job_id, job_info, job_log, status], **PRIVATE)
    cancel_btn.click(on_cancel, [admin_state, job_id], [status, jobs_df], **PRIVATE)
    resume_btn.click(on_resume, [admin_state, job_id], [status, jobs_df], **PRIVATE)
    demo_btn.click(on_demo, [admin_state], [status, job_id, jobs_df], **PRIVATE)
    reg_btn.click(on_register, [admin_state, reg_folder, reg_name, reg_meta, reg_align], [status, job_id, jobs_df],
                  **PRIVATE)
    up_btn.click(on_upload, [admin_state, up_files, up_name], [status, job_id, jobs_df], **PRIVATE)
    study.change(on_studies, [admin_state, study], [studies_df, corpora_df, study, invites_df, status], **PRIVATE)
    studies_btn.click(on_studies, [admin_state, study], [studies_df, corpora_df, study, invites_df, status],
                      **PRIVATE)
    open_btn.click(lambda s, n: on_status(s, n, "open"), [admin_state, study], [status, studies_df], **PRIVATE)
    close_btn.click(lambda s, n: on_status(s, n, "closed"), [admin_state, study], [status, studies_df], **PRIVATE)
    invite_btn.click(on_invite, [admin_state, study, invite_count], [status, invites_df, studies_df], **PRIVATE)
    new_btn.click(on_new_study, [admin_state, new_name, new_systems, new_reference, new_target, new_block],
                  [status, job_id, jobs_df], **PRIVATE)
    return {"login": login_btn, "password": password}
