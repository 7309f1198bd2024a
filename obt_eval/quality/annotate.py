"""Adding per-utterance columns to a corpus manifest (and a summary to corpus.json) without losing others.

The manifest and corpus.json are re-read just before writing, so columns another step added meanwhile
survive; both are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from obt_eval.atomic import read_json, write_json, write_parquet


def add_manifest_columns(corpus_root: str | os.PathLike, columns: dict[str, dict[str, Any]],
                         dtypes: dict[str, str] | None = None) -> pd.DataFrame:
    """Set `columns[name][utterance id] = value` (missing ids get NA); returns the manifest written."""
    path = Path(corpus_root) / "manifest.parquet"
    manifest = pd.read_parquet(path)
    for name, values in columns.items():
        series = manifest["id"].map(values)
        manifest[name] = series.astype((dtypes or {}).get(name, series.dtype))
    write_parquet(path, manifest)
    return manifest


def add_corpus_summary(corpus_root: str | os.PathLike, key: str, summary: dict) -> None:
    path = Path(corpus_root) / "corpus.json"
    info = read_json(path) if path.exists() else {}
    info[key] = summary
    write_json(path, info)


def audio_fingerprint(path: str | os.PathLike) -> str:
    """Size and modification time of a corpus audio file: cheap, and changes when ingest rewrites it."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"
