"""Phone alignment I/O: Praat TextGrids, ZeroSpeech item files, and the corpus alignment table.

Ingest reads alignments with these functions, ABX and PNMI read what ingest wrote; keeping the
formats in one module means every area agrees on what a phone interval, a silence and a context are.

Conventions: times in seconds; silence markers and empty labels are not phones (they leave gaps);
item files list only phones that have a neighbour on both sides in their utterance (ZeroSpeech).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.atomic import write_text
from obt_eval.errors import BadInputError
from obt_eval.frames import FRAME_OFFSET, FRAME_RATE, frame_centres

# Labels that mark silence/noise in common aligners (MFA, Kaldi, HTK, Festival); compared lowercased.
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "<eps>", "<sil>", "pau"})
# Tier names that hold phones, in order of preference (MFA writes "phones", others "phone"/"phonemes").
PHONE_TIER_NAMES = ("phones", "phone", "phonemes", "phoneme")
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
ITEM_COLUMNS = ["file", "onset", "offset", "phone", "prev", "next", "speaker"]
ALIGNMENT_COLUMNS = ["id", "onset", "offset", "phone"]

Interval = tuple[float, float, str]


@dataclass(frozen=True)
class PhoneInterval:
    """One phone of one utterance, in seconds from the start of the utterance's audio."""

    utterance: str
    onset: float
    offset: float
    phone: str


def is_silence(label: str) -> bool:
    return label.strip().lower() in SILENCE_LABELS


# --------------------------------------------------------------------------------------------- TextGrid

# Praat's text reader skips everything that is not a string, a number or a flag, so one tokenizer
# reads both the long ("xmin = 0") and the short (bare values) format. "[1]" indices and
# "! comments" are skipped explicitly because they would otherwise look like numbers/text.
_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'
    r"|(?P<flag><exists>|<absent>)"
    r"|\[\s*\d*\s*\]"
    r"|![^\n]*"
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])"
    r"|[A-Za-z_]\w*\??"
    r"|\S"
)


@dataclass
class _Tier:
    cls: str
    name: str
    intervals: list[Interval]


