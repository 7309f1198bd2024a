"""Artifact checksums: recorded in a sidecar when a file is written, verified when it is read.

A feature shard, codebook or checkpoint that was overwritten, truncated or half-copied must never be
used silently: it would feed garbage into k-means, training or a listening test and exit 0. Every
writer records ``{relative file name: "sha256:<hex>"}`` in its sidecar (``"checksums"``), and every
reader calls `verify_file`/`verify_files` before trusting the bytes. A mismatch raises
`CorruptArtifactError`, which names the file and the step to re-run.

Hashing streams the file in 1 MiB blocks (hashlib releases the GIL, so a writer thread can hash while
the encoder runs). A file verified once in a process is not hashed again while its size and mtime are
unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from obt_eval.errors import ObtEvalError

ALGORITHM = "sha256"
_BLOCK = 1 << 20


class CorruptArtifactError(ObtEvalError):
    """An artifact file does not match the checksum recorded when it was written (or is missing)."""

    def __init__(self, path: str | os.PathLike, problem: str, hint: str | None = None):
        self.path = Path(path)
        super().__init__(f"{self.path} is damaged: {problem}",
                         hint or "delete it, or re-run the step that wrote it with --force")


def file_checksum(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes."""
    digest = hashlib.new(ALGORITHM)
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return f"{ALGORITHM}:{digest.hexdigest()}"


class HashingWriter:
    """A binary file wrapper that hashes what is written through it: the checksum of a file as it is
    written (``np.save(HashingWriter(f), array)``), with no second read of the bytes."""

    def __init__(self, handle):
        self._handle = handle
        self._digest = hashlib.new(ALGORITHM)

    def write(self, data) -> int:
        self._digest.update(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()

    @property
    def checksum(self) -> str:
        return f"{ALGORITHM}:{self._digest.hexdigest()}"


def checksums(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """The checksum of each file `name` (relative to `folder`), for a sidecar's ``"checksums"`` entry."""
    folder = Path(folder)
    return {name: file_checksum(folder / name) for name in sorted(names)}


_verified: dict[tuple[str, int, int, str], bool] = {}
_lock = threading.Lock()


def _stat_key(path: Path, expected: str) -> tuple[str, int, int, str] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, expected)


def verify_file(path: str | os.PathLike, expected: str | None, hint: str | None = None) -> None:
    """Raise `CorruptArtifactError` unless `path` exists and hashes to `expected`.

    `expected=None` (an artifact written before checksums were recorded) only checks that the file
    exists; `hint` says which step to re-run (default: delete it or re-run with ``--force``).
    """
    path = Path(path)
    key = _stat_key(path, expected or "")
    if key is None:
        raise CorruptArtifactError(path, "the file is missing", hint)
    if expected is None:
        return
    with _lock:
        if _verified.get(key):
            return
    actual = file_checksum(path)
    if actual != expected:
        raise CorruptArtifactError(path, f"its checksum is {actual[:19]}…, the sidecar recorded {expected[:19]}…",
                                   hint)
    with _lock:
        _verified[key] = True


def verify_files(folder: str | os.PathLike, recorded: Mapping[str, str] | None, hint: str | None = None) -> None:
    """`verify_file` for every entry of a sidecar's ``"checksums"`` mapping (relative names under `folder`)."""
    folder = Path(folder)
    for name, expected in (recorded or {}).items():
        verify_file(folder / name, expected, hint)


def read_sidecar(path: str | os.PathLike, hint: str | None = None) -> dict:
    """A sidecar's JSON; a torn or overwritten sidecar raises `CorruptArtifactError`, not a raw JSON error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptArtifactError(path, "the file is missing", hint) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptArtifactError(path, f"it is not valid JSON ({type(exc).__name__})", hint) from None
    if not isinstance(data, dict):
        raise CorruptArtifactError(path, "it does not hold a JSON object", hint)
    return data
