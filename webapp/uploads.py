"""Researchers' uploads in Gradio's upload folder: deleted once used, and by age when never used.

Gradio stores every ``POST /gradio_api/upload`` under its upload folder and never deletes it while the
app runs. `webapp.guard` admits only researchers' uploads; this module removes them afterwards. Gradio
also leaves loose ``tmp*`` files at the top of that folder: the partial file of an upload whose client
went away, and an empty file per file a `gr.File(type="filepath")` hands to a callback (6.31
`File._process_single_file` creates one and forgets it). Those go by age too.
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
    """Delete uploads older than `max_age_seconds` (nobody ingested them) and Gradio's loose temp files
    of that age; returns how many files went. A file still being written is young (its mtime moves).
    """
    now = now if now is not None else time.time()
    old = []
    for item in list(tracked):
        try:
            if now - Path(item).stat().st_mtime > max_age_seconds:
                old.append(item)
        except FileNotFoundError:
            tracked.discard(item)
    removed = discard(old, tracked)
    folder = upload_folder()
    for loose in folder.glob("tmp*") if folder.exists() else []:
        with contextlib.suppress(OSError):
            if loose.is_file() and now - loose.stat().st_mtime > max_age_seconds:
                loose.unlink()
                removed += 1
    return removed
