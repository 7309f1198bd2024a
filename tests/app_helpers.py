"""Helpers for the app, jobs and browser tests: a served app on a free port, a worker, waiting on jobs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--mute-audio"]
PASSWORD = "test-password-123"
# Deadlines for waits on a condition: generous, because a loaded 2-core machine can be many times slower than
# an idle one; a wait returns as soon as its condition holds, so a long deadline costs nothing when all is well.
WAIT_SECONDS = 300.0
# Every browser test module: `pytestmark = BROWSER_MARKS` (the `browser` fixture is in conftest.py)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium not installed at {CHROMIUM} "
                       "(apt-get install -y chromium)"),
]


def wait_for(condition, timeout: float = WAIT_SECONDS, what: str = "the condition", poll: float = 0.1):
    """Poll `condition()` until it returns something truthy (returned); AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(poll)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_app(workspace_root: Path, start_worker: bool = False) -> Iterator[tuple[str, object]]:
    """The app (create_app) under uvicorn in a thread on a free port; yields (base URL, AppConfig)."""
    import uvicorn

    from webapp.config import load_config
    from webapp.server import create_app, start_background

    os.environ["OBT_EVAL_ADMIN_PASSWORD"] = PASSWORD
    # Loopback is a trusted proxy here, so a test can speak for several clients with X-Forwarded-For.
    os.environ["OBT_EVAL_TRUSTED_PROXIES"] = "127.0.0.1/32"
    port = free_port()
    config = load_config(workspace_root, "127.0.0.1", port, start_worker)
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, what=f"the app to answer on {base}")
    watchdog = start_background(config)
    try:
        yield base, config
    finally:
        if watchdog is not None:
            watchdog.stop()  # before the workers stop, or it would start a new one
        server.should_exit = True
        thread.join(timeout=WAIT_SECONDS)
        stop_workers(workspace_root)


def stop_workers(workspace_root: Path) -> None:
    """Stop the worker processes this test started for `workspace_root` (by their pid, one by one)."""
    for pid in worker_pids(workspace_root):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    wait_for(lambda: not worker_pids(workspace_root), what=f"the workers of {workspace_root} to stop")


def worker_pids(workspace_root: Path) -> list[int]:
    root = str(Path(workspace_root).resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pipelines.worker" in cmd and root.encode() in cmd:
            pids.append(int(proc.name))
    return pids


def wait_job(job_id: int, workspace, states=("done", "failed", "cancelled"), timeout: float = WAIT_SECONDS):
    """Wait until the job is in one of `states`; returns its view."""
    from pipelines import jobs

    def reached():
        view = jobs.get(job_id, workspace)
        return view if view.state in states else None

    try:
        return wait_for(reached, timeout, f"job {job_id} to be {' or '.join(states)}", poll=0.2)
    except AssertionError as exc:
        view = jobs.get(job_id, workspace)
        raise AssertionError(f"{exc}; it is {view.state}; log:\n{jobs.log_tail(view.log_path)}") from None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class RawGradio:
    """The browser's own protocol (queue/join + the SSE stream), spoken by a script: what an attacker can do."""

    def __init__(self, base: str, session_hash: str | None = None, headers: dict | None = None):
        import secrets

        self.base = base
        self.session_hash = session_hash or secrets.token_hex(6)
        self.http = httpx.Client(timeout=30, headers=headers)
        self.config = self.http.get(f"{base}/config").json()
        self.components = {c["id"]: c for c in self.config["components"]}

    def dependency(self, api_name: str) -> tuple[int, dict]:
        for index, dep in enumerate(self.config["dependencies"]):
            if dep.get("api_name") == api_name:
                return index, dep
        raise KeyError(api_name)

    def call(self, fn_index: int, data: list, event_data=None) -> dict:
        """One event; returns the final message (``{"msg": "process_completed", "output": …}``)."""
        import json

        dep = self.config["dependencies"][fn_index]
        body = {"data": data, "fn_index": fn_index, "session_hash": self.session_hash, "event_data": event_data,
                "trigger_id": (dep.get("targets") or [[None]])[0][0]}
        join = self.http.post(f"{self.base}/gradio_api/queue/join", json=body)
        join.raise_for_status()
        event_id = join.json()["event_id"]
        with self.http.stream("GET", f"{self.base}/gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    return msg
        raise AssertionError("the event stream ended without a result")

    def dummy_inputs(self, dep: dict) -> list:
        """Plausible values for every input of an event (what a script would send)."""
        values = {"textbox": "zzz", "number": 1, "dropdown": "zzz", "checkbox": True, "code": "{}",
                  "radio": "Yes", "password": "guess"}
        out = []
        for cid in dep["inputs"]:
            kind = self.components[cid]["type"]
            out.append(None if kind in ("state", "file", "html", "dataframe") else values.get(kind, "x"))
        return out


SCREEN_SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def screenshot_dir() -> Path:
    """Where the browser tests leave screenshots of each screen for a person to look at ($OBT_EVAL_SCREENSHOTS)."""
    root = Path(os.environ.get("OBT_EVAL_SCREENSHOTS") or Path(__file__).resolve().parent.parent / "screenshots")
    root.mkdir(parents=True, exist_ok=True)
    return root


def screenshot(page, name: str, full_page: bool = False) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def researcher_page(browser, base: str, **context_options):
    """A browser context logged in on the Admin tab (context options: viewport, permissions, is_mobile...)."""
    context = browser.new_context(accept_downloads=True, **context_options)
    page = context.new_page()
    page.set_default_timeout(WAIT_SECONDS * 1000)
    page.goto(base)
    page.get_by_role("tab", name="Admin").click()
    page.locator("#obt-password input").fill(PASSWORD)
    page.locator("#obt-login-btn").click()
    page.wait_for_selector("#obt-admin-panel", state="visible", timeout=WAIT_SECONDS * 1000)
    return context, page


def fill_profile(page) -> None:
    """What a new rater does on the consent screen: answer the profile, consent, continue."""
    page.locator("#obt-native input[value='Yes']").check()
    page.locator("#obt-linguist input[value='No']").check()
    page.locator("#obt-languages textarea, #obt-languages input").first.fill("pt-BR")
    page.locator("#obt-consent input").check()
    page.locator("#obt-continue").click()


def play_both_and_rate(page, score_a: int, score_b: int) -> None:
    """What a rater does in one trial: play A and B to the end, wait for the unlock, rate both, submit."""
    wait_ms = WAIT_SECONDS * 1000
    for slot in "AB":
        page.locator(f"button.obt-play[data-slot='{slot}']").tap()
        page.wait_for_selector(f"button.obt-play.obt-played[data-slot='{slot}']", timeout=wait_ms)
    page.wait_for_function("() => { const b = document.querySelector('#obt-submit'); return !!b && !b.disabled; }",
                           timeout=wait_ms)
    page.locator(f"#obt-score-a input[value='{score_a}']").check()
    page.locator(f"#obt-score-b input[value='{score_b}']").check()
    page.locator("#obt-submit").tap()