def _decode(raw: bytes, path: Path) -> str:
    """Praat writes ASCII/UTF-8 when it can and UTF-16 (with BOM) otherwise."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8")
    # UTF-16 without BOM: every other byte of the ASCII header is NUL.
    if raw[:40].count(b"\x00") >= 10:
        enc = "utf-16-le" if raw[1:2] == b"\x00" else "utf-16-be"
        return raw.decode(enc)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"{path}: TextGrid is neither UTF-8 nor UTF-16 ({exc})",
            "re-save it from Praat (Save as text file) or convert it to UTF-8",
        ) from exc


class _Tokens:
    """Sequential reader over TextGrid values with errors that say what was expected."""

    def __init__(self, text: str, path: Path):
        self.path = path
        self.items: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text):
            if m.group("str") is not None:
                self.items.append(("str", m.group("str").replace('""', '"')))
            elif m.group("flag") is not None:
                self.items.append(("flag", m.group("flag")))
            elif m.group("num") is not None:
                self.items.append(("num", m.group("num")))
        self.pos = 0

    def _next(self, kind: str, what: str) -> str:
        if self.pos >= len(self.items):
            raise BadInputError(
                f"{self.path}: TextGrid ends early (expected {what}); the file looks truncated",
                "re-export the TextGrid from Praat or the aligner",
            )
        got_kind, value = self.items[self.pos]
        if got_kind != kind:
            raise BadInputError(
                f"{self.path}: malformed TextGrid: expected {what}, found {value!r}",
                "check the file is a Praat TextGrid saved as a text file (long or short format)",
            )
        self.pos += 1
        return value

    def string(self, what: str) -> str:
        return self._next("str", what)

    def number(self, what: str) -> float:
        value = float(self._next("num", what))
        if not math.isfinite(value):
            raise BadInputError(f"{self.path}: non-finite {what} in TextGrid")
        return value

    def count(self, what: str) -> int:
        value = self.number(what)
        if value < 0 or value != int(value):
            raise BadInputError(f"{self.path}: malformed TextGrid: {what} is {value}, not a count")
        return int(value)

    def peek_flag(self) -> str | None:
        if self.pos < len(self.items) and self.items[self.pos][0] == "flag":
            self.pos += 1
            return self.items[self.pos - 1][1]
        return None


def _parse_textgrid(path: Path) -> tuple[float, float, list[_Tier]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read TextGrid {path}: {exc}", "check the path and its permissions") from exc
    if raw.startswith(b"ooBinaryFile"):
        raise BadInputError(f"{path}: binary TextGrid", "open it in Praat and use 'Save as text file'")
    toks = _Tokens(_decode(raw, path), path)
    file_type = toks.string('File type = "ooTextFile"')
    object_class = toks.string('Object class = "TextGrid"')
    if not file_type.startswith("ooTextFile") or object_class != "TextGrid":
        raise BadInputError(
            f"{path}: not a TextGrid (file type {file_type!r}, object class {object_class!r})",
            "pass Praat TextGrid files (text format)",
        )
    xmin, xmax = toks.number("xmin"), toks.number("xmax")
    flag = toks.peek_flag()
    if flag == "<absent>":
        return xmin, xmax, []
    tiers = []
    for t in range(toks.count("number of tiers")):
        cls = toks.string(f"class of tier {t + 1}")
        name = toks.string(f"name of tier {t + 1}")
        toks.number(f"xmin of tier {name!r}")
        toks.number(f"xmax of tier {name!r}")
        n = toks.count(f"interval count of tier {name!r}")
        intervals: list[Interval] = []
        for i in range(n):
            if cls == "IntervalTier":
                a = toks.number(f"xmin of interval {i + 1} in tier {name!r}")
                b = toks.number(f"xmax of interval {i + 1} in tier {name!r}")
                label = toks.string(f"text of interval {i + 1} in tier {name!r}")
                if b < a:
                    raise BadInputError(
                        f"{path}: interval {i + 1} of tier {name!r} ends before it starts ({a} > {b})",
                        "fix the interval boundaries in Praat",
                    )
                intervals.append((a, b, label))
            elif cls == "TextTier":
                toks.number(f"time of point {i + 1} in tier {name!r}")
                toks.string(f"mark of point {i + 1} in tier {name!r}")
            else:
                raise BadInputError(f"{path}: unknown tier class {cls!r}", "expected IntervalTier or TextTier")
        tiers.append(_Tier(cls, name, intervals))
    return xmin, xmax, tiers


def read_textgrid(path: str | os.PathLike, tier: str | None = None) -> list[Interval]:
    """Phone intervals ``(onset, offset, label)`` of a Praat TextGrid, silences and empty labels dropped.

    Reads the long and short text formats in UTF-8 or UTF-16. Picks `tier` if given, else the tier
    named phones/phone/phonemes (any case), else the first IntervalTier.
    """
    path = Path(path)
    _, _, tiers = _parse_textgrid(path)
    interval_tiers = [t for t in tiers if t.cls == "IntervalTier"]
    if not interval_tiers:
        raise BadInputError(f"{path}: TextGrid has no interval tier", "add a 'phones' IntervalTier")
    wanted = [tier.lower()] if tier else list(PHONE_TIER_NAMES)
    chosen = None
    for name in wanted:
        chosen = next((t for t in interval_tiers if t.name.strip().lower() == name), None)
        if chosen is not None:
            break
    if chosen is None:
        if tier:
            names = ", ".join(repr(t.name) for t in interval_tiers)
            raise BadInputError(f"{path}: no interval tier named {tier!r} (tiers: {names})")
        chosen = interval_tiers[0]
    return [(a, b, label.strip()) for a, b, label in chosen.intervals if b > a and not is_silence(label)]


def _fmt(x: float) -> str:
    # Nanosecond rounding keeps files readable while round trips stay far below one audio sample.
    return repr(round(float(x), 9))


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def _fill_gaps(intervals: Sequence[Interval], xmax: float, what: str, path: Path) -> list[Interval]:
    """Praat tiers must cover [0, xmax] without gaps or overlaps: gaps become empty intervals."""
    out: list[Interval] = []
    t = 0.0
    for a, b, label in sorted(intervals, key=lambda iv: iv[0]):
        if b <= a or a < -1e-9 or b > xmax + 1e-9:
            raise BadInputError(
                f"cannot write {path}: {what} interval ({a}, {b}, {label!r}) is empty or outside [0, {xmax}]",
                "fix the alignment times",
            )
        if a < t - 1e-9:
            raise BadInputError(f"cannot write {path}: {what} intervals overlap at {a}", "fix the alignment")
        if a > t + 1e-9:
            out.append((t, a, ""))
        out.append((max(a, t), b, label))
        t = b
    if xmax > t + 1e-9 or not out:
        out.append((t, xmax, ""))
    return out


def write_textgrid(
    path: str | os.PathLike,
    intervals: Iterable[Interval | PhoneInterval],
    xmax: float,
    tier: str = "phones",
    words: Iterable[Interval] | None = None,
    *,
    short: bool = False,
) -> None:
    """Write a TextGrid (UTF-8, long format unless `short`) with a phone tier and an optional words tier.

    Gaps between intervals become empty intervals, as Praat requires; the write is atomic.
    """
    write_text(path, textgrid_text(intervals, xmax, tier, words, short=short, path=path))


def textgrid_text(
    intervals: Iterable[Interval | PhoneInterval],
    xmax: float,
    tier: str = "phones",
    words: Iterable[Interval] | None = None,
    *,
    short: bool = False,
    path: str | os.PathLike = "<TextGrid>",
) -> str:
    """The text `write_textgrid` writes (for callers that stage many files and publish them at once)."""
    path = Path(path)
    tiers: list[tuple[str, list[Interval]]] = []
    if words is not None:
        tiers.append(("words", _fill_gaps(list(words), xmax, "word", path)))
    ivs = [(iv.onset, iv.offset, iv.phone) if isinstance(iv, PhoneInterval) else tuple(iv) for iv in intervals]
    tiers.append((tier, _fill_gaps(ivs, xmax, "phone", path)))  # type: ignore[arg-type]
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', ""]
    if short:
        lines += ["0", _fmt(xmax), "<exists>", str(len(tiers))]
        for name, tier_ivs in tiers:
            lines += ['"IntervalTier"', _quote(name), "0", _fmt(xmax), str(len(tier_ivs))]
            for a, b, label in tier_ivs:
                lines += [_fmt(a), _fmt(b), _quote(label)]
    else:
        lines += ["xmin = 0", f"xmax = {_fmt(xmax)}", "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
        for k, (name, tier_ivs) in enumerate(tiers, 1):
            lines += [
                f"    item [{k}]:",
                '        class = "IntervalTier"',
                f"        name = {_quote(name)}",
                "        xmin = 0",
                f"        xmax = {_fmt(xmax)}",
                f"        intervals: size = {len(tier_ivs)}",
            ]
            for i, (a, b, label) in enumerate(tier_ivs, 1):
                lines += [
                    f"        intervals [{i}]:",
                    f"            xmin = {_fmt(a)}",
                    f"            xmax = {_fmt(b)}",
                    f"            text = {_quote(label)}",
                ]
    return "\n".join(lines) + "\n"


def read_textgrid_folder(
    folder: str | os.PathLike, ids: Iterable[str] | None = None
) -> tuple[list[PhoneInterval], dict[str, str]]:
    """Read ``<id>.TextGrid`` files of a folder; returns intervals and a {id: reason} map of problems.

    Batch-friendly: one malformed or missing file is reported and the others are still read.
    With `ids`, only those utterances are read and a missing file is a problem.
    """
    folder = Path(folder)
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == ".textgrid"}
    wanted = list(ids) if ids is not None else sorted(files)
    intervals: list[PhoneInterval] = []
    problems: dict[str, str] = {}
    for uid in wanted:
        if uid not in files:
            problems[uid] = f"no TextGrid {uid}.TextGrid in {folder}"
            continue
        try:
            intervals += [PhoneInterval(uid, a, b, p) for a, b, p in read_textgrid(files[uid])]
        except BadInputError as exc:
            problems[uid] = str(exc)
    return intervals, problems


# ------------------------------------------------------------------------------------------- item files


def read_item_file(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ZeroSpeech/Libri-light item file into columns file, onset, offset, phone, prev, next, speaker.

    The first line is skipped when it starts with '#' (the header); malformed rows raise an error
    that names the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read item file {path}: {exc}", "pass a UTF-8 text item file") from exc
    rows: list[tuple] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or (lineno == 1 and line.lstrip().startswith("#")):
            continue
        if len(fields) != 7:
            problems.append(f"line {lineno}: expected 7 fields ({ITEM_HEADER}), found {len(fields)}")
            continue
        try:
            onset, offset = float(fields[1]), float(fields[2])
        except ValueError:
            problems.append(f"line {lineno}: onset/offset {fields[1]!r} {fields[2]!r} are not numbers")
            continue
        if not (math.isfinite(onset) and math.isfinite(offset)) or onset < 0 or onset >= offset:
            problems.append(f"line {lineno}: onset {fields[1]} must be >= 0 and before offset {fields[2]}")
            continue
        rows.append((fields[0], onset, offset, fields[3], fields[4], fields[5], fields[6]))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BadInputError(
            f"{path}: malformed item file: " + "; ".join(problems[:5]) + more,
            f"each line must be '{ITEM_HEADER[1:]}' with times in seconds",
        )
    frame = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    return frame.astype({"onset": "float64", "offset": "float64"})


def write_item_file(path: str | os.PathLike, items: pd.DataFrame) -> None:
    """Write an item file (header + one space-separated row per item), atomically."""
    write_text(path, item_file_text(items, path))


def item_file_text(items: pd.DataFrame, path: str | os.PathLike = "<item file>") -> str:
    """The text `write_item_file` writes; raises BadInputError for rows the format cannot hold."""
    path = Path(path)
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise BadInputError(f"cannot write item file {path}: missing columns {missing}", f"need {ITEM_COLUMNS}")
    lines = [ITEM_HEADER]
    for row in items[ITEM_COLUMNS].itertuples(index=False):
        text_fields = [str(row.file), str(row.phone), str(row.prev), str(row.next), str(row.speaker)]
        if any(not f or any(ch.isspace() for ch in f) for f in text_fields):
            raise BadInputError(
                f"cannot write item file {path}: a field of {tuple(row)} is empty or contains whitespace",
                "item files are space-separated: rename utterances, phones or speakers without spaces",
            )
        if not float(row.onset) < float(row.offset):
            raise BadInputError(f"cannot write item file {path}: onset >= offset in {tuple(row)}")
        lines.append(
            f"{row.file} {float(row.onset):.6f} {float(row.offset):.6f} {row.phone} {row.prev} {row.next} {row.speaker}"
        )
    return "\n".join(lines) + "\n"


def _by_utterance(intervals: Iterable[PhoneInterval]) -> dict[str, list[PhoneInterval]]:
    groups: dict[str, list[PhoneInterval]] = {}
    for iv in intervals:
        groups.setdefault(iv.utterance, []).append(iv)
    return {u: sorted(ivs, key=lambda iv: iv.onset) for u, ivs in groups.items()}


def items_from_intervals(
    intervals: Iterable[PhoneInterval], speakers: dict[str, str], *, min_duration: float = 0.0
) -> pd.DataFrame:
    """Item rows with (prev, next) phone context, one per phone that has both neighbours.

    ZeroSpeech items need a triphone context, so the first and last phone of each utterance are
    not items (they still serve as context). Pauses are not phones: the neighbours are the phones
    before and after in the utterance. `min_duration` drops short centre phones (ABX at 50 Hz needs
    >= 2 frames, i.e. 0.04 s, to be reliable) without changing anyone's context.
    """
    groups = _by_utterance(intervals)
    unknown = [u for u in groups if u not in speakers]
    if unknown:
        raise BadInputError(
            f"no speaker for {len(unknown)} utterance(s), e.g. {unknown[:3]}",
            "give every utterance a speaker (use 'unknown' if it is not known)",
        )
    rows = []
    for uid, ivs in groups.items():
        for i in range(1, len(ivs) - 1):
            iv = ivs[i]
            if iv.offset - iv.onset < min_duration:
                continue
            rows.append((uid, iv.onset, iv.offset, iv.phone, ivs[i - 1].phone, ivs[i + 1].phone, speakers[uid]))
    return pd.DataFrame(rows, columns=ITEM_COLUMNS).astype({"onset": "float64", "offset": "float64"})


# ---------------------------------------------------------------------------------- alignment table


def alignments_table(intervals: Iterable[PhoneInterval]) -> pd.DataFrame:
    """The corpus ``alignments.parquet`` table: columns id, onset, offset, phone (seconds)."""
    rows = [(iv.utterance, float(iv.onset), float(iv.offset), iv.phone) for iv in intervals]
    return pd.DataFrame(rows, columns=ALIGNMENT_COLUMNS).astype({"onset": "float64", "offset": "float64"})


def intervals_from_table(table: pd.DataFrame) -> list[PhoneInterval]:
    """Inverse of `alignments_table` (also accepts an item-file frame: file -> utterance)."""
    uid_col = "id" if "id" in table.columns else "file"
    return [
        PhoneInterval(str(u), float(a), float(b), str(p))
        for u, a, b, p in zip(table[uid_col], table["onset"], table["offset"], table["phone"], strict=True)
    ]


def frame_labels(
    intervals: Sequence[PhoneInterval] | Sequence[Interval],
    num_frames: int,
    frame_rate: float = FRAME_RATE,
    frame_offset: float = FRAME_OFFSET,
) -> np.ndarray:
    """Phone label of each frame of one utterance ('' where no phone), by the frame's centre time.

    Frame i is centred at ``frame_offset + i / frame_rate`` s: 0.0125 + 0.02 i on the wav2vec2 grid
    (400-sample window, 320 hop), 0.0175 + 0.02 i for w2v-BERT 2.0. Pass the store's own timing
    (`obt_eval.frames.store_frame_timing`) so labels line up with its features; PNMI and purity use this.
    """
    labels = np.full(num_frames, "", dtype=object)
    centres = frame_centres(num_frames, frame_rate, frame_offset)
    for iv in intervals:
        a, b, p = (iv.onset, iv.offset, iv.phone) if isinstance(iv, PhoneInterval) else iv
        labels[(centres >= a) & (centres < b)] = p
    return labels
