"""Failed attempts per client (e.g. researcher logins from one address) with exponential back-off.

One row per client and action in the database, so every app replica sees the same count. Only the
failing client waits: there is no server-wide lock an attacker could hold against everyone else.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import ClientThrottle, utcnow

FREE_FAILURES = 3  # typos cost nothing
BASE_DELAY = dt.timedelta(seconds=2)  # then 2 s, 4 s, 8 s, ... per further failure
MAX_DELAY = dt.timedelta(minutes=15)
FORGET_AFTER = dt.timedelta(days=1)  # a client quiet this long starts afresh


def delay_after(failures: int) -> dt.timedelta:
    """How long a client waits after its `failures`-th failure in a row."""
    if failures <= FREE_FAILURES:
        return dt.timedelta(0)
    doublings = min(failures - FREE_FAILURES - 1, 20)
    return min(MAX_DELAY, BASE_DELAY * (2 ** doublings))


def wait_seconds(session: Session, key: str, now: dt.datetime | None = None) -> float:
    """Seconds this client must still wait before its next attempt is even checked (0: go ahead)."""
    now = now or utcnow()
    row = session.get(ClientThrottle, key)
    if row is None or row.blocked_until is None:
        return 0.0
    return max(0.0, (row.blocked_until - now).total_seconds())


def record_failure(session: Session, key: str, now: dt.datetime | None = None) -> float:
    """Count a failure (atomically, also across replicas); returns the wait it imposes in seconds."""
    now = now or utcnow()
    stale = now - FORGET_AFTER
    session.execute(delete(ClientThrottle).where(ClientThrottle.key == key, ClientThrottle.updated_at < stale))
    bumped = session.execute(update(ClientThrottle).where(ClientThrottle.key == key)
                             .values(failures=ClientThrottle.failures + 1, updated_at=now)).rowcount
    if not bumped:
        try:
            with session.begin_nested():
                session.add(ClientThrottle(key=key, failures=1, updated_at=now))
        except IntegrityError:  # another replica inserted it first
            session.execute(update(ClientThrottle).where(ClientThrottle.key == key)
                            .values(failures=ClientThrottle.failures + 1, updated_at=now))
    row = session.get(ClientThrottle, key, populate_existing=True)
    delay = delay_after(row.failures)
    row.blocked_until = now + delay if delay else None
    session.flush()
    return delay.total_seconds()


def record_success(session: Session, key: str) -> None:
    session.execute(delete(ClientThrottle).where(ClientThrottle.key == key))


def purge(session: Session, now: dt.datetime | None = None) -> int:
    """Forget clients that stopped failing long ago (keeps the table as small as the set of live attackers)."""
    now = now or utcnow()
    stale = now - FORGET_AFTER
    return session.execute(delete(ClientThrottle).where(
        ClientThrottle.updated_at < stale,
        or_(ClientThrottle.blocked_until.is_(None), ClientThrottle.blocked_until < now))).rowcount or 0


def failures(session: Session, key: str) -> int:
    row = session.scalar(select(ClientThrottle).where(ClientThrottle.key == key))
    return row.failures if row is not None else 0
