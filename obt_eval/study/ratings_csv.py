"""The long-format ratings CSV: one row per rating, written by `study export`, read by `stats`.

Cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR) get a leading
apostrophe (OWASP "CSV injection"); reading strips it again, so export → stats round-trips.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from obt_eval.atomic import atomic_path, write_json
from obt_eval.errors import BadInputError, NotFoundError

EXPORT_COLUMNS = [
    "study", "rater", "utterance", "system", "system_role", "score", "trial", "kind", "position",
    "preference", "repeat_of", "block", "served_at", "first_play_at", "play_ended_at", "submitted_at",
    "rater_native", "rater_linguist", "rater_languages",
]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Prefix a text cell that a spreadsheet would evaluate; numbers and other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def restore(value: Any) -> Any:
    """Undo `neutralise` on a cell read back from an exported CSV."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def _is_text(column: pd.Series) -> bool:
    # pandas 3 gives text its own "str" dtype; older pandas uses object
    return pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)


def protocol_path(csv_path: str | os.PathLike) -> Path:
    """Where the protocol snapshot goes beside the CSV: ``OUT.protocol.json``."""
    path = Path(csv_path)
    return path.with_name(path.stem + ".protocol.json")


def write_ratings_csv(df: pd.DataFrame, path: str | os.PathLike, protocol: dict | None = None) -> Path:
    """Write ratings (export column order first, extra columns after) atomically, plus the protocol JSON."""
    ordered = [c for c in EXPORT_COLUMNS if c in df.columns] + [c for c in df.columns if c not in EXPORT_COLUMNS]
    safe = df[ordered].copy()
    for col in safe.columns:
        if _is_text(safe[col]):
            safe[col] = safe[col].map(neutralise)
    with atomic_path(path, suffix=".csv") as tmp:
        safe.to_csv(tmp, index=False)
    if protocol is not None:
        write_json(protocol_path(path), protocol)
    return Path(path)


def read_ratings_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a long-format ratings CSV (minimum columns rater, utterance, system, score)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no ratings file {path}", "give the CSV written by `obt-eval study export`")
    try:
        df = pd.read_csv(path, dtype={"rater": str, "utterance": str, "system": str, "trial": str,
                                      "repeat_of": str, "position": str, "preference": str, "kind": str},
                         keep_default_na=True, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {path} as CSV: {exc}", "save the ratings as UTF-8 CSV") from exc
    for col in df.columns:
        if _is_text(df[col]):
            df[col] = df[col].map(restore)
    return df
