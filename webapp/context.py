"""What every callback of the app shares: configuration, the database and the audio token map."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from db.engine import Database
from webapp.audio import StimulusTokens
from webapp.config import AppConfig


@dataclass
class AppContext:
    config: AppConfig
    db: Database
    tokens: StimulusTokens
    # One writer at a time inside the process: SQLite's busy handler backs off in steps of up to 100 ms,
    # which 50 raters writing at once would hit; a lock hands the write over at once instead.
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A database session for a transaction that writes (serialised in this process)."""
        with self.write_lock, self.db.session() as session:
            yield session

    @property
    def workspace(self):
        return self.config.workspace


def make_context(config: AppConfig) -> AppContext:
    from db.protocol import audio_file
    from pipelines.jobs import database
    from webapp.rating import playback_event

    db = database(config.workspace)

    def resolve(invite: str, audio_token: str) -> Path:
        with db.session() as s:
            return audio_file(s, invite, audio_token)

    def on_event(invite: str, audio_token: str, event: str) -> dict:
        return playback_event(ctx, invite, audio_token, event)

    ctx = AppContext(config=config, db=db, tokens=StimulusTokens(resolve, on_event=on_event))
    return ctx
