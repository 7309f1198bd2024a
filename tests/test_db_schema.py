"""The database: migrations build exactly the models' schema, SQLite pragmas, jobs table, URL selection."""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from db import open_database
from db.engine import database_url
from db.migrate import current_revision, upgrade_to_head
from db.models import Base, Job


def test_migration_matches_models_and_is_idempotent(db_url):
    database = open_database(db_url)
    upgrade_to_head(database.engine)  # a second upgrade is a no-op
    assert current_revision(database.engine) == "0002"
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    database.dispose()


def test_sqlite_pragmas(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar().lower() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
    database.dispose()


def test_url_selection(tmp_path, monkeypatch):
    monkeypatch.delenv("OBT_EVAL_DB", raising=False)
    assert database_url(tmp_path) == f"sqlite:///{(tmp_path / 'obt_eval.db').resolve()}"
    monkeypatch.setenv("OBT_EVAL_DB", "postgresql+psycopg2://u@h/db")
    assert database_url(tmp_path).startswith("postgresql")
    assert database_url(tmp_path, "sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_jobs_table_round_trip(db_url):
    database = open_database(db_url)
    start = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    with database.session() as session:
        session.add(Job(kind="train-vocoder", params={"units": "u1", "steps": 10}, log_path="/tmp/log",
                        started_at=start, worker="w1", pid=42))
    with database.session() as session:
        job = session.scalar(select(Job))
        assert job.state == "queued" and job.progress == 0.0 and job.artifacts == {}
        assert job.params["steps"] == 10 and job.started_at == start  # timezone-aware UTC back out
        job.state, job.progress, job.artifacts = "done", 1.0, {"checkpoint": "c.pt"}
    with database.session() as session:
        assert session.scalar(select(Job.state)) == "done"
    database.dispose()


def test_layers_do_not_leak():
    """db never pulls in torch or gradio; the study library never pulls in db."""
    import subprocess
    import sys

    code = ("import sys, db.protocol, db.studies, db.migrate; assert 'torch' not in sys.modules "
            "and 'gradio' not in sys.modules; "
            "[sys.modules.pop(m) for m in list(sys.modules) if m == 'db' or m.startswith('db.')]; "
            "import obt_eval.study.prepare, obt_eval.study.statistics, obt_eval.study.power; "
            "assert not any(m == 'db' or m.startswith('db.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
