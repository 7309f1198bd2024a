"""A dead job worker: the app starts a new one, and until one runs, waiting jobs say that no worker is running."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from app_helpers import stop_workers, wait_for, wait_job, worker_pids

from obt_eval_cli.main import run
from pipelines import jobs, worker
from pipelines.worker import live_workers, start_local_worker


@pytest.fixture
def no_local_env(monkeypatch):
    monkeypatch.delenv("OBT_EVAL_DB", raising=False)
    monkeypatch.delenv("OBT_EVAL_QUEUE_URL", raising=False)
    monkeypatch.setenv("OBT_EVAL_GPUS", "0")  # one CPU slot, and no torch import in the worker


def test_the_app_starts_a_new_worker_when_its_worker_dies(workspace, no_local_env, monkeypatch):
    from webapp.config import load_config
    from webapp.server import start_background

    monkeypatch.setattr(worker, "WATCHDOG_SECONDS", 0.2)
    watchdog = start_background(load_config(workspace.root, "127.0.0.1", 0, True))
    try:
        first = wait_for(lambda: worker_pids(workspace.root), what="the app's worker")
        wait_for(lambda: live_workers(workspace), what="the worker's heartbeat")
        os.kill(first[0], signal.SIGKILL)  # a crash (OOM kill, segfault): no clean-up, no goodbye
        second = wait_for(lambda: [p for p in worker_pids(workspace.root) if p not in first],
                          what="a new worker after the crash")
        assert watchdog.restarts == 1 and len(second) == 1
        job = jobs.submit("selftest", {"seconds": 0.2}, workspace)
        assert wait_job(job.id, workspace).state == "done"
        assert worker_pids(workspace.root) == second  # one worker, not one per check
    finally:
        watchdog.stop()
        stop_workers(workspace.root)


def test_a_waiting_job_says_when_no_worker_is_running(workspace, no_local_env, capsys):
    job = jobs.submit("selftest", {"seconds": 0.2}, workspace, enqueue=False)  # stays queued: never enqueued
    assert jobs.get(job.id, workspace).message == jobs.NO_WORKER
    assert run(["jobs", "list"]) == 0
    assert "no worker is running: start `obt-eval worker`" in capsys.readouterr().out
    pid = start_local_worker(workspace, slots=0)
    try:
        wait_for(lambda: jobs.get(job.id, workspace).message == jobs.WAITING, what="the worker to be seen")
        os.kill(pid, signal.SIGKILL)  # killed: its heartbeat file stays behind, its pid is gone
        wait_for(lambda: jobs.get(job.id, workspace).message == jobs.NO_WORKER, what="the dead worker to be noticed")
        assert [v.message for v in jobs.list_jobs(workspace)] == [jobs.NO_WORKER]
    finally:
        stop_workers(workspace.root)


def test_workers_on_other_machines_count_while_their_heartbeat_is_fresh(workspace, no_local_env):
    folder = workspace.root / "jobs" / worker.HEARTBEAT_DIR
    folder.mkdir(parents=True)
    beat = {"host": f"not-{socket.gethostname()}", "pid": 1, "slots": 4, "started": time.time()}
    (folder / "gpu-box-1.json").write_text(json.dumps({**beat, "beat": time.time()}))
    job = jobs.submit("selftest", {}, workspace, enqueue=False)
    assert [w["host"] for w in live_workers(workspace)] == [beat["host"]]
    assert jobs.get(job.id, workspace).message == jobs.WAITING
    (folder / "gpu-box-1.json").write_text(json.dumps({**beat, "beat": time.time() - 2 * worker.STALE_SECONDS}))
    assert live_workers(workspace) == []
    assert jobs.get(job.id, workspace).message == jobs.NO_WORKER
