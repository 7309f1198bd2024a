"""The optional metadata CSV of ingest: utterance id, speaker, language, split, transcript.

Errors describe what is wrong with the file (binary, JSON, spreadsheet, no id column) without
echoing its contents: a wrong file picked by mistake may hold anything.
"""

from __future__ import annotations

import csv
import os
import re
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


CSV_HINT = "give a UTF-8 CSV (or TSV) with a header row, e.g. utterance_id,speaker,language,split,transcript"
DELIMITERS = ",\t;|"
# a header cell shown back to the user must look like a column name, not like a line of some other file
_COLUMN_NAME = re.compile(r"[\w.()/-]+(?: [\w.()/-]+){0,2}")


def _not_csv(path: Path, head: bytes) -> str | None:
    """What kind of non-CSV file `head` (its first bytes) looks like, or None."""
    signatures = {b"PK\x03\x04": "a ZIP archive (an .xlsx/.ods spreadsheet?)", b"RIFF": "a WAV audio file",
                  b"\xd0\xcf\x11\xe0": "an old Excel/Office file", b"%PDF": "a PDF", b"fLaC": "a FLAC audio file",
                  b"ID3": "an MP3 audio file", b"OggS": "an Ogg audio file", b"\x89PNG": "a PNG image"}
    for magic, kind in signatures.items():
        if head.startswith(magic):
            return kind
    if b"\x00" in head:
        return "binary data"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "not UTF-8 text"
        text = head[: exc.start].decode("utf-8-sig", errors="ignore")
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return "JSON"
    if stripped[:1] == "<":
        return "XML/HTML"
    return None


def _delimiter(path: Path, sample: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","  # one column, or nothing to tell: a plain CSV


def read_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read the CSV (or TSV) and rename recognised columns to utterance_id/speaker/language/split/transcript."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"metadata file {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    kind = _not_csv(path, head)
    if kind is not None:
        raise BadInputError(f"metadata {path} is not a CSV file: it looks like {kind}", CSV_HINT)
    sample = head.decode("utf-8-sig", errors="ignore")
    try:
        table = pd.read_csv(path, sep=_delimiter(path, sample), dtype=str, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(f"metadata {path} is not UTF-8 text", CSV_HINT) from None
    except Exception as exc:
        # pandas messages quote lines of the file; say where it breaks, never what it holds
        where = re.search(r"line \d+", str(exc))
        detail = f" (rows of different widths near {where.group(0)})" if where else ""
        raise BadInputError(f"cannot parse metadata {path} as CSV{detail}", CSV_HINT) from None
    lower = {str(c).lower().strip(): c for c in table.columns}
    id_col = next((lower[a] for a in ID_ALIASES if a in lower), None)
    if id_col is None:
        names = [str(c) for c in table.columns]
        if len(names) == 1:
            shown = "its first line is a single field: no comma, tab, semicolon or | separates columns"
        elif len(names) <= 50 and all(len(n) <= 30 and _COLUMN_NAME.fullmatch(n) for n in names):
            shown = f"columns: {', '.join(names[:12])}{', …' if len(names) > 12 else ''}"
        else:
            shown = f"its first line has {len(names)} fields that do not look like column names"
        raise BadInputError(
            f"metadata {path} has no utterance id column ({shown})",
            f"name one column {' or '.join(ID_ALIASES[:2])}: the audio file name without extension; {CSV_HINT}",
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
