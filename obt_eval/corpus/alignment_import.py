"""Attach phone alignments to an ingested corpus: Praat TextGrids or a ZeroSpeech item file.

Writes ``alignments.parquet`` (id, onset, offset, phone) for PNMI/purity and ``corpus.item`` for ABX.
Intervals of files that were not ingested, or that end after the audio, are dropped with a warning.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from obt_eval.alignments import PhoneInterval, items_from_intervals, read_item_file, read_textgrid, write_item_file
from obt_eval.atomic import write_parquet
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.workspace import safe_name

TOLERANCE = 0.02  # seconds an interval may run past the end of the audio (one frame)


def import_alignments(source: Path, manifest: pd.DataFrame, root: Path, warnings: list[str]) -> int:
    """Import alignments for `manifest`'s utterances into corpus folder `root`; returns aligned utterances."""
    durations = dict(zip(manifest["id"], manifest["duration"], strict=True))
    speakers = dict(zip(manifest["id"], manifest["speaker"], strict=True))
    if source.is_dir():
        intervals = _from_textgrids(source, durations, warnings)
        items = items_from_intervals(intervals, speakers)
    elif source.is_file():
        items = read_item_file(source)
        items["file"] = items["file"].map(lambda f: safe_name(Path(str(f)).stem))
        unknown = ~items["file"].isin(durations)
        if unknown.any():
            warnings.append(f"{int(unknown.sum())} item rows name files that were not ingested; dropped")
        items = items[~unknown]
        intervals = [PhoneInterval(f, float(a), float(b), str(p))
                     for f, a, b, p in zip(items["file"], items["onset"], items["offset"], items["phone"], strict=True)]
    else:
        raise BadInputError(f"alignments {source} do not exist", "pass a folder of TextGrids or an item file")

    late = [iv for iv in intervals if iv.offset > durations[iv.utterance] + TOLERANCE]
    if late:
        warnings.append(f"{len(late)} phone intervals end after their audio; dropped")
        bad = {(iv.utterance, iv.onset) for iv in late}
        intervals = [iv for iv in intervals if (iv.utterance, iv.onset) not in bad]
        items = items[[(f, float(a)) not in bad for f, a in zip(items["file"], items["onset"], strict=True)]]
    table = pd.DataFrame(
        [(iv.utterance, iv.onset, iv.offset, iv.phone) for iv in intervals], columns=["id", "onset", "offset", "phone"]
    )
    write_parquet(root / "alignments.parquet", table)
    write_item_file(root / "corpus.item", items)
    return int(table["id"].nunique())


def _from_textgrids(folder: Path, durations: dict[str, float], warnings: list[str]) -> list[PhoneInterval]:
    found = {safe_name(p.stem): p for p in sorted(folder.rglob("*")) if p.suffix.lower() == ".textgrid"}
    if not found:
        raise BadInputError(f"no .TextGrid files in {folder}", "pass a folder of Praat TextGrids or an item file")
    intervals: list[PhoneInterval] = []
    failed = []
    for uid, path in found.items():
        if uid not in durations:
            continue
        try:
            intervals.extend(PhoneInterval(uid, a, b, p) for a, b, p in read_textgrid(path))
        except ObtEvalError as exc:
            failed.append(f"{path.name}: {exc}")
    if failed:
        warnings.append(f"{len(failed)} TextGrids could not be read: " + "; ".join(failed[:5]))
    missing = len(set(durations) - set(found))
    if missing:
        warnings.append(f"{missing} ingested files have no TextGrid")
    return intervals
