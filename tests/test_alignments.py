"""Phone alignment I/O: TextGrid and item-file round trips, malformed inputs, ZeroSpeech contexts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obt_eval.alignments import (
    ITEM_HEADER,
    PhoneInterval,
    alignments_table,
    frame_labels,
    intervals_from_table,
    items_from_intervals,
    read_item_file,
    read_textgrid,
    read_textgrid_folder,
    write_item_file,
    write_textgrid,
)
from obt_eval.errors import BadInputError

PHONES = [(0.1, 0.18, "b"), (0.18, 0.3, "ɐ̃"), (0.45, 0.52, "ʔ"), (0.52, 0.61, "ẽ")]  # gap = a pause
WORDS = [(0.1, 0.3, "bã"), (0.45, 0.61, "'ẽ")]


def _same(got, expected):
    assert [p for _, _, p in got] == [p for _, _, p in expected]
    np.testing.assert_allclose([(a, b) for a, b, _ in got], [(a, b) for a, b, _ in expected], atol=1e-8)


@pytest.mark.parametrize("short", [False, True])
def test_textgrid_round_trip_long_and_short(tmp_path, short):
    path = tmp_path / "u.TextGrid"
    write_textgrid(path, PHONES, xmax=0.8, words=WORDS, short=short)
    text = path.read_text(encoding="utf-8")
    assert ("intervals [1]:" in text) is not short
    _same(read_textgrid(path), PHONES)  # the phones tier, although words come first
    _same(read_textgrid(path, tier="words"), WORDS)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_textgrid_utf16_and_bom(tmp_path, encoding):
    src = tmp_path / "src.TextGrid"
    write_textgrid(src, [PhoneInterval("u", a, b, p) for a, b, p in PHONES], xmax=0.8)
    raw = src.read_text(encoding="utf-8").encode(encoding)
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw  # Praat writes a BOM
    dst = tmp_path / "dst.TextGrid"
    dst.write_bytes(raw)
    _same(read_textgrid(dst), PHONES)


PRAAT_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 3
item []:
    item [1]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 1.5
        points: size = 1
        points [1]:
            number = 0.7
            mark = "click"
    item [2]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.5
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 1.5
            text = "say ""hi"""
    item [3]:
        class = "IntervalTier"
        name = "Phones"
        xmin = 0
        xmax = 1.5
        intervals: size = 6
        intervals [1]:
            xmin = 0
            xmax = 0.25
            text = "sil"
        intervals [2]:
            xmin = 0.25
            xmax = 0.5
            text = "S"
        intervals [3]:
            xmin = 0.5
            xmax = 0.75
            text = "sp"
        intervals [4]:
            xmin = 0.75
            xmax = 1.0
            text = "EY1"
        intervals [5]:
            xmin = 1.0
            xmax = 1.25
            text = ""
        intervals [6]:
            xmin = 1.25
            xmax = 1.5
            text = "<eps>"
