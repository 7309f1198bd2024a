"""The worker process: a huey consumer that runs queued jobs, one per GPU slot (``obt-eval worker``).

It is a process of its own, so the web server never blocks on a job and jobs outlive an app restart.
The app starts one local worker (detached) when none runs on this machine for its workspace, and a
watchdog thread starts it again if it dies, so a new user needs nothing else; GPU machines run
``obt-eval worker`` against a shared Redis queue. Every worker leaves a heartbeat file in
``workspace/jobs/workers/``, so `jobs list` can tell a queued job that no worker is there to run it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from obt_eval.processes import pid_alive
from obt_eval.workspace import Workspace

LOCK_FILE = ".worker.lock"
LOG_FILE = "worker.log"
HEARTBEAT_DIR = "workers"
HEARTBEAT_SECONDS = 5.0
# A worker on another machine counts as gone when its heartbeat is older than this; one on this machine
# is checked by its pid at once.
STALE_SECONDS = 60.0
WATCHDOG_SECONDS = 5.0  # how often the app checks that its local worker still runs
log = logging.getLogger("obt-eval.worker")


def _lock_path(workspace: Workspace) -> Path:
    path = Path(workspace.root) / "jobs" / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def worker_running(workspace: Workspace) -> bool:
    """Does a worker on this machine serve `workspace`? (Every worker holds a shared lock while it runs.)"""
    with open(_lock_path(workspace), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def _heartbeat_dir(workspace: Workspace) -> Path:
    return Path(workspace.root) / "jobs" / HEARTBEAT_DIR


def _beat(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**record, "beat": time.time()}), encoding="utf-8")
    os.replace(tmp, path)


def _heartbeat(path: Path, record: dict, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            _beat(path, record)
        except OSError as exc:  # a full or unmounted disk must not stop the jobs
            log.warning("could not write the worker heartbeat %s: %s", path, exc)


def live_workers(workspace: Workspace) -> list[dict]:
    """The workers serving `workspace` now: this machine's by pid, other machines' by a fresh heartbeat."""
    host, now, out = socket.gethostname(), time.time(), []
    folder = _heartbeat_dir(workspace)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("host") == host:
            if _is_worker(record.get("pid")):
                out.append(record)
            else:  # died without cleaning up (SIGKILL, OOM): forget it
                with contextlib.suppress(OSError):
                    path.unlink()
        elif now - float(record.get("beat", 0)) < STALE_SECONDS:
            out.append(record)
    return out


def _is_worker(pid: int | None) -> bool:
    if not pid_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"worker" in cmdline  # not a zombie, not a reused pid


def run_worker(workspace: Workspace, slots: int | None = None, recover: bool = True) -> None:
    """Serve the queue until SIGINT/SIGTERM; `slots` GPU slots (default: the GPUs here, or one CPU slot)."""
    from pipelines import launcher
    from pipelines.queue import get_huey, set_worker_context
    from pipelines.runner import recover_orphans
    from pipelines.slots import gpu_count

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations report every plugin at INFO
    holder = open(_lock_path(workspace), "a+")  # noqa: SIM115 — held for the life of the worker
    fcntl.flock(holder, fcntl.LOCK_SH)
    count = gpu_count() if slots is None else slots
    set_worker_context(workspace, count)
    launcher.enable()  # jobs fork from a warm interpreter instead of importing torch & co. each time
    if recover:
        failed = recover_orphans(workspace)
        if failed:
            log.warning("marked failed (interrupted by a previous crash, resumable): jobs %s", failed)
    huey = get_huey(workspace)
    log.info("worker %s serving %s with %d slot(s)", os.getpid(), workspace.root, max(count, 1))
    # max_delay: poll an idle queue at least every second, so a new job starts promptly
    consumer = huey.create_consumer(workers=max(count, 1), worker_type="thread", periodic=False,
                                    initial_delay=0.1, backoff=1.15, max_delay=1.0, check_worker_health=True)
    beat_path = _heartbeat_dir(workspace) / f"{socket.gethostname()}-{os.getpid()}.json"
    beat_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "slots": max(count, 1), "started": time.time()}
    _beat(beat_path, record)
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(beat_path, record, stop), daemon=True, name="heartbeat").start()
    try:
        consumer.run()
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            beat_path.unlink()


def start_local_worker(workspace: Workspace, slots: int | None = None) -> int | None:
    """Start a detached worker for `workspace` unless one already runs here; returns its pid (or None)."""
    proc = _spawn_worker(workspace, slots)
    return proc.pid if proc else None


def _spawn_worker(workspace: Workspace, slots: int | None = None) -> subprocess.Popen | None:
    if worker_running(workspace):
        return None
    root = Path(workspace.root).resolve()
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pipelines.worker", "--workspace", str(root)]
    if slots is not None:
        cmd += ["--slots", str(slots)]
    with open(root / "jobs" / LOG_FILE, "ab") as log:
        # its own session: stopping or restarting the app does not stop the jobs
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent),
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc


class LocalWorkerWatchdog:
    """Keeps the app's local worker running: starts it, and starts it again whenever it dies (crash, OOM kill).

    A worker that dies within a minute of starting is restarted after a growing pause (up to 5 minutes),
    so a worker that cannot start does not spin; `jobs list` meanwhile says that no worker is running.
    """

    def __init__(self, workspace: Workspace, slots: int | None = None, interval: float | None = None):
        self.workspace, self.slots = workspace, slots
        self.interval = WATCHDOG_SECONDS if interval is None else interval
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._pause = self.interval

    def check(self) -> int | None:
        """Start a worker if none runs (or is starting) here; returns the new worker's pid."""
        if self.proc is not None and self.proc.poll() is None:
            return None  # ours is alive (perhaps still importing, before it takes the lock)
        if worker_running(self.workspace):
            return None  # another process's worker serves this workspace
        if self.proc is not None:  # ours died: reaped by poll() above
            quick = time.monotonic() - self._started_at < 60
            self._pause = min(self._pause * 2, 300.0) if quick else self.interval
            log.warning("the job worker (pid %s) stopped with status %s; starting a new one",
                        self.proc.pid, self.proc.returncode)
            self.restarts += 1
        self.proc = _spawn_worker(self.workspace, self.slots)
        self._started_at = time.monotonic()
        return self.proc.pid if self.proc else None

    def start(self) -> LocalWorkerWatchdog:
        pid = self.check()
        log.info("job worker: %s", f"started (pid {pid})" if pid else "already running")
        self._thread = threading.Thread(target=self._run, daemon=True, name="obt-eval-worker-watchdog")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._pause if self.proc is not None and self.proc.poll() is not None
                                  else self.interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 — the watchdog must outlive a failed start
                log.warning("could not start the job worker: %s", exc)

    def stop(self) -> None:
        """Stop watching (the worker itself keeps running: jobs outlive the app)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run obt-eval jobs from the queue.")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--slots", type=int, default=None)
    args = parser.parse_args(argv)
    run_worker(Workspace.at(args.workspace), args.slots)


if __name__ == "__main__":
    main()
