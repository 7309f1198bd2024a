"""What every callback of the app shares: configuration, the database and the audio token map."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.orm import Session

from db.engine import Database, with_retries
from webapp.audio import StimulusTokens
from webapp.config import AppConfig

T = TypeVar("T")


@dataclass
class AppContext:
    config: AppConfig
    db: Database
    tokens: StimulusTokens = field(init=False)
    # One writer at a time inside the process: SQLite's busy handler backs off in steps of up to 100 ms,
    # which 50 raters writing at once would hit; a lock hands the write over at once instead.
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    uploaded: set[str] = field(default_factory=set)  # Gradio's set of uploaded files (set by build_blocks)

    def __post_init__(self) -> None:
        self.tokens = StimulusTokens(self.db, writing=self.writing)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A database session for a transaction that writes (serialised in this process)."""
        with self.write_lock, self.db.write_session() as session:
            yield session

    def write(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in a write transaction, again (briefly) while the database is locked by someone else;
        raises `db.engine.DatabaseBusy` if it stays locked."""
        def run() -> T:
            with self.writing() as session:
                return fn(session)
        return with_retries(run)

    @property
    def workspace(self):
        return self.config.workspace


def make_context(config: AppConfig) -> AppContext:
    from pipelines.jobs import database

    return AppContext(config=config, db=database(config.workspace))
