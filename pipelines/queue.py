"""The job queue: huey, on a SQLite file in the workspace by default, or Redis for several GPU machines.

Set ``OBT_EVAL_QUEUE_URL=redis://host:6379/0`` on the app and on every worker machine to share one
queue (needs the `redis` package: ``pip install obt-eval[redis]``). A queue message carries only the
job id; the job's kind and parameters are read from the database, which stays the one truth.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey

from obt_eval.errors import BadInputError
from obt_eval.workspace import Workspace

ENV_QUEUE_URL = "OBT_EVAL_QUEUE_URL"
QUEUE_NAME = "obt-eval-jobs"
QUEUE_FILE = "queue.db"

_lock = threading.Lock()
_instances: dict[str, tuple[Huey, object]] = {}
# the worker's workspace: a queue message names only a job, the worker runs it in its own workspace
_worker_workspace: Workspace | None = None
_worker_slots: int | None = None


def queue_url(workspace: Workspace) -> str:
    url = os.environ.get(ENV_QUEUE_URL, "").strip()
    if url:
        return url
    return f"sqlite:///{(Path(workspace.root) / QUEUE_FILE).resolve()}"


def make_huey(url: str) -> Huey:
    """A huey instance for `url` (`sqlite:///path` or `redis://…`), with the job task registered on it."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise BadInputError("a Redis queue needs the redis package", "pip install 'obt-eval[redis]'") from exc
        huey: Huey = RedisHuey(QUEUE_NAME, url=url, results=False)
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(QUEUE_NAME, filename=str(path), results=False, timeout=30)
    else:
        raise BadInputError(f"unsupported queue URL {url!r}", "use redis://host:port/db, or unset OBT_EVAL_QUEUE_URL")
    task = huey.task(name="run_job")(_run_job)
    huey._obt_eval_task = task  # type: ignore[attr-defined]
    return huey


def get_huey(workspace: Workspace) -> Huey:
    url = queue_url(workspace)
    with _lock:
        if url not in _instances:
            huey = make_huey(url)
            _instances[url] = (huey, huey._obt_eval_task)  # type: ignore[attr-defined]
        return _instances[url][0]


def enqueue(job_id: int, workspace: Workspace) -> None:
    huey = get_huey(workspace)
    huey._obt_eval_task(job_id)  # type: ignore[attr-defined]


def pending(workspace: Workspace) -> int:
    """Messages waiting in the queue (for the admin tab and `jobs list`)."""
    return get_huey(workspace).pending_count()


def set_worker_context(workspace: Workspace, slots: int | None) -> None:
    global _worker_workspace, _worker_slots
    _worker_workspace, _worker_slots = workspace, slots


def _run_job(job_id: int) -> str:
    from pipelines.runner import execute

    workspace = _worker_workspace or Workspace.at()
    return execute(int(job_id), workspace, _worker_slots)
