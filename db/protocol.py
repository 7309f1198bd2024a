"""The rating protocol the app calls: next trial, play events, audio lookup, idempotent submission.

All checks run on the server from DB rows (the browser can be scripted, see reference
listening-tests.md §0.2): a rating counts only if both clips of a served trial were played to the end
as recorded here, and a trial is submitted at most once, whatever the client sends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from db.models import Block, Rater, Rating, Stimulus, Study, System, Trial, utcnow
from db.studies import rater_by_token
from obt_eval.errors import ObtEvalError


class RatingRefused(ObtEvalError):
    """A submission or play event the protocol does not accept (the message says why)."""


@dataclass(frozen=True)
class TrialView:
    """Everything the rater's page may see about a trial: random tokens and the frozen wording, no system."""

    trial_token: str
    audio_a: str
    audio_b: str
    number: int
    total: int
    question: str
    scale_labels: dict[str, str]
    preference_question: str | None
    preference_options: tuple[str, ...]
    instructions: str


@dataclass(frozen=True)
class SubmitResult:
    recorded: bool
    duplicate: bool


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or utcnow()


# What every serve and submit runs, built once (building a statement and its cache key costs more than running it).
_CURRENT_BLOCK = (select(Block).where(Block.rater_id == bindparam("rater"), Block.completed_at.is_(None))
                  .order_by(Block.index).limit(1))
_NEXT_OPEN_TRIAL = (select(Trial).where(Trial.block_id == bindparam("block"), Trial.submitted_at.is_(None))
                    .order_by(Trial.seq).limit(1))
_BLOCK_SIZE = select(func.count(Trial.id)).where(Trial.block_id == bindparam("block"))
_TRIAL_BY_TOKEN = select(Trial).where(Trial.token == bindparam("token"))
_SERVED_CLIPS = (select(Rating.id, Rating.audio_token, Rating.trial_id, Trial.rater_id, Trial.served_at)
                 .join(Trial, Trial.id == Rating.trial_id)
                 .where(Rating.audio_token.in_(bindparam("tokens", expanding=True))))


def _current_block(session: Session, rater: Rater) -> Block | None:
    return session.scalar(_CURRENT_BLOCK, {"rater": rater.id})


def _next_open_trial(session: Session, block: Block) -> Trial | None:
    return session.scalar(_NEXT_OPEN_TRIAL, {"block": block.id})


def _rated_items(session: Session, rater: Rater) -> set[tuple[str, frozenset[int]]]:
    """(utterance, pair of systems) of the regular trials the rater already has."""
    rows = session.execute(
        select(Trial.id, Trial.utterance, Stimulus.system_id).join(Rating, Rating.trial_id == Trial.id)
        .join(Stimulus, Rating.stimulus_id == Stimulus.id).where(Trial.rater_id == rater.id, Trial.kind == "regular")
    ).all()
    pairs: dict[int, tuple[str, set[int]]] = {}
    for tid, utt, sid in rows:
        pairs.setdefault(tid, (utt, set()))[1].add(sid)
    return {(u, frozenset(s)) for u, s in pairs.values()}


def _block_items(session: Session, block_id: int) -> set[tuple[str, frozenset[int]]]:
    rows = session.execute(
        select(Trial.id, Trial.utterance, Stimulus.system_id).join(Rating, Rating.trial_id == Trial.id)
        .join(Stimulus, Rating.stimulus_id == Stimulus.id).where(Trial.block_id == block_id, Trial.kind == "regular")
    ).all()
    pairs: dict[int, tuple[str, set[int]]] = {}
    for tid, utt, sid in rows:
        pairs.setdefault(tid, (utt, set()))[1].add(sid)
    return {(u, frozenset(s)) for u, s in pairs.values()}


def _assign_block(session: Session, rater: Rater, study: Study, now: dt.datetime) -> Block | None:
    """Give the rater the lowest free block that repeats none of their items (race-safe conditional update)."""
    max_blocks = (study.design.get("config") or {}).get("max_blocks_per_rater")
    taken = session.scalar(select(Block.id).where(Block.rater_id == rater.id).limit(1)) is not None
    if max_blocks is not None:
        count = len(session.scalars(select(Block.id).where(Block.rater_id == rater.id)).all())
        if count >= max_blocks:
            return None
    seen = _rated_items(session, rater) if taken else set()
    for block in session.scalars(select(Block).where(Block.study_id == study.id, Block.rater_id.is_(None))
                                 .order_by(Block.index)):
        if seen and seen & _block_items(session, block.id):
            continue
        won = session.execute(update(Block).where(Block.id == block.id, Block.rater_id.is_(None))
                              .values(rater_id=rater.id, assigned_at=now)).rowcount
        if won:
            session.execute(update(Trial).where(Trial.block_id == block.id).values(rater_id=rater.id))
            session.flush()
            session.refresh(block)
            return block
    return None


