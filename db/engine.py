"""Engine and sessions: SQLite in the workspace by default (WAL, foreign keys, busy timeout), or any URL.

``$OBT_EVAL_DB`` (any SQLAlchemy URL, e.g. postgresql+psycopg2://…) lets several app replicas share
one database. Opening a database migrates it to the newest schema (Alembic).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

ENV_DB = "OBT_EVAL_DB"
SQLITE_BUSY_TIMEOUT_MS = 15000  # TTS Arena 2026 uses 15 s; writers wait instead of failing


def database_url(workspace_root: str | os.PathLike | None = None, url: str | None = None) -> str:
    """An explicit URL, else $OBT_EVAL_DB, else SQLite at ``<workspace>/obt_eval.db``."""
    if url:
        return url
    if os.environ.get(ENV_DB):
        return os.environ[ENV_DB]
    from obt_eval.workspace import Workspace  # light import: no torch in obt_eval.workspace

    path = Workspace.at(workspace_root).database_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 — DB-API connection
            cur = dbapi_conn.cursor()
            # WAL lets the app read while a rating is written; only on local disk (not on a network bucket).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@dataclass
class Database:
    """An engine plus a session factory; `session()` commits on success and rolls back on error."""

    url: str
    engine: Engine
    factory: sessionmaker[Session]

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with self.factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None, workspace_root: str | os.PathLike | None = None,
                  migrate: bool = True) -> Database:
    """Open (and by default migrate to head) the database at `url` / $OBT_EVAL_DB / the workspace."""
    resolved = database_url(workspace_root, url)
    engine = make_engine(resolved)
    if migrate:
        from db.migrate import upgrade_to_head

        upgrade_to_head(engine)
    return Database(url=resolved, engine=engine, factory=sessionmaker(engine, expire_on_commit=False))
