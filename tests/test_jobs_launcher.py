"""The worker's fork server: jobs forked from a warm interpreter are the processes a fresh Python would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from app_helpers import WAIT_SECONDS, alive, wait_for

from pipelines import jobs, launcher


@pytest.fixture
def forking(monkeypatch):
    """The launcher as a worker uses it (fork server on); the server it starts is closed after the test."""
    monkeypatch.setattr(launcher, "_enabled", True)
    monkeypatch.setattr(launcher, "_server", None)
    yield
    server = launcher._server
    if server is not None and server.proc.poll() is None:
        server.proc.stdin.close()
        server.proc.wait(timeout=WAIT_SECONDS)


def job_folder(tmp_path: Path, name: str, **params) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps({"job_id": 1, "kind": "selftest", "params": params,
                                                  "workspace": str(tmp_path / "ws")}))
    return folder


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def warm(env: dict[str, str]) -> launcher.ForkServer:
    """Start the launcher's server for `env` and wait until it has imported what it pre-imports."""
    launcher._server_for(env)
    assert launcher._server.ready.wait(WAIT_SECONDS)
    return launcher._server


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}


def test_a_forked_job_has_its_own_group_environment_log_and_exit_status(tmp_path, forking):
    env = {**base_env(), "CUDA_VISIBLE_DEVICES": "1", "OBT_EVAL_HOME": str(tmp_path / "ws")}
    ok = job_folder(tmp_path, "ok", seconds=0.2)
    cold = launcher.start(ok, env, ok / "log.txt")  # the server is still importing: a fresh Python runs it
    assert isinstance(cold, subprocess.Popen) and cold.wait(WAIT_SECONDS) == 0
    warm(env)
    proc = launcher.start(ok, env, ok / "log.txt")
    assert not isinstance(proc, subprocess.Popen)  # forked by the server, not a fresh Python
    assert proc.wait(WAIT_SECONDS) == 0
    artifacts = json.loads((ok / "result.json").read_text())["artifacts"]
    assert artifacts["ticks"] == 2 and artifacts["visible_gpus"] == "1"  # the job's env, not the server's
    assert "job finished" in (ok / "log.txt").read_text()  # stdout and stderr go to the job's log

    bad = job_folder(tmp_path, "bad", seconds=0.4, fail=True)
    assert launcher.start(bad, env, bad / "log.txt").wait(WAIT_SECONDS) == 3  # a user error, as from a fresh child
    assert "selftest asked to fail" in json.loads((bad / "error.json").read_text())["error"]

    long = job_folder(tmp_path, "long", seconds=600)
    proc = launcher.start(long, env, long / "log.txt")
    wait_for(lambda: (long / "progress.json").exists(), what="the long job to start")
    assert os.getpgid(proc.pid) == proc.pid  # its own process group, which cancel kills
    assert parent_of(proc.pid) == launcher._server.proc.pid
    assert jobs.kill_group(proc.pid, signal.SIGTERM)
    assert proc.wait(WAIT_SECONDS) == 143  # SIGTERM ends the step through its cleanup, as in a fresh child
    assert not (long / "result.json").exists()


def test_jobs_die_with_their_server_and_a_changed_environment_gets_a_fresh_process(tmp_path, forking):
    env = {**base_env(), "OBT_EVAL_HOME": str(tmp_path / "ws")}
    long = job_folder(tmp_path, "long", seconds=600)
    first = warm(env)
    proc = launcher.start(long, env, long / "log.txt")
    wait_for(lambda: (long / "progress.json").exists(), what="the long job to start")
    first.proc.kill()  # the server crashes: its job must not run on unwatched
    assert proc.wait(WAIT_SECONDS) == -signal.SIGTERM
    assert not alive(proc.pid)

    again = job_folder(tmp_path, "again", seconds=0.1)
    assert warm(env) is not first  # a new server serves the next jobs
    proc = launcher.start(again, env, again / "log.txt")
    assert not isinstance(proc, subprocess.Popen)
    assert proc.wait(WAIT_SECONDS) == 0

    gpu = job_folder(tmp_path, "gpu", seconds=0.1)  # a GPU job: CUDA starts in a process that never forked
    proc = launcher.start(gpu, {**env, "CUDA_VISIBLE_DEVICES": "0"}, gpu / "log.txt", gpu=True)
    assert isinstance(proc, subprocess.Popen) and proc.wait(WAIT_SECONDS) == 0
    assert json.loads((gpu / "result.json").read_text())["artifacts"]["visible_gpus"] == "0"

    # a variable that modules may read when imported changed since the server started: a fresh Python runs it
    changed = job_folder(tmp_path, "changed", seconds=0.1)
    proc = launcher.start(changed, {**env, "HF_HOME": str(tmp_path / "hf")}, changed / "log.txt")
    assert isinstance(proc, subprocess.Popen)
    assert proc.wait(WAIT_SECONDS) == 0 and (changed / "result.json").exists()
