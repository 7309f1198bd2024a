"""Researcher downloads (ratings CSV, analysis CSV) served from one-time links minted by a logged-in callback.

Files returned through Gradio land in its cache, where anyone with the URL can fetch them (reference
listening-tests.md §4.2, §7.22); here the bytes stay in server memory behind a random token that an
authenticated admin callback created, expire after a few minutes, and work once.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import APIRouter, Response

TTL_SECONDS = 600.0


@dataclass
class _Download:
    filename: str
    data: bytes
    media_type: str
    created: float


class Downloads:
    def __init__(self, ttl: float = TTL_SECONDS):
        self._items: dict[str, _Download] = {}
        self._lock = threading.Lock()
        self._ttl = ttl

    def add(self, filename: str, data: bytes, media_type: str = "text/csv") -> str:
        """Register bytes for download; returns the token of the one-time URL ``/download/<token>``."""
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, v in self._items.items() if now - v.created > self._ttl]:
                del self._items[key]
            self._items[token] = _Download(filename, data, media_type, now)
        return token

    def waiting(self, token: str, within: float = 0.0) -> bool:
        """Is the link still unused and valid for at least `within` more seconds? (The Results tab renews it.)"""
        with self._lock:
            item = self._items.get(token)
        return item is not None and time.monotonic() - item.created + within <= self._ttl

    def take(self, token: str) -> _Download | None:
        with self._lock:
            item = self._items.pop(token, None)
        if item is None or time.monotonic() - item.created > self._ttl:
            return None
        return item


DOWNLOADS = Downloads()


def router(downloads: Downloads) -> APIRouter:
    api = APIRouter()

    @api.get("/download/{token}", include_in_schema=False)
    def download(token: str) -> Response:
        item = downloads.take(token)
        if item is None:
            return Response("this download link has expired or was used already: open the Results tab (or the "
                            "experiment's report on the Admin tab) again for a new one", status_code=404,
                            media_type="text/plain")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.filename)
        return Response(item.data, media_type=item.media_type,
                        headers={"Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store"})

    return api
