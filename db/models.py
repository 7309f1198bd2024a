"""Typed SQLAlchemy 2.x models of studies, stimuli, raters, trials, ratings and jobs.

The system ↔ audio mapping lives only here, on the server: what a rater is served (trial and audio
tokens) is random per trial and carries no system, utterance or file name.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, types
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text; we add UTC back)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("store timezone-aware datetimes (use datetime.now(UTC))")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.replace(tzinfo=dt.UTC) if value is not None else None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dt.datetime: UTCDateTime}


class Study(Base):
    """A listening test; `protocol` is the frozen snapshot of what raters were asked."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | closed
    protocol: Mapped[dict[str, Any]] = mapped_column()
    protocol_version: Mapped[str] = mapped_column(String(50))
    design: Mapped[dict[str, Any]] = mapped_column()  # config, seed and balance summary
    settings: Mapped[dict[str, Any]] = mapped_column()  # loudness target, anchor recipe, notes
    stimuli_dir: Mapped[str] = mapped_column(Text)
    sample_rate: Mapped[int] = mapped_column(Integer)

    systems: Mapped[list[System]] = relationship(back_populates="study", cascade="all, delete-orphan")


class System(Base):
    """What produced a set of clips: an encoder+vocoder run, natural speech, an external system, the anchor."""

    __tablename__ = "systems"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # test | reference | anchor
    source_dir: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)

    study: Mapped[Study] = relationship(back_populates="systems")


class Stimulus(Base):
    """One clip as served: system × utterance (× QC variant), stored under an opaque id."""

    __tablename__ = "stimuli"
    __table_args__ = (UniqueConstraint("system_id", "utterance", "variant"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"))
    utterance: Mapped[str] = mapped_column(String(300))
    variant: Mapped[str] = mapped_column(String(50), default="")  # "" | anchor | repeat-<block>-<n>
    opaque_id: Mapped[str] = mapped_column(String(64), unique=True)
    audio_path: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str | None] = mapped_column(Text)
    sample_rate: Mapped[int] = mapped_column(Integer)
    num_samples: Mapped[int] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float)
    loudness_lufs: Mapped[float] = mapped_column(Float)
    source_loudness_lufs: Mapped[float | None] = mapped_column(Float)
    gain_db: Mapped[float | None] = mapped_column(Float)

    system: Mapped[System] = relationship()


class Rater(Base):
    """A pseudonymous rater invited to one study; the invite token is their secret login."""

    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    pseudonym: Mapped[str] = mapped_column(String(50), unique=True)
    invite_token: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    native_speaker: Mapped[bool | None] = mapped_column()
    linguist: Mapped[bool | None] = mapped_column()
    languages: Mapped[list[Any]] = mapped_column(default=list)
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    consent_at: Mapped[dt.datetime | None] = mapped_column()
    disabled: Mapped[bool] = mapped_column(default=False)


class Block(Base):
    """One rater session's worth of trials; assigned to the next rater who needs work."""

    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("study_id", "index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    rater_id: Mapped[int | None] = mapped_column(ForeignKey("raters.id"), index=True)
    assigned_at: Mapped[dt.datetime | None] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class Trial(Base):
    """An A/B pair in a block; `token` is the only id the rater's page sees."""

    __tablename__ = "trials"
    __table_args__ = (Index("ix_trials_block_seq", "block_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    block_id: Mapped[int] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # regular | attention | repeat
    utterance: Mapped[str] = mapped_column(String(300))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    repeat_of_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"))
    rater_id: Mapped[int | None] = mapped_column(ForeignKey("raters.id"), index=True)
    served_at: Mapped[dt.datetime | None] = mapped_column()
    submitted_at: Mapped[dt.datetime | None] = mapped_column()
    preference: Mapped[str | None] = mapped_column(String(10))  # A | B | none

    ratings: Mapped[list[Rating]] = relationship(back_populates="trial", order_by="Rating.position")


class Rating(Base):
    """One clip of a trial and its score, with the server-side timeline of serving and playing it."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("trial_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id"))
    position: Mapped[str] = mapped_column(String(1))  # A | B
    audio_token: Mapped[str] = mapped_column(String(64), unique=True)
    served_at: Mapped[dt.datetime | None] = mapped_column()
    first_play_at: Mapped[dt.datetime | None] = mapped_column()
    # The start of the play now in progress: cleared by its end, and by the other clip of the trial starting
    # (A and B playing at once is not two full plays).
    playing_since: Mapped[dt.datetime | None] = mapped_column()
    play_ended_at: Mapped[dt.datetime | None] = mapped_column()
    score: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[dt.datetime | None] = mapped_column()

    trial: Mapped[Trial] = relationship(back_populates="ratings")
    stimulus: Mapped[Stimulus] = relationship()


class AudioLink(Base):
    """One audio URL token served to a rater: which clip, for which browser, until when.

    Kept in the database (not in one process's memory) so several app replicas can serve one study; it
    holds no audio bytes (each fetch re-renders the clip from its file, deterministically from `seed`).
    """

    __tablename__ = "audio_links"
    __table_args__ = (Index("ix_audio_links_rater_trial", "rater_id", "trial_id"),)
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="CASCADE"))
    binding: Mapped[str] = mapped_column(String(64))  # hash of the browser's session cookie ("" = unbound)
    seed: Mapped[str] = mapped_column(String(64))  # per-link randomness of the served bytes (hex)
    created_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    fetched_at: Mapped[dt.datetime | None] = mapped_column()


class ClientThrottle(Base):
    """Failed attempts per client and action (e.g. a researcher login from one address), with back-off."""

    __tablename__ = "client_throttle"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(index=True)


class Job(Base):
    """A background job (training, synthesis, study rendering) run by the job runner."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)  # queued|running|done|failed|cancelled
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    log_path: Mapped[str | None] = mapped_column(Text)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    worker: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)


JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
