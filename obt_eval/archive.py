"""Safe extraction of zip archives from outside: bounded size, ratio and entry count, no path escapes, all or nothing.

A zip from a browser can be a bomb (1 MB that expands to 1 GiB), can name entries like ``../x`` or
``/etc/x`` (zip-slip), symlinks, or the same path twice. Entries are streamed with running counts (the
sizes in the archive's headers can lie), every target path is resolved and must stay inside the
destination (a real path check, not a string prefix: ``/up`` is a prefix of ``/up_evil``), and all
entries go to a temporary folder next to the destination, moved into place only when the whole archive
was valid: a refused archive leaves the destination as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from obt_eval.errors import BadInputError

CHUNK = 1 << 20
RATIO_FLOOR_BYTES = 64 * 1024  # tiny entries (a short CSV of one repeated value) may compress very well
SKIPPED = ("__MACOSX/",)  # macOS resource forks: not recordings, and full of odd names


class UnsafeArchiveError(BadInputError):
    """An archive that is too large, too compressed, too crowded, or names paths outside its folder."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one archive may expand to (defaults fit a corpus of many hours of 16-bit WAV)."""

    max_total_bytes: int = 8 * 2**30
    max_files: int = 20_000
    max_ratio: float = 200.0  # expanded / compressed, per entry and for the whole archive (WAV: about 1-3)


def _entry_path(name: str) -> PurePosixPath:
    """The entry's relative path, or UnsafeArchiveError for absolute, drive, parent or empty names."""
    text = name.replace("\\", "/")
    if "\0" in text or text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise UnsafeArchiveError(f"the archive entry {name!r} is an absolute path", "zip the folder's contents")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"the archive entry {name!r} points outside the folder",
                                 "zip the recordings without '..' in their paths")
    return PurePosixPath(*parts)


def _inside(root: Path, relative: PurePosixPath) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"the archive entry {str(relative)!r} points outside the folder",
                                 "zip the recordings without links or '..' in their paths")
    return target


def _check_entries(archive: zipfile.ZipFile, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The entries to extract, after every check that needs no decompression."""
    entries = []
    seen: set[str] = set()
    declared = 0
    for info in archive.infolist():
        if info.filename.startswith(SKIPPED) or info.is_dir():
            continue
        relative = _entry_path(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"the archive entry {info.filename!r} is a symbolic link",
                                     "zip the files themselves, not links to them")
        key = str(relative).lower()
        if key in seen:
            raise UnsafeArchiveError(f"the archive names {info.filename!r} twice", "remove the duplicate entry")
        seen.add(key)
        entries.append((info, relative))
        if len(entries) > limits.max_files:
            raise UnsafeArchiveError(f"the archive holds more than {limits.max_files} files",
                                     "split it into several archives")
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise UnsafeArchiveError(f"the archive expands to more than {limits.max_total_bytes} bytes",
                                     "split it into several archives")
        if info.file_size > limits.max_ratio * max(info.compress_size, RATIO_FLOOR_BYTES):
            raise UnsafeArchiveError(f"the archive entry {info.filename!r} is compressed more than "
                                     f"{limits.max_ratio:.0f}:1 (a zip bomb?)", "zip the recordings themselves")
    return entries


def _stream(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, limits: ArchiveLimits) -> int:
    """Copy one entry with running counts (headers can lie); returns the bytes written."""
    cap = min(budget, int(limits.max_ratio * max(info.compress_size, RATIO_FLOOR_BYTES)))
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, open(target, "xb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > cap:
                raise UnsafeArchiveError(f"the archive entry {info.filename!r} expands beyond the limits "
                                         "(total size or compression ratio)", "split or re-zip the recordings")
            out.write(chunk)
    return written


def merge_into(src: Path, dest: Path) -> list[Path]:
    """Move every file under `src` to the same relative path under `dest` (same file system: renames)."""
    moved = []
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved.append(target)
    return moved


def extract_zip(archive_path: str | os.PathLike, dest: str | os.PathLike,
                limits: ArchiveLimits = ArchiveLimits()) -> list[Path]:
    """Extract a zip into `dest` (created if needed) within `limits`; returns the files written.

    Raises UnsafeArchiveError (a BadInputError that says what to do) and then leaves `dest` untouched.
    """
    archive_path, dest = Path(archive_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        try:
            archive = zipfile.ZipFile(archive_path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UnsafeArchiveError(f"{archive_path.name} is not a readable zip archive: {exc}",
                                     "upload a .zip made by a standard zip tool") from exc
        with archive:
            entries = _check_entries(archive, limits)
            archive_bytes = max(archive_path.stat().st_size, RATIO_FLOOR_BYTES)
            budget = min(limits.max_total_bytes, int(limits.max_ratio * archive_bytes))
            for info, relative in entries:
                target = _inside(staging, relative)
                try:
                    budget -= _stream(archive, info, target, budget, limits)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
                    raise UnsafeArchiveError(f"the archive entry {info.filename!r} cannot be read: {exc}",
                                             "re-create the archive with a standard zip tool") from exc
                except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                    raise UnsafeArchiveError(f"the archive entry {info.filename!r} clashes with another entry",
                                             "give every file its own path") from exc
        for _, relative in entries:  # nothing may land on an existing folder of the destination
            if (dest / relative).is_dir():
                raise UnsafeArchiveError(f"{relative} is a folder in the destination already", "rename the file")
        return merge_into(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
