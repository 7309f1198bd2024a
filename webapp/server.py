"""The web server: FastAPI with our own routes (the rater's page, blinded audio, researcher downloads, health)
and the researchers' Gradio app (Admin, Results) on `/`.

Raters never touch Gradio (their page is `webapp.rater_page`: plain HTML and JSON calls, no queue, no
session state, so 50 raters at once cost milliseconds each and any replica answers any call). Gradio
settings that still matter for blinding and abuse (reference listening-tests.md §0, §4, §7): run history
off and no footer links, no extra `allowed_paths` (the stimulus tree must never be fetchable by URL).
Everything is served behind `webapp.guard` (session cookie, upload gate, body limits, closed routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path

import anyio
import gradio as gr
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from webapp import gradio_tuning  # before any Blocks exists: it sets what Gradio's queue reads
from webapp.auth import AdminSession, cookie_key, researcher_from_cookie
from webapp.config import AppConfig, load_config
from webapp.context import AppContext, make_context
from webapp.guard import Guard, GuardSettings

HOUSEKEEPING_SECONDS = 300.0  # expired audio links, stale throttle rows, uploads nobody ingested

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PRODUCT = "obt-eval"
# One theme for every tab: the house orange, consistent spacing; system fonts (a rater's phone fetches no web font).
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="slate", neutral_hue="slate", radius_size="md",
                       spacing_size="md", text_size="md",
                       font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
HEADER = f"""<header class="obt-header">
<h1 class="obt-product">{PRODUCT}</h1>
<p class="obt-tagline">Which speech encoder gives the best units and voice for your language? Run the experiment,
then let native speakers decide in blinded listening tests.</p>
<p class="obt-aside">Raters: open the invitation link you received, or enter your code on the <a href="rate">rating
page</a>.</p>
</header>"""
log = logging.getLogger("obt-eval.app")


def css_files() -> list[str]:
    """Every stylesheet in static/ (app.css, admin.css, ...), in a stable order."""
    return [str(p) for p in sorted(STATIC_DIR.glob("*.css"))]


def build_blocks(ctx: AppContext) -> gr.Blocks:
    """The researchers' app (raters have their own page: webapp.rater_page)."""
    from webapp.admin_tab import build_admin_tab
    from webapp.results_tab import build_results_tab

    with gr.Blocks(title=f"{PRODUCT} — encoders and listening tests", analytics_enabled=False) as demo:
        gr.HTML(HEADER, elem_id="obt-header")
        admin_state = gr.State(AdminSession())
        with gr.Tabs(elem_id="obt-tabs"):
            with gr.Tab("Admin", id="admin", elem_id="obt-tab-admin") as admin_tab:
                build_admin_tab(ctx, admin_state)
            with gr.Tab("Results", id="results", elem_id="obt-tab-results") as results_tab:
                results = build_results_tab(ctx, admin_state)

        # The Results tab loads when opened (the login happened on the Admin tab meanwhile) and its refresh
        # timer runs only while it is the open tab.
        results_tab.select(results["open"], results["inputs"], results["outputs"], api_visibility="private",
                           show_progress="hidden")
        admin_tab.select(lambda: gr.Timer(active=False), None, [results["timer"]], api_visibility="private",
                         show_progress="hidden", queue=False)
    # Researchers' heavy callbacks run one at a time unless they say otherwise.
    demo.queue(default_concurrency_limit=1, max_size=2000)
    gradio_tuning.tune_queue(demo)
    ctx.uploaded = demo.upload_file_set
    return demo


def housekeeping(ctx: AppContext) -> dict[str, int]:
    """One round of cleanup (every HOUSEKEEPING_SECONDS while the app runs; safe on every replica)."""
    from db import throttle
    from webapp.uploads import sweep

    links = ctx.tokens.purge()
    with ctx.writing() as s:
        clients = throttle.purge(s)
    uploads = sweep(ctx.uploaded, ctx.config.upload_ttl_seconds)
    return {"audio_links": links, "throttle_rows": clients, "uploads": uploads}


def create_app(config: AppConfig) -> Guard:
    """The ASGI app (also what tests and the load benchmark serve with uvicorn)."""
    from webapp import audio, auth, downloads, rater_page

    ctx = make_context(config)
    gradio_tuning.lazy_session_state()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        async def loop() -> None:
            while True:
                await asyncio.sleep(HOUSEKEEPING_SECONDS)
                try:
                    await anyio.to_thread.run_sync(housekeeping, ctx)
                except Exception:  # noqa: BLE001 — a failed round is logged; the next one tries again
                    log.exception("housekeeping failed")

        gradio_tuning.limit_worker_threads()
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(title="obt-eval", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.include_router(rater_page.router(ctx))
    app.include_router(audio.router(ctx.tokens))
    app.include_router(downloads.router(downloads.DOWNLOADS))
    signing_key = cookie_key(config.secret, config.admin_password)
    app.include_router(auth.router(signing_key))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    demo = build_blocks(ctx)
    app.state.obt_context = ctx
    app = gr.mount_gradio_app(
        app, demo, path="/", footer_links=[], run_history=False, css_paths=css_files(), theme=THEME,
        max_file_size=config.upload_max_bytes, show_error=True, ssr_mode=False, pwa=False,
        mcp_server=False,
    )
    guarded = Guard(app, GuardSettings(
        is_researcher=lambda value: researcher_from_cookie(signing_key, value) is not None,
        known_function=lambda index: index in demo.fns,
        upload_max_bytes=config.upload_max_bytes, upload_max_files=config.upload_max_files,
    ))
    guarded.state = app.state  # what tests and tools read off the app (obt_context)
    return guarded


def start_background(config: AppConfig):  # noqa: ANN201 — pipelines.worker.LocalWorkerWatchdog | None
    """The local worker, kept running by a watchdog (unless disabled), and the periodic database backup.

    Returns the watchdog (None when the app starts no worker), so a caller can stop watching."""
    watchdog = None
    if config.start_worker:
        from pipelines.worker import LocalWorkerWatchdog

        watchdog = LocalWorkerWatchdog(config.workspace, config.worker_slots).start()
    if config.backup_repo:
        from pipelines.backup import backup_loop

        threading.Thread(target=backup_loop, args=(config,), daemon=True, name="obt-eval-backup").start()
    return watchdog


def serve(config: AppConfig) -> None:
    import uvicorn

    from pipelines.backup import restore_if_missing

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations report every plugin at INFO
    if config.backup_repo:
        restore_if_missing(config)
    app = create_app(config)
    start_background(config)
    gradio_tuning.settle_memory()
    url = f"http://{'localhost' if config.host in ('0.0.0.0', '127.0.0.1') else config.host}:{config.port}"
    print(f"obt-eval app on {url}", flush=True)
    if config.password_generated:
        print(f"researcher password (Admin tab): {config.admin_password}  "
              f"(stored in {Path(config.workspace.root) / '.secrets' / 'admin_password'}; "
              "set OBT_EVAL_ADMIN_PASSWORD to choose one)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=5)


def main(workspace: str | None = None, host: str | None = None, port: int | None = None,
         start_worker: bool | None = None) -> None:
    serve(load_config(workspace, host, port, start_worker))
