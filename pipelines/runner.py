"""How a worker runs one job: claim the row, start the child process, watch it, record the outcome.

The child runs in its own process group (pid recorded on the row), so cancel kills the whole job; a worker
forks it from its warm fork server (`pipelines.launcher`).
While it runs, the worker copies its progress file to the row every second and watches the row for a
cancel. When a worker starts, jobs that its machine was running when a previous worker died are marked
failed (they can be resumed: every step continues from its artifacts).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select, update

from db.models import Job, utcnow
from obt_eval.processes import pid_alive
from obt_eval.workspace import Workspace
from pipelines import jobs, launcher
from pipelines.child import ENV_WORKER_PID, ERROR_FILE, RESULT_FILE, SPEC_FILE
from pipelines.progress import read_progress
from pipelines.slots import gpu_count, gpu_slot, slot_device

POLL_SECONDS = 0.5
KILL_GRACE_SECONDS = 10.0  # after SIGTERM, how long a cancelled job may take to clean up before SIGKILL
CRASH_MESSAGE = "the worker stopped while this job was running (crash or restart); resume it to continue"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int | None, marker: str | None = None) -> bool:
    """Is `pid` running (and, on Linux, is its command line ours — pids get reused)?"""
    if not pid_alive(pid):
        return False
    if marker:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return marker in cmdline
        except OSError:
            return True
    return True


def recover_orphans(workspace: Workspace) -> list[int]:
    """Mark failed the running jobs of this machine whose worker is gone (killing a child left behind)."""
    host = socket.gethostname()
    failed = []
    db = jobs.database(workspace)
    with db.session() as s:
        rows = s.scalars(select(Job).where(Job.state == "running")).all()
        candidates = [(j.id, j.worker, j.pid) for j in rows]
    for job_id, worker, pid in candidates:
        if not worker or worker.split(":")[0] != host:
            continue  # another machine's job: only its own workers can tell whether it still runs
        worker_pid = int(worker.rsplit(":", 1)[1]) if worker.rsplit(":", 1)[1].isdigit() else None
        if worker_pid != os.getpid() and _alive(worker_pid, "worker"):
            continue  # a live worker on this machine still watches it
        if _alive(pid, "pipelines.child"):
            jobs.kill_group(pid, signal.SIGKILL)
        if jobs._finish(job_id, workspace, "failed", error=CRASH_MESSAGE, only_from=("running",)):
            failed.append(job_id)
    for job_id in failed:
        _after_job(job_id, workspace)  # an experiment waiting on it learns that it stopped
    return failed


def _claim(job_id: int, workspace: Workspace) -> bool:
    with jobs.database(workspace).session() as s:
        won = s.execute(update(Job).where(Job.id == job_id, Job.state == "queued")
                        .values(state="running", started_at=utcnow(), finished_at=None, worker=worker_id(),
                                progress=0.0, error=None, pid=None)).rowcount
        return won == 1


def _state(job_id: int, workspace: Workspace) -> str | None:
    with jobs.database(workspace).session() as s:
        return s.scalar(select(Job.state).where(Job.id == job_id))


def _set(job_id: int, workspace: Workspace, **values) -> None:
    with jobs.database(workspace).session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def _child_env(workspace: Workspace, device_index: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["OBT_EVAL_HOME"] = str(Path(workspace.root).resolve())
    env["PYTHONUNBUFFERED"] = "1"
    env[ENV_WORKER_PID] = str(os.getpid())  # the child exits if this worker is gone before it starts
    if slot_device(device_index) == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = str(device_index)  # the child sees its slot's GPU as cuda:0
    return env


def execute(job_id: int, workspace: Workspace, slots: int | None = None) -> str:
    """Run job `job_id` to its end in a child process; returns the final state (or 'skipped')."""
    from pipelines.steps import get_step

    with jobs.database(workspace).session() as s:
        job = s.get(Job, job_id)
        if job is None or job.state != "queued":
            return "skipped"  # cancelled before it started, or a duplicate queue message
        kind, params = job.kind, dict(job.params or {})
    try:
        step = get_step(kind)
    except Exception as exc:  # noqa: BLE001 — a job this worker cannot run fails visibly
        jobs._finish(job_id, workspace, "failed", error=str(exc), only_from=("queued",))
        return "failed"
    count = gpu_count() if slots is None else slots
    slot_context = gpu_slot(count) if step.gpu else _no_slot()
    with slot_context as device_index:
        if not _claim(job_id, workspace):
            return "skipped"
        state = _run_child(job_id, kind, params, workspace, device_index)
    _after_job(job_id, workspace)  # the slot is free again: what waited on this job may start on it
    return state


# Called (in the worker) after every job ends, so an experiment submits the stages that waited on it even
# when no CLI or app process is watching it.
FINISH_HOOKS = ("pipelines.experiments.coordinator:job_finished",)


def _after_job(job_id: int, workspace: Workspace) -> None:
    import importlib

    for ref in FINISH_HOOKS:
        module, _, name = ref.partition(":")
        try:
            getattr(importlib.import_module(module), name)(job_id, workspace)
        except Exception as exc:  # noqa: BLE001 — a hook's failure must not stop the worker
            print(f"worker: after job {job_id}, {ref} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


class _no_slot:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _run_child(job_id: int, kind: str, params: dict, workspace: Workspace, device_index: int | None) -> str:
    folder = jobs.job_dir(workspace, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (RESULT_FILE, ERROR_FILE):
        (folder / name).unlink(missing_ok=True)
    spec = {"job_id": job_id, "kind": kind, "params": params, "workspace": str(Path(workspace.root).resolve()),
            "device": slot_device(device_index)}
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")
    log_path = folder / jobs.LOG_FILE
    with open(log_path, "ab") as log:
        log.write(f"\n--- {utcnow().isoformat(timespec='seconds')} started on {worker_id()}\n".encode())
    proc = launcher.start(folder, _child_env(workspace, device_index), log_path, gpu=spec["device"] == "cuda")
    _set(job_id, workspace, pid=proc.pid, log_path=str(log_path))
    rc = _watch(job_id, workspace, proc, folder)
    return _record_outcome(job_id, workspace, folder, rc)


def _watch(job_id: int, workspace: Workspace, proc: launcher.JobProcess, folder: Path) -> int:
    last_fraction = -1.0
    killed_at: float | None = None
    next_check = 0.0
    while True:
        try:
            return proc.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now < next_check:
            continue
        next_check = now + 1.0
        try:
            live = read_progress(folder)
            if live and live.get("fraction") != last_fraction:
                last_fraction = float(live["fraction"])
                _set(job_id, workspace, progress=last_fraction)
            state = _state(job_id, workspace)
        except Exception as exc:  # noqa: BLE001 — a database hiccup must not orphan the child
            print(f"worker: could not update job {job_id}: {exc}", file=sys.stderr)
            continue
        if state == "cancelled":
            if killed_at is None:
                jobs.kill_group(proc.pid, signal.SIGTERM)
                killed_at = now
            elif now - killed_at > KILL_GRACE_SECONDS:
                jobs.kill_group(proc.pid, signal.SIGKILL)


def _record_outcome(job_id: int, workspace: Workspace, folder: Path, rc: int) -> str:
    if rc == 0 and (folder / RESULT_FILE).exists():
        artifacts = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8")).get("artifacts", {})
        if jobs._finish(job_id, workspace, "done", only_from=("running",), progress=1.0, artifacts=artifacts):
            return "done"
        return _state(job_id, workspace) or "done"
    if (folder / ERROR_FILE).exists():
        error = json.loads((folder / ERROR_FILE).read_text(encoding="utf-8")).get("error", "failed")
    elif rc < 0:
        error = f"the job's process was killed by signal {-rc}"
    else:
        error = f"the job's process exited with status {rc}; see its log"
    if jobs._finish(job_id, workspace, "failed", error=error, only_from=("running",)):
        return "failed"
    return _state(job_id, workspace) or "failed"  # cancelled while running: keep "cancelled"
