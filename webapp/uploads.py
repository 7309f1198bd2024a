"""Researchers' uploads in Gradio's upload folder: deleted once used, and by age when never used.

Gradio stores every ``POST /gradio_api/upload`` under its upload folder and never deletes it while the
app runs. `webapp.guard` admits only researchers' uploads; this module removes them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def _in_upload_folder(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(upload_folder())
    except OSError:
        return False


def discard(paths: Iterable[str | os.PathLike], tracked: set[str] | None = None) -> int:
    """Delete uploaded files (only ones inside Gradio's upload folder) and their emptied hash folders."""
    removed = 0
    for item in paths:
        path = Path(item)
        if not _in_upload_folder(path):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # Gradio keeps each upload in a folder named by its hash
        if tracked is not None:
            tracked.discard(str(item))
    return removed


def sweep(tracked: set[str], max_age_seconds: float, now: float | None = None) -> int:
    """Delete tracked uploads older than `max_age_seconds` (uploads nobody ingested); returns how many."""
    now = now if now is not None else time.time()
    old = []
    for item in list(tracked):
        try:
            if now - Path(item).stat().st_mtime > max_age_seconds:
                old.append(item)
        except FileNotFoundError:
            tracked.discard(item)
    return discard(old, tracked)
