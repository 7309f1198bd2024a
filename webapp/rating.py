"""The rater's side of a study as plain functions over a `RaterSession`.

The rating page (`webapp.rater_page`) builds a session per request from what the browser sends: the
rater's invite and the trial the page shows. Nothing here trusts the browser: every step goes through
`db.protocol` (which refuses a trial not served to this rater, and ratings without a recorded full play of
both clips), and what is returned for the page carries only random tokens and the study's wording.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from sqlalchemy import select

from db import audio_links
from db.audio_links import TooManyReloads
from db.capacity import why_no_trial
from db.engine import DatabaseBusy
from db.models import Rating
from db.protocol import RatingRefused, TrialView, next_trial, submit_rating
from db.studies import rater_by_token, register_rater
from obt_eval.errors import BadInputError, NotFoundError, ObtEvalError
from webapp.context import AppContext

MAX_INVITE_CHARS = 300  # a pasted link with its query string; the token itself is 32 characters
MAX_LANGUAGES_CHARS = 1000
BUSY = "The server is busy. Please try again in a moment."
INVALID = "This invitation code is not valid. Check the link or ask the researcher."


@dataclass
class RaterSession:
    """One rater as a call sees them: the page's calls build it from the invite they carry (no state is kept
    between calls); a script or a test may keep one across calls, as a browser tab keeps its trial."""

    invite: str | None = None
    binding: str = ""  # hash of the browser's session cookie: the audio links work only with that cookie
    trial: TrialView | None = None
    urls: dict[str, str] = field(default_factory=dict)  # slot -> one-time audio URL token
    ended: set[str] = field(default_factory=set)


@dataclass
class Screen:
    """What the rater's page shows next: join | profile | trial | done | full | closed, plus a status line.

    `full` and `closed` mean the rater got no trial at all, so there is no completion code to give."""

    name: str
    status: str = ""
    trial: TrialView | None = None
    urls: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    instructions: str = ""
    ended: frozenset[str] = frozenset()  # the trial's clips already played to the end (a reload keeps them)
    saved: bool = False  # the submit that led here recorded a rating (said even when what follows is a problem)


def completion_code(secret: bytes, invite: str) -> str:
    """A code the rater pastes back to the researcher (or a crowd platform); stable per rater, unguessable."""
    digest = hmac.new(secret, f"completion|{invite}".encode(), hashlib.sha256).digest()
    text = base64.b32encode(digest[:10]).decode().rstrip("=")
    return f"{text[:4]}-{text[4:8]}-{text[8:12]}"


def clean_invite(invite: str | None) -> str:
    text = (invite or "").strip()
    if "invite=" in text:  # a whole pasted link
        text = text.split("invite=", 1)[1].split("&", 1)[0]
    return text


def open_invite(ctx: AppContext, session: RaterSession, invite: str | None) -> Screen:
    """Join with an invite token (or a pasted link); resumes wherever the rater stopped, on any device."""
    if invite is not None and (not isinstance(invite, str) or len(invite) > MAX_INVITE_CHARS):
        return Screen("join", INVALID)
    token = clean_invite(invite)
    if not token:
        return Screen("join", "Enter the invitation code you received.")
    try:
        with ctx.db.session() as s:
            rater = rater_by_token(s, token)
            consented = rater.consent_at is not None
    except ObtEvalError:
        return Screen("join", INVALID)
    session.invite, session.trial, session.urls, session.ended = token, None, {}, set()
    if not consented:
        return Screen("profile", "")
    return load_trial(ctx, session)


def save_profile(ctx: AppContext, session: RaterSession, native: str | None, linguist: str | None,
                 languages: str, consent: bool) -> Screen:
    if not session.invite:
        return Screen("join", "Enter the invitation code you received.")
    if not consent:
        return Screen("profile", "Please tick the consent box to continue.")
    if native not in ("Yes", "No") or linguist not in ("Yes", "No"):
        return Screen("profile", "Please answer both questions.")
    if not isinstance(languages, str | None) or len(languages or "") > MAX_LANGUAGES_CHARS:
        return Screen("profile", f"Please list your languages in at most {MAX_LANGUAGES_CHARS} characters.")
    langs = [x.strip() for x in (languages or "").replace(";", ",").split(",") if x.strip()]
    try:
        ctx.write(lambda s: register_rater(s, session.invite, native_speaker=native == "Yes",
                                           linguist=linguist == "Yes", languages=langs, consent=True))
    except NotFoundError:
        return Screen("join", INVALID)
    except BadInputError as exc:
        return Screen("profile", str(exc).replace("\n  what to do:", " —"))
    except DatabaseBusy:
        return Screen("profile", BUSY)
    return load_trial(ctx, session)


def _serve(s, session: RaterSession) -> tuple[TrialView | None, dict[str, str] | str | None]:
    """Inside a write transaction: the next (or current) trial and its audio links, or why there is none."""
    view = next_trial(s, session.invite)  # a first serve or a block assignment writes
    if view is None:
        return None, why_no_trial(s, session.invite)
    try:  # the audio links in the same transaction: one write per page load
        return view, audio_links.mint_links(s, session.invite, {"A": view.audio_a, "B": view.audio_b},
                                            session.binding)
    except TooManyReloads:
        return view, None


def load_trial(ctx: AppContext, session: RaterSession) -> Screen:
    """The rater's next (or current, after a reload) trial with fresh one-time audio URLs; or the end."""
    if not session.invite:
        return Screen("join", "Enter the invitation code you received.")
    try:
        view, urls = ctx.write(lambda s: _serve(s, session))
    except DatabaseBusy:
        return Screen("join", BUSY)
    except RatingRefused:
        return Screen("profile", "")
    except ObtEvalError as exc:
        return Screen("join", str(exc).split("\n")[0])
    return _trial_screen(ctx, session, view, urls)