'''


def test_praat_file_picks_phone_tier_and_skips_silence(tmp_path):
    path = tmp_path / "praat.TextGrid"
    path.write_text(PRAAT_LONG, encoding="utf-8")
    assert read_textgrid(path) == [(0.25, 0.5, "S"), (0.75, 1.0, "EY1")]
    assert read_textgrid(path, tier="words") == [(0.0, 1.5, 'say "hi"')]


def test_without_phone_tier_first_interval_tier_is_used(tmp_path):
    path = tmp_path / "x.TextGrid"
    path.write_text(PRAAT_LONG.replace('"Phones"', '"segments"'), encoding="utf-8")
    assert read_textgrid(path) == [(0.0, 1.5, 'say "hi"')]
    with pytest.raises(BadInputError, match="no interval tier named 'phones'"):
        read_textgrid(path, tier="phones")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[: len(t) // 2], "truncated"),
        (lambda t: t.replace('Object class = "TextGrid"', 'Object class = "Sound"'), "not a TextGrid"),
        (lambda t: t.replace("xmax = 0.5\n", "xmax = abc\n", 1), "expected xmax of interval"),
        (lambda t: t.replace("xmax = 0.5\n", "xmax = 0.2\n", 1), "ends before it starts"),
        (lambda t: t.replace('"IntervalTier"', '"Bogus"'), "unknown tier class"),
        (lambda t: "hello world", "expected File type"),
    ],
)
def test_malformed_textgrid_raises_clear_error(tmp_path, mutate, message):
    path = tmp_path / "bad.TextGrid"
    path.write_text(mutate(PRAAT_LONG), encoding="utf-8")
    with pytest.raises(BadInputError, match=message) as info:
        read_textgrid(path)
    assert str(path) in str(info.value)


def test_binary_and_undecodable_textgrids_are_rejected(tmp_path):
    binary = tmp_path / "b.TextGrid"
    binary.write_bytes(b"ooBinaryFile\x08TextGrid\x00\x01")
    with pytest.raises(BadInputError, match="binary"):
        read_textgrid(binary)
    latin = tmp_path / "l.TextGrid"
    latin.write_bytes(PRAAT_LONG.replace("EY1", "é").encode("latin-1"))
    with pytest.raises(BadInputError, match="UTF-8"):
        read_textgrid(latin)


def test_write_textgrid_rejects_overlaps(tmp_path):
    with pytest.raises(BadInputError, match="overlap"):
        write_textgrid(tmp_path / "o.TextGrid", [(0.0, 0.5, "a"), (0.4, 0.6, "b")], xmax=1.0)
    with pytest.raises(BadInputError, match="outside"):
        write_textgrid(tmp_path / "o.TextGrid", [(0.0, 1.5, "a")], xmax=1.0)
    assert not (tmp_path / "o.TextGrid").exists()


def test_textgrid_folder_reports_bad_files_and_keeps_the_rest(tmp_path):
    write_textgrid(tmp_path / "good.TextGrid", PHONES, xmax=0.8)
    (tmp_path / "bad.TextGrid").write_text("not a textgrid", encoding="utf-8")
    intervals, problems = read_textgrid_folder(tmp_path)
    assert {iv.utterance for iv in intervals} == {"good"} and len(intervals) == 4
    assert set(problems) == {"bad"}
    _, problems = read_textgrid_folder(tmp_path, ids=["good", "missing"])
    assert "missing" in problems and "good" not in problems


def _intervals():
    # Utterance b is given out of order: contexts must follow time, not input order.
    return [
        PhoneInterval("a", 0.10, 0.20, "p"),
        PhoneInterval("a", 0.20, 0.35, "a"),
        PhoneInterval("a", 0.50, 0.52, "t"),  # after a pause; short
        PhoneInterval("a", 0.52, 0.70, "o"),
        PhoneInterval("b", 0.30, 0.40, "m"),
        PhoneInterval("b", 0.10, 0.30, "u"),
    ]


def test_items_have_both_neighbours_as_context():
    items = items_from_intervals(_intervals(), {"a": "spk1", "b": "spk2"})
    assert list(items.columns) == ["file", "onset", "offset", "phone", "prev", "next", "speaker"]
    # first and last phone of each utterance are context only; b has two phones -> no item
    assert items[["file", "phone", "prev", "next", "speaker"]].values.tolist() == [
        ["a", "a", "p", "t", "spk1"],
        ["a", "t", "a", "o", "spk1"],
    ]
    short_dropped = items_from_intervals(_intervals(), {"a": "s", "b": "s"}, min_duration=0.04)
    assert short_dropped[["phone", "prev", "next"]].values.tolist() == [["a", "p", "t"]]


def test_items_need_a_speaker_for_every_utterance():
    with pytest.raises(BadInputError, match="no speaker"):
        items_from_intervals(_intervals(), {"a": "spk1"})


def test_item_file_round_trip(tmp_path):
    items = items_from_intervals(_intervals(), {"a": "spk1", "b": "spk2"})
    path = tmp_path / "x.item"
    write_item_file(path, items)
    assert path.read_text(encoding="utf-8").splitlines()[0] == ITEM_HEADER
    back = read_item_file(path)
    pd.testing.assert_frame_equal(back, items)


def test_write_item_file_refuses_whitespace_in_fields(tmp_path):
    items = pd.DataFrame([["utt 1", 0.1, 0.2, "a", "b", "c", "s"]],
                         columns=["file", "onset", "offset", "phone", "prev", "next", "speaker"])
    with pytest.raises(BadInputError, match="whitespace"):
        write_item_file(tmp_path / "x.item", items)


@pytest.mark.parametrize(
    "line, message",
    [
        ("u1 0.1 0.2 a b c", "line 3: expected 7 fields"),
        ("u1 0.1 zero a b c s", "line 3: onset/offset"),
        ("u1 0.3 0.2 a b c s", "line 3: onset 0.3 must be >= 0 and before offset"),
        ("u1 0.2 0.2 a b c s", "line 3"),
        ("u1 nan 0.2 a b c s", "line 3"),
    ],
)
def test_malformed_item_file_names_the_line(tmp_path, line, message):
    path = tmp_path / "bad.item"
    path.write_text(f"{ITEM_HEADER}\nu0 0.0 0.1 a b c s\n{line}\n\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=message):
        read_item_file(path)


def test_item_file_without_header_and_with_blank_lines(tmp_path):
    path = tmp_path / "x.item"
    path.write_text("u0 0.0 0.1 a b c s\n\nu0 0.1 0.3 c a b s\n", encoding="utf-8")
    items = read_item_file(path)
    assert items["phone"].tolist() == ["a", "c"] and items["offset"].tolist() == [0.1, 0.3]


def test_alignment_table_round_trip_and_frame_labels():
    intervals = _intervals()
    table = alignments_table(intervals)
    assert list(table.columns) == ["id", "onset", "offset", "phone"]
    assert intervals_from_table(table) == intervals
    # frames are centred at 0.02 i + 0.0125 s: frame 4 (0.0925) precedes p, frame 5 (0.1125) is in it
    labels = frame_labels([iv for iv in intervals if iv.utterance == "a"], num_frames=40)
    assert labels[4] == "" and labels[5] == "p" and labels[9] == "p" and labels[10] == "a" and labels[20] == ""
    assert labels[25] == "t" and labels[26] == "o" and labels[39] == ""
