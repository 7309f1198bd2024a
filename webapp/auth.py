"""Researcher access: checked on the server in every admin and results callback, and for every upload.

Hiding a tab is not access control (every Gradio event can be called by a script, reference
listening-tests.md §0.2, §4.2), so a session becomes a researcher's only by a login callback that sets
`AdminSession.user` inside `gr.State`, which lives on the server and which a client cannot set.

Password guessing is throttled per client address (with back-off, in the database so every replica
counts together): a flood of wrong passwords from one address never slows a researcher elsewhere.
Uploads bypass Gradio's events (``POST /gradio_api/upload``), so a login also hands the browser a signed,
HttpOnly researcher cookie (through a short-lived ticket the page exchanges at ``/auth/researcher``); the
upload gate in `webapp.guard` admits only requests that carry it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import time
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from db import throttle
from db.engine import Database
from obt_eval.errors import ObtEvalError

MAX_PASSWORD_CHARS = 1024
RESEARCHER_COOKIE = "obt_researcher"
RESEARCHER_COOKIE_SECONDS = 12 * 3600
TICKET_SECONDS = 120  # the page exchanges the ticket at once; a copied ticket is soon worthless

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NotAuthorised(ObtEvalError):
    """A researcher-only action from a session that has not logged in (or a throttled login)."""


@dataclass
class AdminSession:
    """Per-browser-session login state, kept in gr.State (server side)."""

    user: str | None = None

    @property
    def ok(self) -> bool:
        return self.user is not None


# --- who is asking --------------------------------------------------------------------------------------

def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(text: str, proxies: tuple[Network, ...]) -> bool:
    addr = _address(text)
    return addr is not None and any(addr in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...] = ()) -> str:
    """The client's address: the socket peer, or (only when the peer is a trusted proxy) the nearest
    X-Forwarded-For hop that is not itself a trusted proxy. A client cannot choose its key by sending the
    header itself: its own entries sit left of the first untrusted hop and are never read.
    """
    addr = peer or "unknown"
    if forwarded_for and proxies:
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            if not _trusted(addr, proxies):
                break
            addr = hop.strip()
    return addr


def client_key(address: str) -> str:
    """The throttle key of an address: IPv6 by /64 (one subscriber's whole block), IPv4 as is."""
    addr = _address(address)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    if isinstance(addr, ipaddress.IPv6Address):
        return str(addr.ipv4_mapped)
    return str(addr) if addr is not None else address[:100]


def parse_proxies(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks (a bad entry is an error: a silent typo would trust nobody)."""
    out = []
    for item in text.split(","):
        if item.strip():
            out.append(ipaddress.ip_network(item.strip(), strict=False))
    return tuple(out)


# --- the password ---------------------------------------------------------------------------------------

def check_password(db: Database, session: AdminSession, given: str, expected: str, client: str = "unknown") -> bool:
    """Constant-time compare, refused outright while this client is backing off after failures."""
    key = f"login:{client_key(client)}"
    with db.session() as s:
        wait = throttle.wait_seconds(s, key)
    if wait > 0:
        raise NotAuthorised("too many wrong passwords from this address", f"wait {int(wait) + 1} s and try again")
    given = given or ""
    if expected and len(given) <= MAX_PASSWORD_CHARS and hmac.compare_digest(given.encode(), expected.encode()):
        session.user = "admin"
        with db.write_session() as s:
            throttle.record_success(s, key)
        return True
    with db.write_session() as s:
        throttle.record_failure(s, key)
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


# --- signed researcher cookie ---------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, purpose: str, subject: str, seconds: float, now: float | None = None) -> str:
    """``subject.expiry.mac``: a value only this server can make, for one purpose, until it expires."""
    expiry = int((now if now is not None else time.time()) + seconds)
    body = f"{_b64(subject.encode())}.{expiry}"
    mac = hmac.new(key, f"{purpose}|{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac[:24])}"


def verify(key: bytes, purpose: str, value: str | None, now: float | None = None) -> str | None:
    """The subject of a valid, unexpired value signed for `purpose`; else None."""
    if not value or len(value) > 512 or value.count(".") != 2:
        return None
    body, _, mac = value.rpartition(".")
    expected = hmac.new(key, f"{purpose}|{body}".encode(), hashlib.sha256).digest()[:24]
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        subject_b64, expiry = body.split(".")
        if int(expiry) < (now if now is not None else time.time()):
            return None
        return _unb64(subject_b64).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def cookie_key(secret: bytes, password: str) -> bytes:
    """The signing key of researcher cookies: changing the password invalidates every cookie given out."""
    return hmac.new(secret, f"researcher-cookie|{password}".encode(), hashlib.sha256).digest()


def researcher_ticket(key: bytes, user: str) -> str:
    return sign(key, "ticket", user, TICKET_SECONDS)


def researcher_from_cookie(key: bytes, value: str | None) -> str | None:
    return verify(key, "researcher", value)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def router(key: bytes) -> APIRouter:
    """``POST /auth/researcher`` (ticket -> cookie) and ``POST /auth/logout`` (clears it)."""
    api = APIRouter()

    @api.post("/auth/researcher", include_in_schema=False)
    async def exchange(request: Request) -> Response:
        try:
            ticket = json.loads(await request.body() or b"{}").get("ticket")
        except (ValueError, AttributeError):
            ticket = None
        user = verify(key, "ticket", ticket if isinstance(ticket, str) else None)
        if user is None:
            return Response("no valid login ticket", status_code=403, media_type="text/plain")
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        response.set_cookie(RESEARCHER_COOKIE, sign(key, "researcher", user, RESEARCHER_COOKIE_SECONDS),
                            max_age=RESEARCHER_COOKIE_SECONDS, path="/", httponly=True, samesite="strict",
                            secure=_secure(request))
        return response

    @api.post("/auth/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        response.delete_cookie(RESEARCHER_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
        return response

    return api
