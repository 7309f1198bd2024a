"""Study records: create a study from a design and its rendered audio, invite raters, read ratings back."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Block, Rater, Rating, Stimulus, Study, System, Trial, utcnow
from obt_eval.errors import BadInputError, NotFoundError


@dataclass(frozen=True)
class SystemRecord:
    name: str
    role: str
    source_dir: str | None = None
    meta: dict | None = None


@dataclass(frozen=True)
class StimulusRecord:
    """One rendered clip (see obt_eval.study.render.RenderedStimulus)."""

    system: str
    utterance: str
    variant: str
    opaque_id: str
    audio_path: str
    sample_rate: int
    num_samples: int
    duration: float
    loudness_lufs: float
    source_loudness_lufs: float | None = None
    gain_db: float | None = None
    source_path: str | None = None


@dataclass(frozen=True)
class TrialRecord:
    """One planned trial; `a`/`b` are (system, utterance, variant); `repeat_of` indexes the trial list."""

    block: int
    seq: int
    kind: str
    utterance: str
    a: tuple[str, str, str]
    b: tuple[str, str, str]
    repeat_of: int | None = None


def get_study(session: Session, name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == name))
    if study is None:
        raise NotFoundError(f"no study {name!r}", "see `obt-eval study list`, or create it: `obt-eval study create`")
    return study


def create_study(session: Session, name: str, protocol: dict[str, Any], design: dict[str, Any],
                 settings: dict[str, Any], stimuli_dir: str, sample_rate: int, systems: list[SystemRecord],
                 stimuli: list[StimulusRecord], trials: list[TrialRecord]) -> Study:
    """Insert a study with its systems, stimuli, blocks, trials and empty rating slots (one transaction)."""
    if session.scalar(select(Study.id).where(Study.name == name)) is not None:
        raise BadInputError(f"a study named {name!r} already exists", "choose another --name")
    study = Study(name=name, protocol=protocol, protocol_version=str(protocol.get("version", "1")), design=design,
                  settings=settings, stimuli_dir=stimuli_dir, sample_rate=sample_rate)
    session.add(study)
    session.flush()
    system_ids: dict[str, int] = {}
    for rec in systems:
        row = System(study_id=study.id, name=rec.name, role=rec.role, source_dir=rec.source_dir, meta=rec.meta or {})
        session.add(row)
        session.flush()
        system_ids[rec.name] = row.id
    stim_ids: dict[tuple[str, str, str], int] = {}
    for rec in stimuli:
        row = Stimulus(study_id=study.id, system_id=system_ids[rec.system], utterance=rec.utterance,
                       variant=rec.variant, opaque_id=rec.opaque_id, audio_path=rec.audio_path,
                       source_path=rec.source_path, sample_rate=rec.sample_rate, num_samples=rec.num_samples,
                       duration=rec.duration, loudness_lufs=rec.loudness_lufs,
                       source_loudness_lufs=rec.source_loudness_lufs, gain_db=rec.gain_db)
        session.add(row)
        session.flush()
        stim_ids[(rec.system, rec.utterance, rec.variant)] = row.id
    block_ids: dict[int, int] = {}
    for index in sorted({t.block for t in trials}):
        block = Block(study_id=study.id, index=index)
        session.add(block)
        session.flush()
        block_ids[index] = block.id
    trial_rows: list[Trial] = []
    for rec in trials:
        row = Trial(study_id=study.id, block_id=block_ids[rec.block], seq=rec.seq, kind=rec.kind,
                    utterance=rec.utterance, token=secrets.token_urlsafe(16))
        trial_rows.append(row)
    session.add_all(trial_rows)
    session.flush()
    for rec, row in zip(trials, trial_rows, strict=True):
        if rec.repeat_of is not None:
            row.repeat_of_id = trial_rows[rec.repeat_of].id
        for position, key in (("A", rec.a), ("B", rec.b)):
            session.add(Rating(trial_id=row.id, stimulus_id=stim_ids[key], position=position,
                               audio_token=secrets.token_urlsafe(16)))
    session.flush()
    return study


# 60 random bits: 200,000 raters of one database collide with probability ~2e-8, and a collision is retried.
PSEUDONYM_BYTES = 8
PSEUDONYM_CHARS = 12
_INSERT_CHUNK = 500  # rows per INSERT / names per IN (...) lookup: far below every backend's parameter limit


def new_pseudonym() -> str:
    """``R-`` and 12 base32 characters (60 bits): short enough to read out, long enough not to collide."""
    return "R-" + base64.b32encode(secrets.token_bytes(PSEUDONYM_BYTES)).decode()[:PSEUDONYM_CHARS]


def _free_pseudonyms(session: Session, count: int) -> list[str]:
    """`count` new pseudonyms, distinct from each other and from every rater already stored."""
    names: list[str] = []
    wanted = count
    for _ in range(100):
        fresh = list(dict.fromkeys(new_pseudonym() for _ in range(wanted)))
        fresh = [n for n in fresh if n not in names]
        taken: set[str] = set()
        for i in range(0, len(fresh), _INSERT_CHUNK):
            chunk = fresh[i:i + _INSERT_CHUNK]
            taken.update(session.scalars(select(Rater.pseudonym).where(Rater.pseudonym.in_(chunk))))
        names += [n for n in fresh if n not in taken]
        wanted = count - len(names)
        if wanted == 0:
            return names
    raise RuntimeError("could not draw unused rater pseudonyms")  # only with a broken random source


def invite_raters(session: Session, study: Study, count: int = 1) -> list[dict[str, str]]:
    """New pseudonymous raters; returns each one's pseudonym and secret invite token (show it once).

    Pseudonyms are drawn until none is in use; a concurrent invite that takes one first makes the insert
    fail, and it is drawn again (inside a savepoint, so the caller's transaction stays usable).
    """
    if count < 1:
        raise BadInputError("invite at least one rater", "pass --count N with N >= 1")
    for attempt in range(5):
        rows = [{"study_id": study.id, "pseudonym": name, "invite_token": secrets.token_urlsafe(24)}
                for name in _free_pseudonyms(session, count)]
        try:
            with session.begin_nested():
                for i in range(0, len(rows), _INSERT_CHUNK):
                    session.execute(insert(Rater), rows[i:i + _INSERT_CHUNK])
        except IntegrityError:
            if attempt == 4:
                raise
            continue
        return [{"pseudonym": r["pseudonym"], "invite_token": r["invite_token"]} for r in rows]
    raise AssertionError("unreachable")


_RATER_BY_TOKEN = select(Rater).where(Rater.invite_token == bindparam("token"))  # every rater request: built once


def rater_by_token(session: Session, invite_token: str) -> Rater:
    rater = session.scalar(_RATER_BY_TOKEN, {"token": invite_token})
    if rater is None or rater.disabled:
        raise NotFoundError("unknown or disabled invite token", "ask the study's researcher for a new invitation")
    return rater


MAX_LANGUAGES = 20
MAX_LANGUAGE_CHARS = 60
MAX_PROFILE_BYTES = 4096


def check_profile(languages: list[str], profile: dict[str, Any] | None) -> None:
    """Bounds on what a rater's browser may store (anything a client sends is checked here, on the server)."""
    if len(languages) > MAX_LANGUAGES:
        raise BadInputError(f"at most {MAX_LANGUAGES} languages", "list the languages you speak best")
    for lang in languages:
        if not isinstance(lang, str) or not 0 < len(lang) <= MAX_LANGUAGE_CHARS:
            raise BadInputError(f"a language name has 1-{MAX_LANGUAGE_CHARS} characters",
                                "write languages as short names separated by commas")
    if profile and len(json.dumps(profile, default=str)) > MAX_PROFILE_BYTES:
        raise BadInputError(f"the profile is larger than {MAX_PROFILE_BYTES} bytes", "answer briefly")


def register_rater(session: Session, invite_token: str, *, native_speaker: bool, linguist: bool,
                   languages: list[str], consent: bool, profile: dict[str, Any] | None = None,
                   now: dt.datetime | None = None) -> Rater:
    """Record a rater's profile and consent; nothing is served before consent."""
    if not consent:
        raise BadInputError("consent is required before rating", "read the information sheet and give consent")
    check_profile(list(languages), profile)
    rater = rater_by_token(session, invite_token)
    rater.native_speaker = native_speaker
    rater.linguist = linguist
    rater.languages = list(languages)
    rater.profile = dict(profile or {})
    rater.consent_at = rater.consent_at or now or utcnow()
    session.flush()
    return rater


def list_studies(session: Session) -> list[dict[str, Any]]:
    out = []
    for study in session.scalars(select(Study).order_by(Study.created_at)):
        out.append({"name": study.name, "created_at": study.created_at.isoformat(timespec="seconds"),
                    "status": study.status, "systems": [s.name for s in study.systems if s.role != "anchor"]}
                   | progress(session, study))
    return out


def progress(session: Session, study: Study) -> dict[str, int]:
    total = session.scalar(select(func.count(Trial.id)).where(Trial.study_id == study.id)) or 0
    done = session.scalar(select(func.count(Trial.id)).where(Trial.study_id == study.id,
                                                             Trial.submitted_at.is_not(None))) or 0
    raters = session.scalar(select(func.count(Rater.id)).where(Rater.study_id == study.id)) or 0
    blocks = session.scalar(select(func.count(Block.id)).where(Block.study_id == study.id)) or 0
    return {"trials": int(total), "trials_rated": int(done), "raters": int(raters), "blocks": int(blocks)}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value is not None else None


def ratings_frame(session: Session, study: Study) -> pd.DataFrame:
    """Submitted ratings in the long export format (one row per clip rating; see obt_eval.study.ratings_csv)."""
    stmt = (
        select(Rating, Trial, Stimulus, System, Rater, Block)
        .join(Trial, Rating.trial_id == Trial.id)
        .join(Stimulus, Rating.stimulus_id == Stimulus.id)
        .join(System, Stimulus.system_id == System.id)
        .join(Rater, Trial.rater_id == Rater.id)
        .join(Block, Trial.block_id == Block.id)
        .where(Trial.study_id == study.id, Trial.submitted_at.is_not(None))
        .order_by(Rater.pseudonym, Trial.submitted_at, Trial.id, Rating.position)
    )
    rows = []
    for rating, trial, stim, system, rater, block in session.execute(stmt):
        rows.append({
            "study": study.name, "rater": rater.pseudonym, "utterance": stim.utterance, "system": system.name,
            "system_role": system.role, "score": rating.score, "trial": trial.id, "kind": trial.kind,
            "position": rating.position, "preference": trial.preference, "repeat_of": trial.repeat_of_id,
            "block": block.index, "served_at": _iso(rating.served_at), "first_play_at": _iso(rating.first_play_at),
            "play_ended_at": _iso(rating.play_ended_at), "submitted_at": _iso(rating.submitted_at),
            "rater_native": rater.native_speaker, "rater_linguist": rater.linguist,
            "rater_languages": ";".join(rater.languages or []),
        })
    df = pd.DataFrame(rows)
    if not df.empty:
        df["repeat_of"] = df["repeat_of"].astype("Int64")
    return df


def stimuli_root(study: Study) -> Path:
    return Path(study.stimuli_dir)
