"""Identify exactly which weights produced a feature store: Hub commit hash or a content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json")


def directory_fingerprint(path: Path, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> str:
    """sha256 over the names and bytes of a local checkpoint's weight and config files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes):
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            while block := f.read(1 << 23):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]
