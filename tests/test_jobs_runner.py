"""The job runner: jobs run in worker processes, report progress and logs, can be cancelled, survive crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from app_helpers import alive, stop_workers, wait_job, worker_pids

from obt_eval.errors import BadInputError
from pipelines import jobs
from pipelines.runner import CRASH_MESSAGE
from pipelines.worker import start_local_worker, worker_running


@pytest.fixture
def worker(workspace):
    """A detached local worker (as the app starts it) on one CPU slot; stopped after the test."""
    pid = start_local_worker(workspace, slots=0)
    assert pid is not None
    yield pid
    stop_workers(workspace.root)


def test_job_runs_in_a_worker_with_progress_log_and_artifacts(workspace, worker):
    job = jobs.submit("selftest", {"seconds": 1.5}, workspace)
    assert job.state == "queued" and job.params == {"seconds": 1.5, "fail": False}
    seen_running = wait_job(job.id, workspace, states=("running",), timeout=30)
    assert seen_running.worker and seen_running.pid
    done = wait_job(job.id, workspace)
    assert done.state == "done", done.error
    assert done.progress == 1.0
    assert Path(done.artifacts["file"]).read_text().startswith("counted 15 ticks")
    tail = jobs.log_tail(done.log_path)
    assert "selftest" in tail and "job finished" in tail
    assert "\r" not in tail  # progress-bar redraws collapsed
    progress = json.loads((jobs.job_dir(workspace, job.id) / "progress.json").read_text())
    assert progress["fraction"] == 1.0
    assert worker_running(workspace)


def test_a_failing_step_is_recorded_with_its_reason_and_the_worker_goes_on(workspace, worker):
    bad = jobs.submit("selftest", {"seconds": 0.4, "fail": True}, workspace)
    good = jobs.submit("selftest", {"seconds": 0.2}, workspace)
    failed = wait_job(bad.id, workspace)
    assert failed.state == "failed"
    assert "selftest asked to fail" in failed.error
    assert wait_job(good.id, workspace).state == "done"


def test_cancel_kills_the_jobs_process_group(workspace, worker):
    job = jobs.submit("selftest", {"seconds": 60}, workspace)
    running = wait_job(job.id, workspace, states=("running",), timeout=30)
    deadline = time.monotonic() + 10
    while not jobs.get(job.id, workspace).pid and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = jobs.get(job.id, workspace).pid
    assert pid and alive(pid), running
    assert jobs.cancel(job.id, workspace).state == "cancelled"
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    time.sleep(1.0)  # the worker records the outcome; a cancelled job stays cancelled
    assert jobs.get(job.id, workspace).state == "cancelled"
    with pytest.raises(BadInputError):
        jobs.cancel(job.id, workspace)
    # the worker is free for the next job
    assert wait_job(jobs.submit("selftest", {"seconds": 0.2}, workspace).id, workspace).state == "done"


def test_a_job_killed_by_a_worker_crash_is_marked_failed_and_resumes(workspace):
    job = jobs.submit("selftest", {"seconds": 30}, workspace)
    pid = start_local_worker(workspace, slots=0)
    try:
        wait_job(job.id, workspace, states=("running",), timeout=30)
        deadline = time.monotonic() + 10
        while not jobs.get(job.id, workspace).pid and time.monotonic() < deadline:
            time.sleep(0.1)
        child = jobs.get(job.id, workspace).pid
        os.kill(pid, signal.SIGKILL)  # the worker crashes; its child gets SIGTERM (PR_SET_PDEATHSIG)
        deadline = time.monotonic() + 10
        while (alive(pid) or alive(child)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
        assert jobs.get(job.id, workspace).state == "running"  # nobody has noticed yet
        assert start_local_worker(workspace, slots=0) is not None  # a new worker notices at start
        failed = wait_job(job.id, workspace, states=("failed",), timeout=30)
        assert failed.error == CRASH_MESSAGE
        with jobs.database(workspace).session() as s:  # make the resumed run short
            from db.models import Job

            s.get(Job, job.id).params = {"seconds": 0.3, "fail": False}
        assert jobs.resume(job.id, workspace).state == "queued"
        assert wait_job(job.id, workspace).state == "done"
    finally:
        stop_workers(workspace.root)
    assert not worker_pids(workspace.root)


def test_child_process_reports_tqdm_progress_without_a_database(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps({"job_id": 1, "kind": "selftest", "params": {"seconds": 0.3},
                                                  "workspace": str(tmp_path / "ws")}))
    proc = subprocess.run([sys.executable, "-m", "pipelines.child", str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((folder / "result.json").read_text())["artifacts"]["ticks"] == 3
    progress = json.loads((folder / "progress.json").read_text())
    assert progress["fraction"] == 1.0 and progress["bar"]["total"] == 1
    (folder / "spec.json").write_text(json.dumps({"job_id": 2, "kind": "ingest", "params": {"name": "x"},
                                                  "workspace": str(tmp_path / "ws")}))
    proc = subprocess.run([sys.executable, "-m", "pipelines.child", str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert proc.returncode == 3
    assert "audio_dir" in json.loads((folder / "error.json").read_text())["error"]


def test_parameters_are_checked_when_a_job_is_submitted(workspace):
    with pytest.raises(BadInputError, match="unknown parameters"):
        jobs.submit("selftest", {"secs": 1}, workspace, enqueue=False)
    with pytest.raises(BadInputError, match="needs the parameter 'corpus'"):
        jobs.submit("extract", {"encoder": "mfcc"}, workspace, enqueue=False)
    with pytest.raises(BadInputError, match="expected an integer"):
        jobs.submit("units", {"features": "x", "k": "many"}, workspace, enqueue=False)
    with pytest.raises(BadInputError, match="unknown job kind"):
        jobs.submit("train-everything", {}, workspace, enqueue=False)
    job = jobs.submit("units", {"features": "x", "k": "50"}, workspace, enqueue=False)
    assert job.params["k"] == 50 and job.params["n_init"] == 10
    assert [j.id for j in jobs.list_jobs(workspace)] == [job.id]


def test_one_gpu_job_per_slot(monkeypatch):
    from pipelines import slots

    monkeypatch.setattr(slots, "lock_dir", lambda: Path(os.environ.get("TMPDIR", "/tmp")) / f"slots-{os.getpid()}")
    slots.lock_dir().mkdir(exist_ok=True)
    inside, peak, lock = [0], [0], threading.Lock()

    def job() -> None:
        with slots.gpu_slot(1, poll=0.02) as index:
            assert index == 0
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.15)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    with slots.gpu_slot(2) as a, slots.gpu_slot(2) as b:
        assert {a, b} == {0, 1}  # two GPUs: two jobs at once, on different devices


def test_log_tail_collapses_progress_redraws(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("start\nbar 1%\rbar 50%\rbar 100%\nend\n")
    assert jobs.log_tail(log) == "start\nbar 100%\nend"
    assert jobs.log_tail(tmp_path / "missing.txt") == ""
