"""Engine and sessions: SQLite in the workspace by default (WAL, foreign keys, busy timeout), or any URL.

``$OBT_EVAL_DB`` (any SQLAlchemy URL, e.g. postgresql+psycopg2://…) lets several app replicas share
one database. Opening a database migrates it to the newest schema (Alembic).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
# Errors that a retry of the whole transaction can cure: SQLite's lock/busy (also the immediate
# SQLITE_BUSY_SNAPSHOT of a read that turns into a write after another process wrote), PostgreSQL's
# deadlock and serialisation failures.
TRANSIENT = ("database is locked", "database table is locked", "database is busy", "deadlock detected",
             "could not serialize access", "lock timeout")

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


class DatabaseBusy(RuntimeError):
    """The database stayed locked through every retry: the caller answers "try again" (HTTP 503)."""


def transient(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and any(t in str(exc).lower() for t in TRANSIENT)


def with_retries(fn: Callable[[], T], attempts: int = 4, first_wait: float = 0.05) -> T:
    """Run a whole transaction again (briefly, with back-off) while the database reports a transient lock."""
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if not transient(exc):
                raise
            if attempt == attempts - 1:
                raise DatabaseBusy(f"the database stayed busy through {attempts} tries") from exc
            time.sleep(first_wait * 2**attempt)
    raise AssertionError("unreachable")


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

    @contextlib.contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session for a transaction that writes: on SQLite it takes the write lock first (BEGIN IMMEDIATE),
        so it waits for other writers (busy timeout) instead of failing when its first read turns into a write.
        """
        with self.session() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

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
