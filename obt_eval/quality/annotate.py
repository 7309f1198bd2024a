"""Adding per-utterance columns to a corpus manifest (and a summary to corpus.json) without losing others.

The manifest and corpus.json are re-read just before writing, under the corpus folder's lock, so
columns and summaries another step added meanwhile survive; both are written atomically, and the
manifest through `obt_eval.corpus.files.write_manifest`, which records its new checksum in corpus.json
(every reader verifies it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from obt_eval.corpus.files import corpus_lock, read_info, update_info, verify_table, write_manifest


def add_manifest_columns(corpus_root: str | os.PathLike, columns: dict[str, dict[str, Any]],
                         dtypes: dict[str, str] | None = None) -> pd.DataFrame:
    """Set `columns[name][utterance id] = value` (missing ids get NA); returns the manifest written."""
    root = Path(corpus_root)
    with corpus_lock(root):
        verify_table(root, "manifest.parquet", read_info(root))  # never build on a damaged manifest
        manifest = pd.read_parquet(root / "manifest.parquet")
        for name, values in columns.items():
            series = manifest["id"].map(values)
            manifest[name] = series.astype((dtypes or {}).get(name, series.dtype))
        write_manifest(root, manifest)
    return manifest


def add_corpus_summary(corpus_root: str | os.PathLike, key: str, summary: dict) -> None:
    update_info(corpus_root, lambda info: info.__setitem__(key, summary))


def audio_fingerprint(path: str | os.PathLike) -> str:
    """Size and modification time of a corpus audio file: cheap, and changes when ingest rewrites it."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"
