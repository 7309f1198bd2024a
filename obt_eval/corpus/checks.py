"""Per-file audio checks for ingest: every rejection names its reason in words a user can act on."""

from __future__ import annotations

import os
import struct
from pathlib import Path


class Rejected(Exception):
    """A file that cannot enter the corpus; the message is the reason shown to the user."""


def check_readable(path: Path) -> int:
    """Return the file size, or reject unreadable paths and empty files."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise Rejected(f"cannot access the file ({exc.strerror or exc})") from exc
    if not os.access(path, os.R_OK):
        raise Rejected("cannot read the file: permission denied")
    if size == 0:
        raise Rejected("empty file (0 bytes)")
    return size


def wav_declared_data_bytes(path: Path) -> tuple[int, int] | None:
    """(declared, available) bytes of a RIFF/WAVE file's data chunk, or None if not a plain RIFF file.

    libsndfile silently shortens a truncated WAV to what is on disk, so truncation must be found by
    comparing the header's data-chunk size with the bytes actually present.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, clen = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                        return None
                    return clen, size - f.tell()
                f.seek(clen + (clen & 1), os.SEEK_CUR)
    except OSError:
        return None