def _trial_screen(ctx: AppContext, session: RaterSession, view: TrialView | None,
                  urls: dict[str, str] | str | None) -> Screen:
    if view is None:
        session.trial, session.urls = None, {}
        if urls == "full":
            return Screen("full")
        if urls == "closed":
            return Screen("closed")
        return Screen("done", code=completion_code(ctx.config.secret, session.invite))
    if session.trial is None or session.trial.trial_token != view.trial_token:
        session.ended = played_slots(ctx, view)  # a reload or another device keeps full plays
    session.trial = view
    session.urls = urls or {}
    if urls is None:
        return Screen("trial", "This page was reloaded too often. Wait a minute, then reload it.", trial=view,
                      instructions=view.instructions)
    return Screen("trial", trial=view, urls=dict(session.urls), instructions=view.instructions,
                  ended=frozenset(session.ended))


def played_slots(ctx: AppContext, view: TrialView) -> set[str]:
    """The trial's clips the server has recorded as played to the end ("A", "B")."""
    with ctx.db.session() as s:
        rows = s.execute(select(Rating.audio_token, Rating.play_ended_at)
                         .where(Rating.audio_token.in_((view.audio_a, view.audio_b)))).all()
    done = {token for token, at in rows if at is not None}
    return {slot for slot, token in (("A", view.audio_a), ("B", view.audio_b)) if token in done}


def _stay(session: RaterSession, status: str) -> Screen:
    """The same trial with a message (a refused submit): the page keeps its player and the rater's scores."""
    trial = session.trial
    return Screen("trial", status, trial=trial, urls=dict(session.urls),
                  instructions=trial.instructions if trial is not None else "", ended=frozenset(session.ended))


def submit(ctx: AppContext, session: RaterSession, score_a: int | None, score_b: int | None,
           preference: str | None, trial_token: str | None = None) -> tuple[Screen, bool]:
    """Record a trial (once, even if sent twice) and move on; (next screen, recorded?).

    `trial_token`: the trial the page shows (default: the session's); the server checks it is this rater's."""
    token = trial_token or (session.trial.trial_token if session.trial is not None else None)
    if token is None:
        return load_trial(ctx, session), False
    if score_a is None or score_b is None:
        return _stay(session, "Rate both recordings before you continue."), False
    try:
        a, b = int(score_a), int(score_b)
    except (TypeError, ValueError, OverflowError):
        return _stay(session, "Choose a score for each recording."), False

    def record_and_serve(s) -> tuple:
        result = submit_rating(s, session.invite, token, a, b, preference or None)
        try:  # the next trial in the same transaction (one wait for the write lock, not two); a savepoint, so
            with s.begin_nested():  # whatever goes wrong serving it, the rating itself is kept
                return result, _serve(s, session)
        except ObtEvalError:
            return result, None

    try:
        result, served = ctx.write(record_and_serve)
    except DatabaseBusy:
        return _stay(session, BUSY), False
    except NotFoundError:
        return Screen("join", INVALID), False
    except RatingRefused as exc:
        reason = str(exc).split("\n")[0]
        return _stay(session, reason[:1].upper() + reason[1:] + "."), False
    screen = _trial_screen(ctx, session, *served) if served is not None else load_trial(ctx, session)
    if screen.name in ("join", "profile") and screen.status != INVALID:
        screen = _stay(session, screen.status or BUSY)  # the next trial could not be served: stay, say why
    screen.saved = result.recorded  # said even when the next trial could not be served (the status says why)
    return screen, result.recorded
