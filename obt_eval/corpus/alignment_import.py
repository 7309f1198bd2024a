"""Attach phone alignments to an ingested corpus: Praat TextGrids or a ZeroSpeech item file.

Alignments name the ingested *files* (a TextGrid per file, or an item file's ``file`` column). For a
file cut into segments they are cut and shifted into its segments: an interval inside a segment moves
to the segment's clock; one that crosses a cut is dropped or clipped to each segment it overlaps
(cuts lie in pauses, so a phone crosses one only when the VAD missed speech or speech had to be cut);
one in no segment (a left-out pause) is dropped and counted.

Writes ``alignments.parquet`` (id, onset, offset, phone) for PNMI/purity and ``corpus.item`` for ABX.
Intervals of files that were not ingested, or that end after the audio, are dropped with a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.alignments import PhoneInterval, item_file_text, items_from_intervals, read_item_file, read_textgrid
from obt_eval.corpus.files import write_table, write_text_file
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.frames import SAMPLE_RATE
from obt_eval.workspace import safe_name

TOLERANCE = 0.02  # seconds an interval may run past the end of the audio (one frame)
EDGE = 1.0 / SAMPLE_RATE  # segment times are whole samples: half-sample rounding must not make a phone cross
MIN_PIECE = 0.01  # s; a clipped piece shorter than this is not a phone any more


def import_alignments(
    source: Path,
    manifest: pd.DataFrame,
    root: Path,
    warnings: list[str],
    *,
    sources: pd.DataFrame | None = None,
    phones_at_cuts: str = "drop",
) -> int:
    """Import alignments for `manifest`'s utterances into corpus folder `root`; returns aligned utterances.

    `sources` (one row per ingested file: source_id, duration) gives the files the alignments name;
    without it every utterance is its own file.
    """
    if sources is None:
        durations = dict(zip(manifest["id"], manifest["duration"], strict=True))
    else:
        durations = dict(zip(sources["source_id"], sources["duration"], strict=True))
    speakers = dict(zip(manifest["id"], manifest["speaker"], strict=True))
    if source.is_dir():
        table = pd.DataFrame([(iv.utterance, iv.onset, iv.offset, iv.phone)
                              for iv in _from_textgrids(source, durations, warnings)],
                             columns=["file", "onset", "offset", "phone"])
    elif source.is_file():
        table = read_item_file(source)
        table["file"] = table["file"].map(lambda f: safe_name(Path(str(f)).stem))
        unknown = ~table["file"].isin(durations)
        if unknown.any():
            warnings.append(f"{int(unknown.sum())} item rows name files that were not ingested; dropped")
        table = table[~unknown]
    else:
        raise BadInputError(f"alignments {source} do not exist", "pass a folder of TextGrids or an item file")

    late = table["offset"].to_numpy() > table["file"].map(durations).to_numpy(dtype=float) + TOLERANCE
    if late.any():
        warnings.append(f"{int(late.sum())} phone intervals end after their audio; dropped")
        table = table[~late]
    if "source_id" in manifest and (manifest["source_id"] != manifest["id"]).any():
        table, dropped, crossing = cut_into_segments(table, manifest, phones_at_cuts)
        if crossing:
            what = "dropped (--phones-at-cuts clip keeps their parts)" if phones_at_cuts == "drop" else "clipped"
            warnings.append(f"{crossing} phone intervals cross a segment cut; {what}")
        if dropped:
            warnings.append(f"{dropped} phone intervals lie in no segment (left-out pauses or stretches); dropped")
    else:
        table = table.rename(columns={"file": "id"})

    if source.is_dir():
        intervals = [PhoneInterval(u, float(a), float(b), str(p))
                     for u, a, b, p in zip(table["id"], table["onset"], table["offset"], table["phone"], strict=True)]
        items = items_from_intervals(intervals, speakers)
    else:
        items = table.rename(columns={"id": "file"})
    alignment = table[["id", "onset", "offset", "phone"]].reset_index(drop=True)
    # both tables' checksums go to corpus.json, verified when PNMI / ABX read them
    write_table(root, "alignments.parquet", alignment)
    write_text_file(root, "corpus.item", item_file_text(items, root / "corpus.item"))
    return int(alignment["id"].nunique())


def cut_into_segments(table: pd.DataFrame, manifest: pd.DataFrame, phones_at_cuts: str = "drop"
                      ) -> tuple[pd.DataFrame, int, int]:
    """Move intervals of whole files (column ``file``, onset, offset in seconds) onto their segments.

    Returns the table keyed by utterance ``id`` (other columns kept), the number of intervals in no
    segment, and the number that crossed a cut (dropped, or clipped to each segment they overlap).
    """
    by_source = {}
    for src, group in manifest.groupby("source_id"):
        group = group.sort_values("segment_start")
        # a file kept whole has no cut: intervals up to TOLERANCE past its end stay as they are
        ends = np.where(group["id"] == group["source_id"], np.inf, group["segment_end"].to_numpy(float))
        by_source[src] = (group["id"].tolist(), group["segment_start"].to_numpy(float), ends)
    rows: list[dict] = []
    outside = crossing = 0
    for row in table.to_dict("records"):
        if row["file"] not in by_source:
            outside += 1
            continue
        ids, starts, ends = by_source[row["file"]]
        onset, offset = float(row["onset"]), float(row["offset"])
        overlapping = np.flatnonzero((starts < offset - EDGE) & (ends > onset + EDGE))
        if not len(overlapping):
            outside += 1
            continue
        k = overlapping[0]
        if len(overlapping) == 1 and starts[k] <= onset + EDGE and offset <= ends[k] + EDGE:
            shift = starts[k]
            rows.append({**row, "id": ids[k], "onset": max(0.0, onset - shift),
                         "offset": min(ends[k], offset) - shift})
            continue
        crossing += 1
        if phones_at_cuts != "clip":
            continue
        for k in overlapping:
            a, b = max(onset, starts[k]), min(offset, ends[k])
            if b - a >= MIN_PIECE:
                rows.append({**row, "id": ids[k], "onset": a - starts[k], "offset": b - starts[k]})
    out = pd.DataFrame([{k: v for k, v in r.items() if k != "file"} for r in rows],
                       columns=["id", *[c for c in table.columns if c != "file"]])
    return out.astype({"onset": "float64", "offset": "float64"}), outside, crossing


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
