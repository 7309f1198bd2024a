"""The optional metadata CSV of ingest: utterance id, speaker, language, split, transcript."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from obt_eval.errors import BadInputError

ID_ALIASES = ("utterance_id", "id", "utterance", "utt_id", "file", "filename", "path")
COLUMN_ALIASES = {
    "speaker": ("speaker", "speaker_id", "spk"),
    "language": ("language", "lang", "language_code"),
    "split": ("split", "subset", "set"),
    "transcript": ("transcript", "text", "transcription", "sentence"),
}


def read_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read the CSV (or TSV) and rename recognised columns to utterance_id/speaker/language/split/transcript."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"metadata file {path} does not exist")
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str, encoding="utf-8-sig")
    except Exception as exc:
        raise BadInputError(f"cannot parse metadata {path}: {exc}", "give a CSV with a header row") from exc
    lower = {c.lower().strip(): c for c in table.columns}
    id_col = next((lower[a] for a in ID_ALIASES if a in lower), None)
    if id_col is None:
        raise BadInputError(
            f"metadata {path} has no utterance id column (columns: {', '.join(table.columns)})",
            f"name one column {' or '.join(ID_ALIASES[:2])}: the audio file name without extension",
        )
    renamed = {id_col: "utterance_id"}
    for target, aliases in COLUMN_ALIASES.items():
        col = next((lower[a] for a in aliases if a in lower), None)
        if col is not None:
            renamed[col] = target
    table = table.rename(columns=renamed)[list(renamed.values())]
    table = table.dropna(subset=["utterance_id"]).reset_index(drop=True)
    duplicated = table["utterance_id"][table["utterance_id"].duplicated()].tolist()
    if duplicated:
        raise BadInputError(f"metadata {path} lists utterance ids more than once: {duplicated[:5]}")
    return table
