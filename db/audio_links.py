"""Audio URL tokens: minted when a trial is shown, bounded per rater and trial, bound to one browser, short-lived.

The map lives in the database, not in one app process, so several replicas can serve one study and a
flood of reloads cannot push other raters' links out of a shared cache. A link holds no audio: each fetch
re-renders the clip from its file, with per-link randomness (`seed`) so repeated range requests for one
link give identical bytes while two links to one clip never do.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from db.models import AudioLink, Rater, Rating, Stimulus, Trial, utcnow
from db.protocol import RatingRefused, clip_play, play_ended, play_started, played_to_the_end, served_clips
from db.studies import rater_by_token

# A link lives LINK_TTL after its last use (fetch, play, end): long enough to read the instructions and
# listen on a slow phone; a rater back after a longer pause reloads. Never longer than LINK_MAX_AGE.
LINK_TTL = dt.timedelta(minutes=15)
LINK_MAX_AGE = dt.timedelta(hours=1)
# At most LINKS_PER_TRIAL live links per rater and trial (4 serves of A and B): a reload rotates out the
# oldest. Once that many were minted within MINT_WINDOW, a reload gets this browser's newest links again.
LINKS_PER_TRIAL = 8
MINT_WINDOW = dt.timedelta(minutes=1)


class TooManyReloads(RatingRefused):
    """The rater's browser asked for fresh audio links of one trial too often."""


@dataclass(frozen=True)
class ServedClip:
    """What a fetch of a link needs: the file, the link's seed, whether this is its first fetch."""

    path: Path
    seed: bytes
    first_fetch: bool


# The statements of every serve, fetch and play event, built once (building one and its cache key costs more
# than running it).
_LINKS = AudioLink.__table__
_DELETE_EXPIRED = delete(_LINKS).where(_LINKS.c.rater_id == bindparam("rater"), _LINKS.c.expires_at <= bindparam("now"))
_LIVE_LINKS = (select(AudioLink)
               .where(AudioLink.rater_id == bindparam("rater"), AudioLink.trial_id == bindparam("trial"))
               .order_by(AudioLink.created_at.desc(), AudioLink.token))


def mint_links(session: Session, invite_token: str, audio_tokens: dict[str, str], binding: str = "",
               now: dt.datetime | None = None) -> dict[str, str]:
    """URL tokens for a served trial's clips ({slot: rating audio token} -> {slot: URL token}).

    `binding` (a hash of the browser's session cookie; "" for none) must come with every later fetch or
    event of the links. Raises TooManyReloads when the trial's budget is spent and this browser has no
    live links of its own to be given again.
    """
    now = now or utcnow()
    rater = rater_by_token(session, invite_token)
    clips = served_clips(session, rater, list(audio_tokens.values()))
    served = {slot: clips[token][0] for slot, token in audio_tokens.items()}  # slot -> rating id
    trials = {trial_id for _, trial_id in clips.values()}
    if len(trials) != 1:
        raise RatingRefused("the clips of one serve belong to one trial", "ask for the next trial")
    trial_id = trials.pop()
    session.execute(_DELETE_EXPIRED, {"rater": rater.id, "now": now})
    live = session.scalars(_LIVE_LINKS, {"rater": rater.id, "trial": trial_id}).all()
    recent = [link for link in live if link.created_at > now - MINT_WINDOW]
    if len(recent) + len(served) > LINKS_PER_TRIAL:
        mine: dict[int, str] = {}
        for link in live:  # newest first: keep the first one seen per clip
            if link.binding == binding:
                mine.setdefault(link.rating_id, link.token)
        if all(rating_id in mine for rating_id in served.values()):
            return {slot: mine[rating_id] for slot, rating_id in served.items()}
        raise TooManyReloads("this trial was reloaded too often", "wait a minute, then reload the page")
    out = {}
    rows = []
    for slot, rating_id in served.items():
        out[slot] = secrets.token_urlsafe(24)
        rows.append({"token": out[slot], "rater_id": rater.id, "trial_id": trial_id, "rating_id": rating_id,
                     "binding": binding, "seed": secrets.token_hex(16), "created_at": now,
                     "expires_at": now + LINK_TTL})
    session.execute(insert(_LINKS), rows)
    stale = live[LINKS_PER_TRIAL - len(served):]
    if stale:
        session.execute(delete(AudioLink).where(AudioLink.token.in_([link.token for link in stale])))
    session.flush()
    return out


@dataclass(frozen=True)
class LiveLink:
    """A link that works now for this browser, with what a fetch or a play event needs (one query)."""

    token: str
    rating_id: int
    trial_id: int
    fetched: bool
    audio_path: str
    seed: str
    created_at: dt.datetime
    expires_at: dt.datetime


