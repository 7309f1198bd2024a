"""The queue backend choice (SQLite in the workspace, Redis for several machines) and database snapshots."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from app_helpers import WAIT_SECONDS
from huey import RedisHuey, SqliteHuey
from servers import require_module

from obt_eval.errors import BadInputError
from obt_eval_cli.main import run
from pipelines import jobs
from pipelines.backup import LATEST_NAME, backup_once, snapshot
from pipelines.queue import make_huey, queue_url


def test_default_queue_is_a_sqlite_file_in_the_workspace(workspace, monkeypatch):
    monkeypatch.delenv("OBT_EVAL_QUEUE_URL", raising=False)
    url = queue_url(workspace)
    assert url.startswith("sqlite:///") and url.endswith(f"{workspace.root.name}/queue.db")
    huey = make_huey(url)
    assert isinstance(huey, SqliteHuey)
    huey._obt_eval_task(41)
    assert huey.pending_count() == 1  # the message names the job id only


def test_redis_queue_url_selects_redis(workspace, monkeypatch):
    require_module("redis", "redis")
    monkeypatch.setenv("OBT_EVAL_QUEUE_URL", "redis://queue.invalid:6379/0")
    huey = make_huey(queue_url(workspace))  # building the client does not connect
    assert isinstance(huey, RedisHuey)
    with pytest.raises(BadInputError, match="unsupported queue URL"):
        make_huey("amqp://somewhere")


def test_a_real_redis_queue_carries_job_ids(redis_url):
    huey = make_huey(redis_url)
    assert isinstance(huey, RedisHuey)
    huey._obt_eval_task(7)
    huey._obt_eval_task(8)
    assert huey.pending_count() == 2
    assert [huey.dequeue().args for _ in range(2)] == [(7,), (8,)]  # first in, first out
    assert huey.pending_count() == 0


def test_unreachable_queue_fails_the_job_visibly(workspace, monkeypatch):
    require_module("redis", "redis")
    monkeypatch.setenv("OBT_EVAL_QUEUE_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(BadInputError, match="could not be queued"):
        jobs.submit("selftest", {}, workspace)
    [job] = jobs.list_jobs(workspace)
    assert job.state == "failed" and "job queue" in job.error


def _busy_database(path):
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE ratings (id INTEGER PRIMARY KEY, score INTEGER)")
    con.commit()
    return con


def test_snapshot_is_a_consistent_sqlite_file_while_the_app_writes(tmp_path):
    db = tmp_path / "live.db"
    con = _busy_database(db)
    stop, wrote = threading.Event(), threading.Event()

    def writer() -> None:
        w = sqlite3.connect(db, timeout=10)
        while not stop.is_set():
            w.execute("INSERT INTO ratings (score) VALUES (3)")
            w.commit()
            wrote.set()
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert wrote.wait(WAIT_SECONDS)  # the app is writing
    try:
        out = snapshot(db, tmp_path / "snap" / "copy.db")
    finally:
        stop.set()
        thread.join()
    check = sqlite3.connect(out)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained, no -wal needed
    assert check.execute("SELECT count(*) FROM ratings").fetchone()[0] > 0
    con.close()


class FakeHub:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_file(self, **kwargs):
        self.calls.append(("upload_file", kwargs["path_in_repo"], kwargs))


def test_backup_uploads_to_a_private_dataset(tmp_path):
    db = tmp_path / "live.db"
    _busy_database(db).close()
    hub = FakeHub()
    summary = backup_once(f"sqlite:///{db}", tmp_path / "backups", "org/obt-eval-db", "token", api=hub)
    assert summary["uploaded"].startswith("org/obt-eval-db:snapshots/obt_eval-")
    create = hub.calls[0]
    assert create[0] == "create_repo" and create[2]["private"] is True and create[2]["repo_type"] == "dataset"
    uploaded = [c[1] for c in hub.calls if c[0] == "upload_file"]
    assert LATEST_NAME in uploaded and any(u.startswith("snapshots/") for u in uploaded)
    assert all(c[2]["repo_type"] == "dataset" for c in hub.calls if c[0] == "upload_file")


def test_backup_cli_snapshots_the_workspace_database(workspace, capsys):
    jobs.submit("selftest", {}, workspace, enqueue=False)  # creates the database
    assert run(["backup", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    con = sqlite3.connect(summary["snapshot"])
    assert con.execute("SELECT kind FROM jobs").fetchall() == [("selftest",)]
    assert summary["uploaded"] is None
    with pytest.raises(BadInputError, match="pg_dump"):
        backup_once("postgresql://x/y", workspace.root)


def test_a_failed_upload_is_a_clear_error_and_keeps_the_snapshot(workspace, capsys, monkeypatch):
    jobs.submit("selftest", {}, workspace, enqueue=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as without network: the Hub client refuses to connect
    assert run(["backup", "--repo", "org/obt-eval-db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "uploading it to org/obt-eval-db failed" in err, err
    assert "Traceback" not in err and "what to do:" in err
    assert (workspace.root / "backups" / "obt_eval-snapshot.db").exists()