def next_trial(session: Session, invite_token: str, now: dt.datetime | None = None) -> TrialView | None:
    """The rater's next unrated trial (the same one again after a reload), or None when there is no more work."""
    now = _now(now)
    rater = rater_by_token(session, invite_token)
    if rater.consent_at is None:
        raise RatingRefused("this rater has not given consent yet", "register the profile and consent first")
    study = session.get(Study, rater.study_id)
    if study is None or study.status != "open":
        return None
    while True:
        block = _current_block(session, rater)
        if block is None:
            block = _assign_block(session, rater, study, now)
            if block is None:
                return None
        trial = _next_open_trial(session, block)
        if trial is not None:
            break
        block.completed_at = now
        session.flush()
    if trial.served_at is None:
        trial.served_at = now
        for rating in trial.ratings:
            rating.served_at = now
        session.flush()
    total = session.scalar(_BLOCK_SIZE, {"block": block.id})
    protocol = study.protocol
    a, b = sorted(trial.ratings, key=lambda r: r.position)
    return TrialView(
        trial_token=trial.token, audio_a=a.audio_token, audio_b=b.audio_token, number=trial.seq + 1, total=total,
        question=protocol["question"], scale_labels=dict(protocol["scale_labels"]),
        preference_question=protocol.get("preference_question"),
        preference_options=tuple(protocol.get("preference_options") or ()), instructions=protocol["instructions"],
    )


def served_clips(session: Session, rater: Rater, audio_tokens: list[str]) -> dict[str, tuple[int, int]]:
    """{audio token: (rating id, trial id)} of clips served to this rater, in one query; refuses any other token."""
    rows = session.execute(_SERVED_CLIPS, {"tokens": list(audio_tokens)}).all()
    found = {row.audio_token: (row.id, row.trial_id) for row in rows
             if row.rater_id == rater.id and row.served_at is not None}
    if len(found) != len(set(audio_tokens)):
        raise RatingRefused("this audio was not served to this rater", "ask for the next trial first")
    return found


def served_rating(session: Session, rater: Rater, audio_token: str) -> tuple[Rating, Trial]:
    rating = session.scalar(select(Rating).where(Rating.audio_token == audio_token))
    trial = session.get(Trial, rating.trial_id) if rating is not None else None
    if rating is None or trial is None or trial.rater_id != rater.id or trial.served_at is None:
        raise RatingRefused("this audio was not served to this rater", "ask for the next trial first")
    return rating, trial


def audio_file(session: Session, invite_token: str, audio_token: str) -> Path:
    """The file behind an audio token — only for a trial served to this rater (the app streams its bytes)."""
    rater = rater_by_token(session, invite_token)
    rating, _ = served_rating(session, rater, audio_token)
    return Path(session.get(Stimulus, rating.stimulus_id).audio_path)


def record_play_start(session: Session, invite_token: str, audio_token: str, now: dt.datetime | None = None) -> None:
    """The server saw playback of a clip start (keeps the first time; opens a play that an end may close)."""
    rater = rater_by_token(session, invite_token)
    rating, _ = served_rating(session, rater, audio_token)
    play_started(session, clip_play(session, rating.id), _now(now))


def record_play_end(session: Session, invite_token: str, audio_token: str, now: dt.datetime | None = None) -> bool:
    """The clip's ended event; True when it counts as a full play (see `play_ended`)."""
    rater = rater_by_token(session, invite_token)
    rating, _ = served_rating(session, rater, audio_token)
    return play_ended(session, clip_play(session, rating.id), _now(now))


@dataclass(frozen=True)
class ClipPlay:
    """What the play rules read about one served clip, in one query (play events are the app's most frequent
    writes: they go by ids and plain statements, not through ORM objects)."""

    rating_id: int
    trial_id: int
    trial_open: bool
    playing_since: dt.datetime | None
    play_ended_at: dt.datetime | None
    needed_seconds: float  # how long the clip must play to count as played to the end


# The play events' statements, built once: building a statement and its cache key costs more than running it.
_RATINGS = Rating.__table__
_CLIP_PLAY = (
    select(Rating.trial_id, Rating.playing_since, Rating.play_ended_at, Trial.submitted_at, Stimulus.duration,
           Study.protocol)
    .join(Trial, Trial.id == Rating.trial_id).join(Stimulus, Stimulus.id == Rating.stimulus_id)
    .join(Study, Study.id == Trial.study_id).where(Rating.id == bindparam("rating_id"))
)
_TIME = _RATINGS.c.playing_since.type  # timezone-aware UTC (db.models.UTCDateTime)
_AT = bindparam("at", type_=_TIME)
# (bind names differ from column names: an UPDATE reserves those for its SET clause)
_THIS = _RATINGS.c.id == bindparam("the_rating")
_START_PLAY = update(_RATINGS).where(_RATINGS.c.trial_id == bindparam("the_trial")).values(
    playing_since=case((_THIS, _AT), else_=None),
    first_play_at=case((and_(_THIS, _RATINGS.c.first_play_at.is_(None)), _AT), else_=_RATINGS.c.first_play_at))
