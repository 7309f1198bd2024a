"""Identify exactly which weights produced a feature store: Hub commit hash or a content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json")


def files_fingerprint(files: list[Path]) -> str:
    """sha256 over the names and bytes of the given files."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            while block := f.read(1 << 23):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def directory_fingerprint(path: Path) -> str:
    """sha256 over the names and bytes of a local checkpoint's weight and config files."""
    return files_fingerprint(sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES))
