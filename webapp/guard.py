"""The app's front door: one ASGI layer in front of our routes and Gradio's, for what no callback can check.

* Every browser gets a random, HttpOnly session cookie (`obt_client`); audio links are bound to it.
* Multipart bodies (Gradio's ``/gradio_api/upload`` and every other route that parses files) are for a
  logged-in researcher only (the signed cookie of `webapp.auth`), limited in size and file count.
* Every other request body is small (a rater's answers, a job's JSON): bounded, and checked whole
  before Gradio sees it, so a 50 MB "language" never reaches a callback.
* A queue event naming a function that does not exist gets 422, not Gradio's 500.
* Gradio's own OpenAPI description, docs and deep-link routes are closed (ours are off in FastAPI already).
* An invitation link of the old form (``/?invite=…``) goes on to the rater's page (``/rate?invite=…``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from starlette.formparsers import MultiPartException
from starlette.requests import cookie_parser

CLIENT_COOKIE = "obt_client"
CLIENT_COOKIE_SECONDS = 30 * 24 * 3600
MAX_BODY_BYTES = 256 * 1024  # the largest non-upload request: a job's JSON parameters are a few kB
# (deep links write a file of a session's whole page state to the server's disk on every call: not a feature a
# blinded study may offer)
CLOSED_PATHS = frozenset({"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", "/gradio_api/openapi.json",
                          "/gradio_api/docs", "/gradio_api/redoc", "/gradio_api/deep_link"})
QUEUE_JOIN = "/gradio_api/queue/join"


def binding_of(cookie_value: str | None) -> str:
    """What an audio link stores of the browser's session cookie: its hash ("" without a cookie)."""
    if not cookie_value:
        return ""
    return hashlib.sha256(f"obt-client|{cookie_value}".encode()).hexdigest()[:32]


def _valid_client_cookie(value: str | None) -> bool:
    return bool(value) and 20 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


class UploadRefused(MultiPartException):
    """An upload over the limits, raised while it streams in (Gradio's parser then deletes its temp files).

    The message says "maximum allowed size", which Gradio's upload route answers with 413.
    """


@dataclass(frozen=True)
class GuardSettings:
    is_researcher: Callable[[str | None], bool]  # the researcher cookie's value -> may upload?
    known_function: Callable[[int], bool]  # a queue event's fn_index -> exists?
    upload_max_bytes: int
    upload_max_files: int
    max_body_bytes: int = MAX_BODY_BYTES


def _cookie_header(headers: list[tuple[bytes, bytes]]) -> str:
    """All Cookie headers as one (Starlette, and so every route and callback, reads only the first)."""
    return "; ".join(value.decode("latin-1") for name, value in headers if name == b"cookie")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _answer(send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware (wrap the whole app: `Guard(app, settings)`)."""

    def __init__(self, app, settings: GuardSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if path.rstrip("/") in CLOSED_PATHS or path in CLOSED_PATHS:
            await _answer(send, 404, "Not Found")
            return
        headers = list(scope["headers"])
        cookie_text = _cookie_header(headers)
        cookies = cookie_parser(cookie_text)
        extra: list[tuple[bytes, bytes]] = []
        client = cookies.get(CLIENT_COOKIE)
        if not _valid_client_cookie(client):
            # A new browser (or a script): give it a session cookie, and let this request already carry it,
            # so what this request mints is bound to the cookie the browser will send from now on.
            client = secrets.token_urlsafe(24)
            cookie_text = f"{cookie_text}; {CLIENT_COOKIE}={client}" if cookie_text else f"{CLIENT_COOKIE}={client}"
            headers = [(k, v) for k, v in headers if k != b"cookie"] + [(b"cookie", cookie_text.encode("latin-1"))]
            scope = {**scope, "headers": headers}
            secure = scope.get("scheme") == "https" or _header(headers, b"x-forwarded-proto") == "https"
            extra.append((b"set-cookie", (f"{CLIENT_COOKIE}={client}; Path=/; Max-Age={CLIENT_COOKIE_SECONDS}; "
                                          f"HttpOnly; SameSite=Lax{'; Secure' if secure else ''}").encode()))

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        method = scope["method"]
        query = scope.get("query_string") or b""
        if path == "/" and method in ("GET", "HEAD") and b"invite=" in query:
            location = f"{root}/rate?{query.decode('latin-1')}".encode("latin-1")
            await _answer(send_with_cookie, 303, "see the rater's page", [(b"location", location)])
            return
        if method in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send_with_cookie)
            return
        ctype = (_header(headers, b"content-type") or "").lower()
        length = _header(headers, b"content-length")
        declared = int(length) if length and length.isdigit() else None
        if ctype.startswith("multipart/"):
            await self._multipart(scope, receive, send_with_cookie, cookies, ctype, declared)
            return
        if declared is not None and declared > self.settings.max_body_bytes:
            await _answer(send, 413, f"request body over {self.settings.max_body_bytes} bytes", extra)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.settings.max_body_bytes:
                await _answer(send, 413, f"request body over {self.settings.max_body_bytes} bytes", extra)
                return
        if path == QUEUE_JOIN and not self._known_event(body):
            await _answer(send, 422, "unknown event (fn_index)", extra)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_cookie)

    def _known_event(self, body: bytes) -> bool:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return True  # not JSON: Gradio answers 422 itself
        if not isinstance(data, dict) or data.get("fn_index") is None:
            return True
        index = data["fn_index"]
        if isinstance(index, bool) or not isinstance(index, int):
            return True  # the wrong type: Gradio's own validation answers 422
        return self.settings.known_function(index)

    async def _multipart(self, scope, receive, send, cookies, ctype, declared) -> None:
        settings = self.settings
        if not settings.is_researcher(cookies.get("obt_researcher")):
            await _answer(send, 403, "uploads are for logged-in researchers only")
            return
        if declared is not None and declared > settings.upload_max_bytes:
            await _answer(send, 413, f"upload over the maximum allowed size of {settings.upload_max_bytes} bytes")
            return
        boundary = b""
        for part in ctype.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "boundary":
                boundary = value.strip('"').encode("latin-1")
        marker = b"--" + boundary
        seen = 0
        parts = 0
        tail = b""

        async def counted():
            nonlocal seen, parts, tail
            message = await receive()
            chunk = message.get("body", b"")
            seen += len(chunk)
            if boundary:
                window = tail + chunk
                parts += window.count(marker) - tail.count(marker)
                tail = window[-(len(marker) - 1):] if len(marker) > 1 else b""
            if seen > settings.upload_max_bytes:
                raise UploadRefused(f"upload exceeded the maximum allowed size of {settings.upload_max_bytes} bytes")
            if parts - 1 > settings.upload_max_files:  # n parts have n+1 boundary markers (the last closes)
                raise UploadRefused(f"more than {settings.upload_max_files} files in one upload: the maximum allowed "
                                    "size of a request")
            return message

        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except UploadRefused as exc:  # a route that did not turn it into its own 413
            if not started:
                await _answer(send, 413, exc.message)
