"""The worker process: a huey consumer that runs queued jobs, one per GPU slot (``obt-eval worker``).

It is a process of its own, so the web server never blocks on a job and jobs outlive an app restart.
The app starts one local worker (detached) when none runs on this machine for its workspace, so a new
user needs nothing else; GPU machines run ``obt-eval worker`` against a shared Redis queue.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

from obt_eval.workspace import Workspace

LOCK_FILE = ".worker.lock"
LOG_FILE = "worker.log"


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


def run_worker(workspace: Workspace, slots: int | None = None, recover: bool = True) -> None:
    """Serve the queue until SIGINT/SIGTERM; `slots` GPU slots (default: the GPUs here, or one CPU slot)."""
    from pipelines.queue import get_huey, set_worker_context
    from pipelines.runner import recover_orphans
    from pipelines.slots import gpu_count

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations report every plugin at INFO
    log = logging.getLogger("obt-eval.worker")
    holder = open(_lock_path(workspace), "a+")  # noqa: SIM115 — held for the life of the worker
    fcntl.flock(holder, fcntl.LOCK_SH)
    count = gpu_count() if slots is None else slots
    set_worker_context(workspace, count)
    if recover:
        failed = recover_orphans(workspace)
        if failed:
            log.warning("marked failed (interrupted by a previous crash, resumable): jobs %s", failed)
    huey = get_huey(workspace)
    log.info("worker %s serving %s with %d slot(s)", os.getpid(), workspace.root, max(count, 1))
    # max_delay: poll an idle queue at least every second, so a new job starts promptly
    consumer = huey.create_consumer(workers=max(count, 1), worker_type="thread", periodic=False,
                                    initial_delay=0.1, backoff=1.15, max_delay=1.0, check_worker_health=True)
    consumer.run()


def start_local_worker(workspace: Workspace, slots: int | None = None) -> int | None:
    """Start a detached worker for `workspace` unless one already runs here; returns its pid (or None)."""
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
    return proc.pid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run obt-eval jobs from the queue.")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--slots", type=int, default=None)
    args = parser.parse_args(argv)
    run_worker(Workspace.at(args.workspace), args.slots)


if __name__ == "__main__":
    main()
