"""The job API the app and the CLI call: submit, list, look at, cancel and resume jobs.

A job is a row in the `jobs` table (the truth about its state) plus a folder ``workspace/jobs/<id>/``
with its spec, log, progress and result files. Cancelling only writes the row (and, when the job runs
on this machine, kills its process group at once); the worker that runs the job watches the row and
kills the job wherever it runs.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from db.engine import Database, open_database
from db.models import Job, utcnow
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.workspace import Workspace
from pipelines.progress import read_progress

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("done", "failed", "cancelled")
LOG_FILE = "log.txt"
WAITING = "waiting for a worker"
NO_WORKER = "no worker is running: start `obt-eval worker` (or the app, which starts one)"


@functools.lru_cache(maxsize=8)
def _database(root: str, url: str | None) -> Database:
    return open_database(url=url, workspace_root=root)


def database(workspace: Workspace) -> Database:
    """The workspace's database, opened (and migrated) once per process."""
    return _database(str(Path(workspace.root).resolve()), os.environ.get("OBT_EVAL_DB"))


def database_url_for(workspace: Workspace) -> str:
    from db.engine import database_url

    return database_url(str(Path(workspace.root).resolve()))


def job_dir(workspace: Workspace, job_id: int) -> Path:
    return Path(workspace.root) / "jobs" / str(job_id)


@dataclass
class JobView:
    """A job as shown to users: the row plus its live progress message and the tail of its log."""

    id: int
    kind: str
    params: dict[str, Any]
    state: str
    progress: float
    message: str
    artifacts: dict[str, Any]
    error: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    pid: int | None
    log_path: str | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            out[key] = out[key].isoformat(timespec="seconds") if out[key] else None
        return out

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


def _any_worker(workspace: Workspace) -> bool:
    from pipelines.worker import live_workers, worker_running

    return worker_running(workspace) or bool(live_workers(workspace))


def _view(job: Job, workspace: Workspace, worker_seen: bool | None = None) -> JobView:
    """`worker_seen`: whether a worker serves the workspace (looked up here when None and the job waits)."""
    message = ""
    if job.state == "running":
        live = read_progress(job_dir(workspace, job.id))
        message = (live or {}).get("message", "")
    elif job.state == "queued":
        message = WAITING if (worker_seen if worker_seen is not None else _any_worker(workspace)) else NO_WORKER
    elif job.state == "failed":
        message = (job.error or "").splitlines()[0] if job.error else "failed"
    return JobView(id=job.id, kind=job.kind, params=dict(job.params or {}), state=job.state,
                   progress=float(job.progress or 0.0), message=message, artifacts=dict(job.artifacts or {}),
                   error=job.error, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, worker=job.worker, pid=job.pid, log_path=job.log_path)


def submit(kind: str, params: dict[str, Any] | None, workspace: Workspace, *, enqueue: bool = True) -> JobView:
    """Validate `params` for `kind`, store the job and put it on the queue; returns the new job."""
    from pipelines.params import defaults
    from pipelines.steps import get_step, parse

    parsed = parse(kind, params, workspace)
    stored = {**defaults(get_step(kind).params), **{k: getattr(parsed, k) for k in (params or {})}}
    db = database(workspace)
    with db.session() as s:
        job = Job(kind=kind, params=stored, state="queued", progress=0.0, artifacts={})
        s.add(job)
        s.flush()
        job.log_path = str(job_dir(workspace, job.id) / LOG_FILE)
        job_id = job.id
    if enqueue:
        _enqueue(job_id, workspace)
    return get(job_id, workspace)


def _enqueue(job_id: int, workspace: Workspace) -> None:
    from pipelines.queue import enqueue

    try:
        enqueue(job_id, workspace)
    except Exception as exc:  # noqa: BLE001 — a broker outage must show on the job, not vanish
        _finish(job_id, workspace, "failed", error=f"could not reach the job queue: {exc}", only_from=ACTIVE_STATES)
        raise BadInputError(f"job {job_id} could not be queued: {exc}",
                            "check OBT_EVAL_QUEUE_URL (or unset it to use the workspace's SQLite queue)") from exc


def get(job_id: int, workspace: Workspace) -> JobView:
    with database(workspace).session() as s:
        job = s.get(Job, int(job_id))
        if job is None:
            raise NotFoundError(f"no job {job_id}", "list jobs with `obt-eval jobs list`")
        return _view(job, workspace)


def list_jobs(workspace: Workspace, limit: int = 50, states: tuple[str, ...] | None = None) -> list[JobView]:
    with database(workspace).session() as s:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if states:
            query = query.where(Job.state.in_(states))
        rows = list(s.scalars(query))
        seen = _any_worker(workspace) if any(job.state == "queued" for job in rows) else None
        return [_view(job, workspace, seen) for job in rows]


def _finish(job_id: int, workspace: Workspace, state: str, *, error: str | None = None,
            only_from: tuple[str, ...] = ACTIVE_STATES, **values: Any) -> bool:
    """Move a job to a final state unless someone else already did (True when this call did it)."""
    with database(workspace).session() as s:
        result = s.execute(update(Job).where(Job.id == job_id, Job.state.in_(only_from))
                           .values(state=state, error=error, finished_at=utcnow(), **values))
        return result.rowcount == 1


def cancel(job_id: int, workspace: Workspace) -> JobView:
    """Cancel a queued or running job; a running job's process group is killed."""
    job = get(job_id, workspace)
    if job.state not in ACTIVE_STATES:
        raise BadInputError(f"job {job_id} is {job.state}; only queued or running jobs can be cancelled")
    _finish(job_id, workspace, "cancelled", error="cancelled by the user")
    # The watching worker kills the job too; doing it here as well makes a local cancel immediate.
    if job.state == "running" and job.pid and job.worker and job.worker.split(":")[0] == socket.gethostname():
        kill_group(job.pid)
    return get(job_id, workspace)


def resume(job_id: int, workspace: Workspace) -> JobView:
    """Queue a failed or cancelled job again; its step continues from the artifacts it already wrote."""
    job = get(job_id, workspace)
    if job.state not in ("failed", "cancelled"):
        raise BadInputError(f"job {job_id} is {job.state}; only failed or cancelled jobs can be resumed")
    with database(workspace).session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(state="queued", error=None, finished_at=None, pid=None))
    _enqueue(job_id, workspace)
    return get(job_id, workspace)


def kill_group(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group led by `pid` (the job's child); False when it is already gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def log_tail(path: str | os.PathLike | None, max_lines: int = 40, max_bytes: int = 64_000) -> str:
    """The end of a job's log, with progress-bar redraws (carriage returns) collapsed to their last state."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            raw = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):  # not splitlines(): it splits on "\r" too
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            lines.append(parts[-1])
    return "\n".join(lines[-max_lines:])
