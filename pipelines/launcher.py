"""How the worker starts a job's process: forked from its warm fork server, or as a fresh Python.

Every job runs in a process of its own (see `pipelines.child`). A fresh interpreter spends seconds importing
torch, numpy, scipy and pandas before the job does anything — about 5 s on a quiet 2-core machine, 10-15 s
under load, on every stage of an experiment. The worker therefore keeps one fork server
(``python -m pipelines.child --serve``) that has imported them once and forks a process per job. The job's
process is the same either way: its own process group, its environment, its log, its exit status.

The fresh-Python path stays: for GPU jobs, outside a worker, when ``OBT_EVAL_FORKSERVER=0``, while the server is still
importing (right after the worker starts), when the environment changed since the server started (modules read
some variables when they are imported), and whenever the server is not usable (it is then started again).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Protocol

from obt_eval.processes import pid_alive
from pipelines.child import ENV_WORKER_PID

ENV_FORKSERVER = "OBT_EVAL_FORKSERVER"  # "0": start every job as a fresh Python process
REPO = Path(__file__).resolve().parent.parent
# Set per job (runner._child_env): not part of the environment the server's imports saw.
PER_JOB = frozenset({"OBT_EVAL_HOME", "PYTHONUNBUFFERED", ENV_WORKER_PID, "CUDA_VISIBLE_DEVICES"})
START_TIMEOUT = 600.0  # seconds for the server to answer a start (its first answer waits for its imports)


class JobProcess(Protocol):
    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


def start(folder: Path, env: dict[str, str], log_path: Path, gpu: bool = False) -> JobProcess:
    """Start the job in `folder` with `env`, stdout and stderr appended to `log_path`. A job on a GPU (`gpu`) is
    always a fresh Python: CUDA must first start in a process that has never forked, with the slot's
    CUDA_VISIBLE_DEVICES, and its imports are nothing beside minutes of GPU work."""
    server = None if gpu else _server_for(env)
    if server is not None:
        proc = server.start(folder, env, log_path)
        if proc is not None:
            return proc
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pipelines.child", str(folder)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=str(REPO))


_enabled = False
_server: ForkServer | None = None
_lock = threading.Lock()


def enable() -> None:
    """Use a fork server in this process (the worker calls it from its main thread, which lives as long as the
    worker: the server dies with the thread that started it) and start warming it up now."""
    global _enabled
    if os.environ.get(ENV_FORKSERVER, "1") == "0":
        return
    _enabled = True
    _server_for(dict(os.environ))


def _base(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in PER_JOB}


def _server_for(env: dict[str, str]) -> ForkServer | None:
    global _server
    if not _enabled:
        return None
    with _lock:
        if _server is not None and not _server.usable():
            _server = None
        if _server is None:
            try:
                _server = ForkServer(_base(env))
            except OSError as exc:
                print(f"worker: could not start the job fork server: {exc}", file=sys.stderr)
                return None
        # Until it has imported everything, a fresh Python starts the job sooner than waiting for the server would.
        return _server if _server.base_env == _base(env) and _server.ready.is_set() else None


class _Forked:
    """A job process forked by the server: its exit status comes from the server, which is its parent."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def ended(self, returncode: int) -> None:
        self.returncode = returncode
        self._ended.set()

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"job process {self.pid}", timeout)
        return self.returncode  # type: ignore[return-value]


class ForkServer:
    def __init__(self, base_env: dict[str, str]):
        self.base_env = base_env
        env = {**base_env, ENV_WORKER_PID: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        # Its own session: a Ctrl-C or a signal to the worker's process group does not reach it (the worker's
        # exit does: its stdin closes, and its death signal fires).
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.child", "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, start_new_session=True, cwd=str(REPO))
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._starts: dict[int, list] = {}  # request id -> [event, pid or error]
        self._running: dict[int, _Forked] = {}
        self._closed = False
        self.ready = threading.Event()  # set once the server has imported PRELOAD and waits for jobs
        threading.Thread(target=self._read, daemon=True, name="job-fork-server").start()

    def usable(self) -> bool:
        return not self._closed and self.proc.poll() is None

    def start(self, folder: Path, env: dict[str, str], log_path: Path) -> _Forked | None:
        """The forked job process, or None when the server could not start it (the caller then spawns one)."""
        request_id = next(self._ids)
        answer: list = [threading.Event(), None]
        with self._state_lock:
            if self._closed:
                return None
            self._starts[request_id] = answer
        line = json.dumps({"id": request_id, "dir": str(folder), "log": str(log_path), "env": env,
                           "cwd": str(REPO)}) + "\n"
        try:
            with self._write_lock:
                self.proc.stdin.write(line.encode())
                self.proc.stdin.flush()
        except (OSError, ValueError):
            self._close()
            return None
        if not answer[0].wait(START_TIMEOUT) or not isinstance(answer[1], _Forked):
            if answer[1] is not None and not isinstance(answer[1], _Forked):
                print(f"worker: the job fork server could not start a job: {answer[1]}", file=sys.stderr)
            else:  # no answer: a stuck server is no use; a new one starts for the next job
                self.proc.kill()
            return None
        return answer[1]

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                continue
            with self._state_lock:
                if message.get("ready"):
                    self.ready.set()
                elif "id" in message:
                    answer = self._starts.pop(message["id"], None)
                    if answer is None:
                        continue
                    if "pid" in message:
                        answer[1] = self._running[message["pid"]] = _Forked(message["pid"])
                    else:
                        answer[1] = message.get("error", "no pid")
                    answer[0].set()
                elif "returncode" in message:
                    proc = self._running.pop(message["pid"], None)
                    if proc is not None:
                        proc.ended(int(message["returncode"]))
        self._close()

    def _close(self) -> None:
        """The server is gone: starts waiting on it fail over to a fresh process; its jobs (killed by their
        death signal when it died) end as killed by SIGTERM once they are gone."""
        with self._state_lock:
            self._closed = True
            starts, self._starts = list(self._starts.values()), {}
            orphans, self._running = list(self._running.values()), {}
        for answer in starts:
            answer[0].set()
        if orphans:
            threading.Thread(target=_wait_gone, args=(orphans,), daemon=True).start()


def _wait_gone(procs: list[_Forked]) -> None:
    import signal
    import time

    while procs:
        for proc in [p for p in procs if not _running(p.pid)]:
            proc.ended(-signal.SIGTERM)
            procs.remove(proc)
        time.sleep(0.2)


def _running(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
