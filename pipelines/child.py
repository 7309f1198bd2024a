"""The process one job runs in: ``python -m pipelines.child JOB_DIR``.

The worker starts it in its own process group, so cancelling kills the job and everything it started
(data loaders, torchrun ranks) without touching the worker. It reads ``spec.json``, runs the step, and
leaves ``result.json`` (artifacts) or ``error.json`` (what went wrong) beside its log; its exit status
says which. It never touches the database.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

ENV_WORKER_PID = "OBT_EVAL_WORKER_PID"  # set by the worker: the parent this child must not outlive
SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 3


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
