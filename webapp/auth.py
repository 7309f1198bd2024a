"""Researcher access: checked on the server in every admin and results callback.

Hiding a tab is not access control (every Gradio event can be called by a script, reference
listening-tests.md §0.2, §4.2), so a session becomes a researcher's only by a login callback that sets
`AdminSession.user` inside `gr.State` — which lives on the server and which a client cannot set.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from obt_eval.errors import ObtEvalError

MAX_FAILURES = 5
LOCKOUT_SECONDS = 60.0


class NotAuthorised(ObtEvalError):
    """A researcher-only action from a session that has not logged in."""


@dataclass
class AdminSession:
    """Per-browser-session login state, kept in gr.State (server side)."""

    user: str | None = None
    failures: int = 0
    locked_until: float = 0.0

    @property
    def ok(self) -> bool:
        return self.user is not None


_global_failures: list[float] = []
_global_lock = threading.Lock()


def check_password(session: AdminSession, given: str, expected: str) -> bool:
    """Constant-time compare with a per-session lockout and a global rate limit against guessing."""
    now = time.monotonic()
    if session.locked_until > now:
        raise NotAuthorised("too many wrong passwords", f"wait {int(session.locked_until - now) + 1} s")
    with _global_lock:
        recent = [t for t in _global_failures if now - t < LOCKOUT_SECONDS]
        _global_failures[:] = recent
        if len(recent) >= 10 * MAX_FAILURES:
            raise NotAuthorised("too many wrong passwords on this server", "wait a minute")
    if expected and hmac.compare_digest(given.encode(), expected.encode()):
        session.user, session.failures = "admin", 0
        return True
    session.failures += 1
    with _global_lock:
        _global_failures.append(now)
    if session.failures >= MAX_FAILURES:
        session.locked_until, session.failures = now + LOCKOUT_SECONDS, 0
    return False


def login_oauth(session: AdminSession, username: str | None, allowed: tuple[str, ...]) -> bool:
    if username and username in allowed:
        session.user = username
        return True
    return False


def require_admin(session: AdminSession | None) -> str:
    """The researcher's name, or NotAuthorised (the callers turn it into a message, never into data)."""
    if session is None or not session.ok:
        raise NotAuthorised("researchers only", "log in on the Admin tab")
    return session.user  # type: ignore[return-value]
