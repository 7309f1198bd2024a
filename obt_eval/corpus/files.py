"""A corpus folder's files and their checksums: one writer per table, verification on read, audio the corpus owns.

``corpus.json`` is the corpus's sidecar. Its ``"checksums"`` entry maps each table (``manifest.parquet``,
``sources.parquet``, ``alignments.parquet``, ``corpus.item``) to the checksum of its bytes; every writer
of a table goes through `write_corpus_file`, which records the new checksum with the file, and
`Corpus.open` verifies the tables it reads. Steps that annotate the manifest (LID, DNSMOS) rewrite it
through `write_manifest` too, so the recorded checksum always follows the file.

A rewrite first lists the new checksum as ``"checksums_pending"``, then renames the file into place,
then makes it the recorded one: a process killed at any point leaves a file that matches one of the
two, never a good corpus that looks damaged. Read-modify-write of the manifest and of ``corpus.json``
holds a lock on the corpus folder (``.corpus.lock``, an flock released by the kernel if the holder
dies), so two annotation jobs running at once cannot drop each other's columns or checksums.

Audio the corpus owns (canonical copies and segment WAVs, not the user's 16 kHz files used in place)
is recorded at ingest with its size and checksum (manifest columns ``audio_size``, ``audio_checksum``;
the same in ``sources.parquet`` for the canonical copy of each file). `read_corpus_audio` checks the
size, then hashes the very bytes it decodes: every step that reads a whole utterance (extraction,
vocoder training, LID…) verifies it at the cost of hashing, with no second read of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shlex
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.atomic import atomic_path, write_json
from obt_eval.integrity import ALGORITHM, CorruptArtifactError, file_checksum, read_sidecar, verify_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process lock still serialises threads
    fcntl = None

INFO = "corpus.json"
TABLES = ("manifest.parquet", "sources.parquet", "alignments.parquet", "corpus.item")
LOCK = ".corpus.lock"


# ------------------------------------------------------------------------------------------- lock


class _FolderLock:
    """Exclusive across processes (flock) and threads (RLock); re-entrant within a thread."""

    def __init__(self, path: Path):
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0
        self.handle = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self.rlock:
            if self.depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.handle = open(self.path, "a+b")  # noqa: SIM115 - held across the yield
                if fcntl is not None:
                    fcntl.flock(self.handle, fcntl.LOCK_EX)
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    if fcntl is not None:
                        fcntl.flock(self.handle, fcntl.LOCK_UN)
                    self.handle.close()
                    self.handle = None


_locks: dict[str, _FolderLock] = {}
_locks_guard = threading.Lock()


def corpus_lock(root: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """Hold the corpus folder's lock: for a read-modify-write of the manifest or corpus.json."""
    path = Path(root).resolve() / LOCK
    with _locks_guard:
        lock = _locks.setdefault(str(path), _FolderLock(path))
    return lock.held()


# ------------------------------------------------------------------------------------ corpus.json


def read_info(root: str | os.PathLike) -> dict:
    """``corpus.json`` for a writer: {} when missing or unreadable.

    Only ingest (the repair) meets an unreadable one here; every other writer opens the corpus first,
    which refuses it.
    """
    try:
        return read_sidecar(Path(root) / INFO)
    except CorruptArtifactError:
        return {}


def update_info(root: str | os.PathLike, change: Callable[[dict], None]) -> dict:
    """Apply `change` to corpus.json in place (under the corpus lock, written atomically); returns it."""
    with corpus_lock(root):
        info = read_info(root)
        change(info)
        write_json(Path(root) / INFO, info)
        return info


def write_info(root: str | os.PathLike, info: dict) -> None:
    """Replace corpus.json by `info`, keeping the checksums the tables recorded (ingest's last step)."""
    def replace(old: dict) -> None:
        kept = {k: old[k] for k in ("checksums", "checksums_pending") if k in old}
        old.clear()
        old.update({k: v for k, v in info.items() if k not in kept}, **kept)

    update_info(root, replace)


# ------------------------------------------------------------------------------------------ tables


def write_corpus_file(root: str | os.PathLike, name: str, write: Callable[[Path], None]) -> str:
    """Write table `name` of the corpus at `root` with ``write(tmp_path)`` and record its checksum; returns it."""
    root = Path(root)
    with corpus_lock(root):
        with atomic_path(root / name) as tmp:
            write(tmp)
            checksum = file_checksum(tmp)
            update_info(root, lambda info: info.setdefault("checksums_pending", {}).__setitem__(name, checksum))

        def settle(info: dict) -> None:
            info.setdefault("checksums", {})[name] = checksum
            pending = info.get("checksums_pending", {})
            pending.pop(name, None)
            if not pending:
                info.pop("checksums_pending", None)

        update_info(root, settle)
    return checksum


