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
from app_helpers import WAIT_SECONDS, alive, stop_workers, wait_for, wait_job, worker_pids

from obt_eval.errors import BadInputError
from pipelines import jobs
from pipelines.runner import CRASH_MESSAGE
from pipelines.worker import start_local_worker, worker_running


@pytest.fixture
def worker(workspace, job_backend):
    """A detached local worker (as the app starts it) on one CPU slot, on each job backend; stopped after the test."""
    pid = start_local_worker(workspace, slots=0)
    assert pid is not None
    yield pid
    stop_workers(workspace.root)


def test_job_runs_in_a_worker_with_progress_log_and_artifacts(workspace, worker):
    job = jobs.submit("selftest", {"seconds": 1.5}, workspace)
    assert job.state == "queued" and job.params == {"seconds": 1.5, "fail": False}
    assert wait_job(job.id, workspace, states=("running",)).worker  # claimed first, the pid follows
    assert wait_for(lambda: jobs.get(job.id, workspace).pid, what="the job's pid on its row")
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
    job = jobs.submit("selftest", {"seconds": 600}, workspace)
    wait_job(job.id, workspace, states=("running",))
    pid = wait_for(lambda: jobs.get(job.id, workspace).pid, what="the job's pid on its row")
    assert alive(pid)
    assert jobs.cancel(job.id, workspace).state == "cancelled"
    wait_for(lambda: not alive(pid), what=f"the job's process {pid} to end")
    with pytest.raises(BadInputError):
        jobs.cancel(job.id, workspace)
    # the worker is free for the next job (one slot: it has finished with the cancelled one) ...
    assert wait_job(jobs.submit("selftest", {"seconds": 0.2}, workspace).id, workspace).state == "done"
    # ... and recorded its outcome without overwriting the cancel
    assert jobs.get(job.id, workspace).state == "cancelled"


def test_a_job_killed_by_a_worker_crash_is_marked_failed_and_resumes(workspace, job_backend):
    job = jobs.submit("selftest", {"seconds": 600}, workspace)
    pid = start_local_worker(workspace, slots=0)
    try:
        wait_job(job.id, workspace, states=("running",))
        child = wait_for(lambda: jobs.get(job.id, workspace).pid, what="the job's pid on its row")
        # the step is under way (its first progress write comes after the child armed its death signal)
        wait_for(lambda: (jobs.job_dir(workspace, job.id) / "progress.json").exists(), what="the job's progress")
        os.kill(pid, signal.SIGKILL)  # the worker crashes; its child gets SIGTERM (PR_SET_PDEATHSIG)
        wait_for(lambda: not alive(pid) and not alive(child), what="the worker and its job to end")
        assert jobs.get(job.id, workspace).state == "running"  # nobody has noticed yet
        assert start_local_worker(workspace, slots=0) is not None  # a new worker notices at start
        failed = wait_job(job.id, workspace, states=("failed",))
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
                          cwd=Path(__file__).resolve().parent.parent, timeout=WAIT_SECONDS)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((folder / "result.json").read_text())["artifacts"]["ticks"] == 3
    progress = json.loads((folder / "progress.json").read_text())
    assert progress["fraction"] == 1.0 and progress["bar"]["total"] == 1
    (folder / "spec.json").write_text(json.dumps({"job_id": 2, "kind": "ingest", "params": {"name": "x"},
                                                  "workspace": str(tmp_path / "ws")}))
    proc = subprocess.run([sys.executable, "-m", "pipelines.child", str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=WAIT_SECONDS)
    assert proc.returncode == 3
    assert "audio_dir" in json.loads((folder / "error.json").read_text())["error"]


def test_a_job_whose_worker_died_while_it_started_does_not_run(tmp_path):
    """PR_SET_PDEATHSIG covers only a parent that dies after it is set: a child whose worker was killed while
    the child was still starting must notice and stop, not run for hours unwatched."""
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps({"job_id": 1, "kind": "selftest", "params": {"seconds": 0.3},
                                                  "workspace": str(tmp_path / "ws")}))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a worker pid that is not this child's parent any more
    proc = subprocess.run([sys.executable, "-m", "pipelines.child", str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=WAIT_SECONDS,
                          env={**os.environ, "OBT_EVAL_WORKER_PID": str(gone.pid)})
    assert proc.returncode == 143, proc.stderr
    assert "stopped before this job started" in proc.stderr
    assert not (folder / "result.json").exists() and not (folder / "selftest.txt").exists()


def test_parameters_are_checked_when_a_job_is_submitted(workspace):
    with pytest.raises(BadInputError, match="unknown parameters"):
        jobs.submit("selftest", {"secs": 1}, workspace, enqueue=False)
    with pytest.raises(BadInputError, match="needs the parameter 'corpus'"):
        jobs.submit("extract", {"encoder": "mfcc"}, workspace, enqueue=False)
    with pytest.raises(BadInputError, match="units.k must be a whole number from 2 to 65,536, got .many."):
        jobs.submit("units", {"features": "x", "k": "many"}, workspace, enqueue=False)
    with pytest.raises(BadInputError, match="unknown job kind"):
        jobs.submit("train-everything", {}, workspace, enqueue=False)
    job = jobs.submit("units", {"features": "x", "k": "50"}, workspace, enqueue=False)
    assert job.params["k"] == 50 and job.params["n_init"] == 3
    assert [j.id for j in jobs.list_jobs(workspace)] == [job.id]


def test_one_gpu_job_per_slot():
    from pipelines import slots

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


def test_a_job_runs_when_the_workspace_is_the_default_relative_folder(tmp_path, monkeypatch):
    """`./workspace` (the default) must mean the same folder in the job's process, which runs elsewhere."""
    from obt_eval.workspace import Workspace
    from pipelines.runner import execute

    monkeypatch.chdir(tmp_path)
    for name in ("OBT_EVAL_HOME", "OBT_EVAL_DB", "OBT_EVAL_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    job = jobs.submit("selftest", {"seconds": 0.2}, Workspace.at(), enqueue=False)
    assert execute(job.id, Workspace.at("workspace"), slots=0) == "done", jobs.get(job.id, Workspace.at()).error
    done = jobs.get(job.id, Workspace.at())
    assert Path(done.artifacts["file"]) == tmp_path / "workspace" / "jobs" / str(job.id) / "selftest.txt"
