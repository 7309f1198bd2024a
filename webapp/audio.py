"""Blinded audio serving: every clip a rater hears is fetched from ``/stim/<token>``.

Gradio's own audio path sends file paths and original names to the browser and gives the same URL to
the same bytes (reference listening-tests.md §4.1). Here a random token is minted each time a trial is
shown, maps server-side to (rater, trial, rating slot), and the bytes are re-encoded as plain 16-bit PCM
WAV with per-link randomness: no name, no metadata, no URL or byte string shared across raters or serves.

The token map is a database table (`db.audio_links`), so app replicas share it and a reload flood cannot
evict other raters' links; it holds no bytes (each fetch re-renders the clip, the same bytes for every
fetch of one link, which range requests need). A link works only with the browser session cookie it was
minted for (`webapp.guard`), lives minutes, and at most a few are live per rater and trial.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from db import audio_links
from db.engine import Database, DatabaseBusy, with_retries
from obt_eval.study.serving import served_wav_bytes
from webapp.guard import CLIENT_COOKIE, binding_of

RETRY_AFTER_SECONDS = 1
AUDIO_THREADS = 2  # fetches and play events (webapp.gradio_tuning caps the app's other threads)


def wav_bytes(path: str | Path, nonce: bytes | None = None) -> bytes:
    """One serve of the clip: a bare 16-bit PCM WAV (fmt + data chunks only) whose samples differ per serve.

    `nonce` seeds the inaudible variation (obt_eval.study.serving): the same nonce gives the same bytes,
    a new one new samples — no hash, byte or sample string is shared across raters or serves.
    """
    return served_wav_bytes(path, nonce if nonce is not None else secrets.token_bytes(16))


class StimulusTokens:
    """Audio URL tokens over the database: resolve per fetch, record playback events (minting happens with
    the trial's serve, in its transaction: `db.audio_links.mint_links`)."""

    def __init__(self, db: Database, writing: Callable[[], AbstractContextManager[Session]] | None = None,
                 render: Callable[[Path, bytes], bytes] = wav_bytes):
        self._db = db
        self._writing = writing or db.write_session  # the app serialises its writers in-process (AppContext)
        self._render = render

    def payload(self, token: str, binding: str = "") -> bytes | None:
        """The clip's bytes for this link and browser (re-rendered per fetch, identical for every fetch)."""
        def look() -> audio_links.ServedClip | None:
            with self._db.session() as s:
                return audio_links.clip_for(s, token, binding)
        clip = with_retries(look)
        if clip is None:
            return None
        try:
            data = self._render(clip.path, clip.seed)
        except (OSError, RuntimeError, ValueError):  # a missing or unreadable file: the caller answers 404
            return None
        if clip.first_fetch:
            def mark() -> None:
                with self._writing() as s:
                    audio_links.mark_fetched(s, token, binding)
            with_retries(mark)
        return data

    def event(self, token: str, name: str, binding: str = "", at: dt.datetime | None = None) -> dict | None:
        """A playback event that reached the server at `at` (default: now); None for an unknown link or event."""
        def run() -> dict | None:
            with self._writing() as s:
                return audio_links.playback_event(s, token, name, binding, now=at)
        return with_retries(run)

    def purge(self) -> int:
        def run() -> int:
            with self._writing() as s:
                return audio_links.purge_expired(s)
        return with_retries(run)


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


def _busy() -> Response:
    return JSONResponse({"ok": False, "busy": True}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"})


def _binding(request: Request) -> str:
    return binding_of(request.cookies.get(CLIENT_COOKIE))


def router(tokens: StimulusTokens, threads: int = AUDIO_THREADS) -> APIRouter:
    """``GET /stim/{token}``: the bytes (with Range support, which iOS Safari needs for audio), never a name.

    Fetches and play events run on their own few threads, never queued behind the app's other work: a play
    event's time is when it arrived (a full play is judged from the times of its play and its end), and a
    rater's audio must not wait for a researcher's report.
    """
    api = APIRouter()
    limiter = anyio.CapacityLimiter(threads)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Accept-Ranges": "bytes"}

    @api.get("/stim/{token}", include_in_schema=False)
    async def stimulus(token: str, request: Request) -> Response:
        try:
            data = await anyio.to_thread.run_sync(tokens.payload, token, _binding(request), limiter=limiter)
        except DatabaseBusy:
            return _busy()
        if data is None:
            return Response("gone: reload the page for new audio (this link is for the browser it was shown in)",
                            status_code=404, media_type="text/plain", headers={"Cache-Control": "no-store"})
        span = _range(request.headers.get("range"), len(data))
        if span is None:
            return Response(data, media_type="audio/wav", headers=headers)
        start, end = span
        return Response(data[start:end + 1], status_code=206, media_type="audio/wav",
                        headers={**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})

    @api.post("/stim/{token}/{event}", include_in_schema=False)
    async def playback_event(token: str, event: str, request: Request) -> Response:
        # Play and end events go here, not through the Gradio queue: they are 4 per trial and must stay cheap.
        arrived = audio_links.utcnow()  # before any wait for a thread: when the browser reported it, as near as we know
        try:
            result = await anyio.to_thread.run_sync(tokens.event, token, event, _binding(request), arrived,
                                                    limiter=limiter)
        except DatabaseBusy:
            return _busy()  # the page retries after Retry-After
        if result is None:
            return JSONResponse({"ok": False}, status_code=404)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    return api