def write_table(root: str | os.PathLike, name: str, table: pd.DataFrame) -> str:
    """A Parquet table of the corpus (manifest, sources, alignments), with its checksum in corpus.json."""
    return write_corpus_file(root, name, lambda tmp: table.to_parquet(tmp, index=False))


def write_manifest(root: str | os.PathLike, manifest: pd.DataFrame) -> str:
    """The one way to (re)write ``manifest.parquet``: ingest and every annotation step use it."""
    return write_table(root, "manifest.parquet", manifest)


def write_text_file(root: str | os.PathLike, name: str, text: str) -> str:
    return write_corpus_file(root, name, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def ingest_hint(info: dict, root: str | os.PathLike | None = None) -> str:
    """The command that repairs a corpus: ingest again, from the folder and with the files it was made from."""
    name = info.get("name") or Path(root or "").name
    command = f"obt-eval ingest {shlex.quote(str(info.get('source') or 'AUDIO_DIR'))} --name {shlex.quote(name)}"
    for option in ("metadata", "alignments"):
        if info.get(option):
            command += f" --{option} {shlex.quote(str(info[option]))}"
    options = info.get("options") or {}
    if options.get("copy_audio"):
        command += " --copy-audio"
    if options.get("segmenting"):
        command += " --segment"
    return (f"re-run `{command}` with the options it was made with: it rewrites the corpus tables and "
            "re-creates damaged or missing audio of the corpus (then re-run any LID/quality annotation)")


def verify_table(root: str | os.PathLike, name: str, info: dict) -> None:
    """Raise `CorruptArtifactError` unless table `name` matches its recorded (or pending) checksum.

    Tables recorded before corpora had checksums, and optional tables the corpus lacks, are not checked.
    """
    path = Path(root) / name
    expected = (info.get("checksums") or {}).get(name)
    pending = (info.get("checksums_pending") or {}).get(name)
    if expected is None and pending is None:
        return
    hint = ingest_hint(info, root)
    try:
        verify_file(path, expected or pending, hint)
    except CorruptArtifactError:
        if pending is None or expected is None:
            raise
        verify_file(path, pending, hint)  # killed between the rename and recording the new checksum


# ------------------------------------------------------------------------------------------- audio


def bytes_checksum(data: bytes) -> str:
    """The checksum `file_checksum` gives a file holding `data`."""
    return f"{ALGORITHM}:{hashlib.new(ALGORITHM, data).hexdigest()}"


def write_owned_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int, subtype: str) -> tuple[int, str]:
    """Write a WAV the corpus owns atomically; returns its (size, checksum), hashed from memory (no re-read)."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate, subtype=subtype, format="WAV")
    data = buffer.getvalue()
    with atomic_path(path, suffix=".wav") as tmp:
        tmp.write_bytes(data)
    return len(data), bytes_checksum(data)


def _recorded(value) -> bool:  # noqa: ANN001 - a manifest cell: str, number, None or NA
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value is not pd.NA


def audio_problem(path: str | os.PathLike, size, checksum) -> str | None:  # noqa: ANN001 - manifest cells
    """Why an owned audio file no longer matches what ingest wrote (None: it does, or it is not owned).

    Hashes the whole file: for ingest's resume check, which has no other reason to read it.
    """
    if not _recorded(checksum):
        return None if Path(path).exists() else "the file is missing"
    try:
        actual = Path(path).stat().st_size
    except OSError:
        return "the file is missing"
    if _recorded(size) and actual != int(size):
        return f"it has {actual} bytes, ingest wrote {int(size)}"
    digest = file_checksum(path)
    return None if digest == checksum else f"its checksum is {digest[:19]}…, ingest recorded {str(checksum)[:19]}…"


def read_corpus_audio(path: str | os.PathLike, size, checksum, hint: str | None = None) -> np.ndarray:  # noqa: ANN001
    """Canonical 16 kHz mono audio of one utterance, verified against what ingest recorded.

    The size is checked first (cheap); then the bytes read for decoding are hashed, so the check costs
    no second read. Files not owned by the corpus (no recorded checksum) are decoded as they are.
    """
    from obt_eval.audio import load_16k

    path = Path(path)
    if not _recorded(checksum):
        return load_16k(path)
    try:
        actual = path.stat().st_size
    except OSError:
        raise CorruptArtifactError(path, "the file is missing", hint) from None
    if _recorded(size) and actual != int(size):
        raise CorruptArtifactError(path, f"it has {actual} bytes, ingest wrote {int(size)}", hint)
    data = path.read_bytes()
    digest = bytes_checksum(data)
    if digest != checksum:
        raise CorruptArtifactError(path, f"its checksum is {digest[:19]}…, ingest recorded {str(checksum)[:19]}…",
                                   hint)
    return load_16k(io.BytesIO(data))
