"""Blinded audio serving: every clip a rater hears is fetched from ``/stim/<one-time token>``.

Gradio's own audio path sends file paths and original names to the browser and gives the same URL to
the same bytes (reference listening-tests.md §4.1). Here a random token is minted each time a trial is
shown, maps server-side to (rater invite, rating slot), and the bytes are re-encoded as plain 16-bit
PCM WAV with a random padding chunk: no name, no metadata, no URL or byte string shared across raters
or serves. The token map is in memory (like Gradio's own sessions): after an app restart a refresh
mints new tokens.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from obt_eval.study.serving import served_wav_bytes

TOKEN_TTL_SECONDS = 3 * 3600.0
MAX_TOKENS = 20_000


def wav_bytes(path: str | Path, nonce: bytes | None = None) -> bytes:
    """One serve of the clip: a bare 16-bit PCM WAV (fmt + data chunks only) whose samples differ per serve.

    `nonce` seeds the inaudible variation (obt_eval.study.serving): the same nonce gives the same bytes,
    a new one new samples — no hash, byte or sample string is shared across raters or serves.
    """
    return served_wav_bytes(path, nonce if nonce is not None else secrets.token_bytes(16))


@dataclass
class _Entry:
    invite: str
    audio_token: str
    created: float
    fetched_at: float | None = None
    payload: bytes | None = field(default=None, repr=False)


class StimulusTokens:
    """One-time URLs for a rater's two clips; a token is useless without the server-side map."""

    def __init__(self, resolve: Callable[[str, str], Path], ttl: float = TOKEN_TTL_SECONDS,
                 max_tokens: int = MAX_TOKENS, on_event: Callable[[str, str, str], dict] | None = None):
        self._resolve = resolve  # (invite, audio_token) -> file, refusing clips not served to that rater
        self._on_event = on_event  # (invite, audio_token, "play"|"ended") -> {"ok": bool, "both": bool}
        self._ttl = ttl
        self._max = max_tokens
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def mint(self, invite: str, audio_token: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._entries[token] = _Entry(invite, audio_token, time.monotonic())
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return token

    def _get(self, token: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if time.monotonic() - entry.created > self._ttl:
                del self._entries[token]
                return None
            return entry

    def fetched(self, token: str) -> bool:
        entry = self._get(token)
        return entry is not None and entry.fetched_at is not None

    def payload(self, token: str) -> bytes | None:
        """The clip's bytes for this token (re-encoded once per token, so range requests agree)."""
        entry = self._get(token)
        if entry is None:
            return None
        if entry.payload is None:
            try:
                path = self._resolve(entry.invite, entry.audio_token)
            except Exception:  # noqa: BLE001 — refused or missing: the caller answers 404 without detail
                return None
            entry.payload = wav_bytes(path)
        entry.fetched_at = entry.fetched_at or time.monotonic()
        return entry.payload

    def event(self, token: str, name: str) -> dict | None:
        """A playback event for a clip (recorded on the server); None for an unknown token."""
        entry = self._get(token)
        if entry is None or self._on_event is None or name not in ("play", "ended"):
            return None
        if name == "play" and entry.fetched_at is None:
            return {"ok": False, "both": False}  # playback cannot start before the bytes were fetched
        return self._on_event(entry.invite, entry.audio_token, name)

    def revoke_invite(self, invite: str) -> None:
        with self._lock:
            for token in [t for t, e in self._entries.items() if e.invite == invite]:
                del self._entries[token]


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes="):].split(",")[0].strip()
    start_s, _, end_s = first.partition("-")
    try:
        if start_s == "":
            start, end = max(0, size - int(end_s)), size - 1
        else:
            start, end = int(start_s), (int(end_s) if end_s else size - 1)
    except ValueError:
        return None
    if start >= size or start > end:
        return None
    return start, min(end, size - 1)


def router(tokens: StimulusTokens) -> APIRouter:
    """``GET /stim/{token}``: the bytes (with Range support, which iOS Safari needs for audio), never a name."""
    api = APIRouter()
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Accept-Ranges": "bytes"}

    @api.get("/stim/{token}", include_in_schema=False)
    def stimulus(token: str, request: Request) -> Response:
        data = tokens.payload(token)
        if data is None:
            return Response("gone: reload the page for new audio", status_code=404, media_type="text/plain",
                            headers={"Cache-Control": "no-store"})
        span = _range(request.headers.get("range"), len(data))
        if span is None:
            return Response(data, media_type="audio/wav", headers=headers)
        start, end = span
        return Response(data[start:end + 1], status_code=206, media_type="audio/wav",
                        headers={**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})

    @api.post("/stim/{token}/{event}", include_in_schema=False)
    def playback_event(token: str, event: str) -> JSONResponse:
        # Play and end events go here, not through the Gradio queue: they are 4 per trial and must stay cheap.
        result = tokens.event(token, event)
        if result is None:
            return JSONResponse({"ok": False}, status_code=404)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    return api
