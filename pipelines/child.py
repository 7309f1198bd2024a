"""The process one job runs in: ``python -m pipelines.child JOB_DIR``.

The worker starts it in its own process group, so cancelling kills the job and everything it started
(data loaders, torchrun ranks) without touching the worker. It reads ``spec.json``, runs the step, and
leaves ``result.json`` (artifacts) or ``error.json`` (what went wrong) beside its log; its exit status
says which. It never touches the database.

``python -m pipelines.child --serve`` is the worker's fork server: a warm interpreter that has imported
torch, numpy, scipy, pandas... once (seconds on every job start otherwise) and forks one process per job.
The forked process becomes exactly what ``python -m pipelines.child JOB_DIR`` would be: its own session
and process group, the job's environment, its log on stdout/stderr, the same exit statuses.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import select
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

ENV_WORKER_PID = "OBT_EVAL_WORKER_PID"  # set by the worker: the parent this child must not outlive
SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 3
# What the fork server imports once for every job: the third-party modules the steps' library code imports at
# module level or on first use (torch's optimizers import torch._dynamo) — about 5 s on a quiet 2-core machine,
# 10-15 s under load. obt_eval itself is imported afresh by each job (cheap), so a job runs the library code on
# disk. Nothing here may start CUDA (a job's CUDA_VISIBLE_DEVICES is set after the fork) or threads that fork
# cannot copy (the BLAS and Arrow pools handle it).
PRELOAD = ("numpy", "torch", "torch._dynamo", "scipy.signal", "scipy.stats", "scipy.ndimage", "pandas",
           "pyarrow.parquet", "numba", "librosa", "librosa.sequence", "librosa.effects", "librosa.feature",
           "librosa.filters", "soundfile", "soxr", "pyloudnorm", "pystoi", "pydantic", "sqlalchemy")


def _die_with_parent() -> None:
    # If the worker is killed (OOM, SIGKILL), its children get SIGTERM instead of running on unwatched.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    # The signal only covers a parent that dies from now on: one that died while this process was starting
    # (a loaded machine takes seconds to start Python) has already handed it to another parent.
    expected = os.environ.get(ENV_WORKER_PID)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        print(f"the worker (pid {expected}) stopped before this job started; not running it", file=sys.stderr)
        sys.exit(143)


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def main(job_dir: str) -> int:
    _die_with_parent()
    # SIGTERM as an exception: `finally` blocks and atomic writers clean up their temporary files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(job_dir)
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    from pipelines import progress

    bar = progress.install(folder)  # before any library import binds the plain tqdm
    from obt_eval.errors import ObtEvalError
    from obt_eval.workspace import Workspace
    from pipelines.steps import StepContext, get_step, parse

    print(f"job {spec.get('job_id')}: {spec['kind']} {json.dumps(spec.get('params', {}))}", flush=True)
    try:
        step = get_step(spec["kind"])
        workspace = Workspace.at(spec["workspace"])
        params = parse(spec["kind"], spec.get("params"), workspace)  # checked again: the row may have been edited
        ctx = StepContext(workspace=workspace, job_dir=folder, progress=bar,
                          device=spec.get("device"), job_id=spec.get("job_id"))
        artifacts = step.run(params, ctx)
    except ObtEvalError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        _write(folder / ERROR_FILE, {"error": str(exc), "user_error": True})
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 — any failure of the step is reported, not raised past the job
        traceback.print_exc()
        _write(folder / ERROR_FILE, {"error": f"{type(exc).__name__}: {exc}", "user_error": False})
        return EXIT_FAILED
    bar.stage(bar.stage_count - 1, bar.stage_count, "finishing")
    bar.bar = {"n": 1, "total": 1}
    bar.write(force=True)
    _write(folder / RESULT_FILE, {"artifacts": artifacts})
    print("job finished", flush=True)
    return EXIT_OK


def serve() -> dict[str, Any] | None:
    """The fork server's loop: read job requests (one JSON line each) on stdin, fork a process per job, and
    answer on stdout with its pid, later with its exit status. Returns None when the worker has gone (stdin
    closed), or, in a forked process, the request that process is to run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the worker's terminal lets its jobs finish
    _die_with_parent()
    from pipelines import progress

    progress.use_job_tqdm()  # before the library binds the plain tqdm (the jobs import it after the fork)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.freeze()  # the jobs' garbage collections leave the imported objects (and their shared pages) alone
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # a stray print must not break the protocol on the reply pipe
    _send(replies, {"ready": True})
    pending = b""
    while True:
        ready = select.select([requests], [], [], 0.1)[0]
        _reap(replies)
        if not ready:
            continue
        chunk = os.read(requests, 1 << 16)
        if not chunk:
            return None  # the worker is gone: so are its jobs (they get SIGTERM through their death signal)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            server = os.getpid()
            try:
                pid = os.fork()
            except OSError as exc:
                _send(replies, {"id": request["id"], "error": f"fork failed: {exc}"})
                continue
            if pid == 0:
                os.close(requests)
                os.close(replies)
                request["env"][ENV_WORKER_PID] = str(server)  # the parent this process must not outlive
                return request
            _send(replies, {"id": request["id"], "pid": pid})


def _send(fd: int, message: dict) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _reap(replies: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(replies, {"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def become_job(request: dict[str, Any]) -> int:
    """In a process forked by the server: take on the job's session, environment, log and cwd, then run it."""
    os.setsid()  # its own process group: cancelling kills the job and whatever it started, nothing else
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if "numpy" in sys.modules:  # a fresh interpreter seeds numpy's global generator from the OS; so does each job
        sys.modules["numpy"].random.seed()
    return main(request["dir"])


def run_forked(request: dict[str, Any]) -> None:
    """Run the job in this forked process and end it. Not through the interpreter's teardown: that touches every
    object the server imported, which copies all their shared memory pages (seconds per job); the job's own
    exit work (atexit, non-daemon threads, output) is done."""
    try:
        code = become_job(request)
    except SystemExit as exc:  # SIGTERM (cancel) arrives as sys.exit(143)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 — what a fresh interpreter would print before exiting with 1
        traceback.print_exc()
        code = EXIT_FAILED
    try:
        import atexit
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # waits for non-daemon threads, as at a normal exit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        job = serve()
        if job is None:
            sys.exit(0)
        run_forked(job)
    sys.exit(main(sys.argv[1]))