_END_PLAY = (update(_RATINGS)
             .where(_RATINGS.c.id == bindparam("the_rating"),
                    _RATINGS.c.playing_since == bindparam("since", type_=_TIME))
             .values(play_ended_at=bindparam("ended", type_=_TIME), playing_since=None))
_PLAYED = select(Rating.id, Rating.play_ended_at).where(Rating.trial_id == bindparam("trial_id"))


def clip_play(session: Session, rating_id: int) -> ClipPlay:
    row = session.execute(_CLIP_PLAY, {"rating_id": rating_id}).one()
    needed = float(row.protocol.get("min_listen_fraction", 0.95)) * row.duration
    return ClipPlay(rating_id, row.trial_id, row.submitted_at is None, row.playing_since, row.play_ended_at, needed)


def play_started(session: Session, clip: ClipPlay, now: dt.datetime) -> None:
    """Playback of a served clip started. It cancels the play in progress of the trial's other clip: the
    page plays one clip at a time, so A and B "playing" at once (a script, two tabs) are never two full plays.
    """
    if clip.trial_open:
        session.execute(_START_PLAY, {"the_trial": clip.trial_id, "the_rating": clip.rating_id, "at": now})


def play_ended(session: Session, clip: ClipPlay, now: dt.datetime) -> bool:
    """A served clip's end: a full play only if its play is still open (no other clip started since)
    and enough wall time passed since that play started.
    """
    if clip.play_ended_at is not None:
        return True
    if not clip.trial_open or clip.playing_since is None:
        return False  # never started, or the other clip started since (overlapping playback)
    if (now - clip.playing_since).total_seconds() < clip.needed_seconds:
        return False  # an "ended" event sooner than the clip can play is not a full play
    # still the same open play when written (a concurrent start of the other clip wins)
    closed = session.execute(_END_PLAY, {"the_rating": clip.rating_id, "since": clip.playing_since, "ended": now})
    return bool(closed.rowcount)


def played_to_the_end(session: Session, trial_id: int) -> dict[int, bool]:
    """{rating id: played to the end} for the trial's clips, read from the table (never a cached object)."""
    return {rid: ended is not None for rid, ended in session.execute(_PLAYED, {"trial_id": trial_id})}


def submit_rating(session: Session, invite_token: str, trial_token: str, score_a: int, score_b: int,
                  preference: str | None = None, now: dt.datetime | None = None) -> SubmitResult:
    """Record both clips' scores (and the optional preference) once; a repeated submit changes nothing."""
    now = _now(now)
    rater = rater_by_token(session, invite_token)
    trial = session.scalar(_TRIAL_BY_TOKEN, {"token": trial_token})
    if trial is None or trial.rater_id != rater.id or trial.served_at is None:
        raise RatingRefused("this trial was not served to this rater", "ask for the next trial first")
    if trial.submitted_at is not None:
        return SubmitResult(recorded=False, duplicate=True)
    protocol = session.get(Study, trial.study_id).protocol
    labels = {int(k) for k in protocol["scale_labels"]}
    lo, hi = min(labels), max(labels)
    for score in (score_a, score_b):
        if isinstance(score, bool) or not isinstance(score, int) or not lo <= score <= hi:
            raise RatingRefused(f"score {score!r} is not on the {lo}-{hi} scale", f"give whole numbers {lo}..{hi}")
    options = tuple(protocol.get("preference_options") or ())
    if preference is not None and preference not in options:
        raise RatingRefused(f"preference {preference!r} is not one of {options}", "answer A, B or none")
    if preference is None and protocol.get("preference_required") and protocol.get("preference_question"):
        raise RatingRefused("this study asks for a preference", "answer A, B or none")
    a, b = sorted(trial.ratings, key=lambda r: r.position)
    if not all(played_to_the_end(session, trial.id).values()):
        raise RatingRefused("both recordings must be played to the end before rating",
                            "play A and B to the end, then submit")
    # The conditional update is the idempotency guard: of two concurrent submits exactly one matches.
    won = session.execute(update(Trial).where(Trial.id == trial.id, Trial.submitted_at.is_(None))
                          .values(submitted_at=now, preference=preference)).rowcount
    if not won:
        session.rollback()
        return SubmitResult(recorded=False, duplicate=True)
    for rating, score in ((a, score_a), (b, score_b)):
        rating.score = score
        rating.submitted_at = now
    session.flush()
    session.expire(trial)
    return SubmitResult(recorded=True, duplicate=False)


def reveal(session: Session, trial_token: str) -> dict[str, str]:
    """Researcher-only: which system played at A and B (never call this from a rater's page)."""
    trial = session.scalar(select(Trial).where(Trial.token == trial_token))
    if trial is None:
        raise RatingRefused("unknown trial", "check the token")
    out = {}
    for rating in trial.ratings:
        system = session.get(System, session.get(Stimulus, rating.stimulus_id).system_id)
        out[rating.position] = system.name
    return out