_LIVE_LINK = (
    select(AudioLink.rating_id, AudioLink.trial_id, AudioLink.rater_id, AudioLink.binding, AudioLink.fetched_at,
           AudioLink.created_at, AudioLink.expires_at, AudioLink.seed, Rater.disabled,
           Trial.rater_id.label("trial_rater"), Stimulus.audio_path)
    .join(Rater, Rater.id == AudioLink.rater_id).join(Trial, Trial.id == AudioLink.trial_id)
    .join(Rating, Rating.id == AudioLink.rating_id).join(Stimulus, Stimulus.id == Rating.stimulus_id)
    .where(AudioLink.token == bindparam("token"))
)
_TIME = _LINKS.c.expires_at.type
# (bind names differ from column names: an UPDATE reserves those for its SET clause)
_TOUCH = update(_LINKS).where(_LINKS.c.token == bindparam("the_token")).values(
    expires_at=bindparam("new_expiry", type_=_TIME))
_MARK_FETCHED = (update(_LINKS)
                 .where(_LINKS.c.token == bindparam("the_token"), _LINKS.c.fetched_at.is_(None),
                        _LINKS.c.binding.in_(bindparam("bindings", expanding=True)))
                 .values(fetched_at=bindparam("at", type_=_TIME)))


def _live_link(session: Session, token: str, binding: str, now: dt.datetime) -> LiveLink | None:
    if not token or len(token) > 64:
        return None
    row = session.execute(_LIVE_LINK, {"token": token}).one_or_none()
    if row is None or row.expires_at <= now or row.disabled:
        return None
    if row.binding and row.binding != binding:
        return None  # another browser (or a script that was never served this link)
    if row.trial_rater != row.rater_id:
        return None  # the block changed hands since (never, in practice): the link is void
    return LiveLink(token, row.rating_id, row.trial_id, row.fetched_at is not None, row.audio_path, row.seed,
                    row.created_at, row.expires_at)


def _touch(session: Session, link: LiveLink, now: dt.datetime) -> None:
    """A play event keeps the link alive a while longer, never past its maximum age."""
    expires = min(max(link.expires_at, now + LINK_TTL), link.created_at + LINK_MAX_AGE)
    if expires != link.expires_at:
        session.execute(_TOUCH, {"the_token": link.token, "new_expiry": expires})


def clip_for(session: Session, token: str, binding: str = "", now: dt.datetime | None = None) -> ServedClip | None:
    """The clip behind a live link for this browser (None: unknown, expired, revoked or another browser's)."""
    link = _live_link(session, token, binding, now or utcnow())
    if link is None:
        return None
    return ServedClip(Path(link.audio_path), bytes.fromhex(link.seed), not link.fetched)


def mark_fetched(session: Session, token: str, binding: str = "", now: dt.datetime | None = None) -> None:
    """Record the first download of a link's bytes (playback cannot start before it): one UPDATE."""
    session.execute(_MARK_FETCHED, {"the_token": token, "bindings": ["", binding], "at": now or utcnow()})


def playback_event(session: Session, token: str, event: str, binding: str = "",
                   now: dt.datetime | None = None) -> dict | None:
    """Record a play start or end through a link; None for an unknown link or event.

    Returns ``{"ok": accepted, "both": every clip of the trial is fully played}``.
    """
    now = now or utcnow()
    if event not in ("play", "ended"):
        return None
    link = _live_link(session, token, binding, now)
    if link is None:
        return None
    if event == "play" and not link.fetched:
        return {"ok": False, "both": False}  # playback cannot start before the bytes were fetched
    _touch(session, link, now)
    clip = clip_play(session, link.rating_id)
    if event == "play":
        play_started(session, clip, now)
        ok = True
    else:
        ok = play_ended(session, clip, now)
    ends = played_to_the_end(session, link.trial_id)
    return {"ok": ok, "both": bool(ends) and all(ends.values())}


def purge_expired(session: Session, now: dt.datetime | None = None) -> int:
    """Delete expired links of every rater (minting purges the rater's own; this catches raters who left)."""
    return session.execute(delete(AudioLink).where(AudioLink.expires_at <= (now or utcnow()))).rowcount or 0


def live_links(session: Session, trial_token: str | None = None) -> int:
    """How many links exist (for one trial, given its token): what a reload flood can grow."""
    stmt = select(AudioLink.token)
    if trial_token is not None:
        stmt = stmt.join(Trial, Trial.id == AudioLink.trial_id).where(Trial.token == trial_token)
    return len(session.scalars(stmt).all())
