"""Segmentation of long recordings: pauses found where they are, cuts only in pauses, reports, the plan.

Long files are espeak demo utterances joined by pauses of known position (tests/segment_helpers.py),
so the truth is exact; Silero VAD runs for real from the weights in the `silero-vad` wheel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from segment_helpers import make_chapter, pause_plan

from obt_eval.corpus import segment as seg
from obt_eval.corpus.segment import (
    EnergyLevels,
    SegmentOptions,
    analyse,
    energy_levels,
    plan_segments,
    segment_recording,
    speech_regions,
)
from obt_eval.errors import BadInputError
from obt_eval.frames import SAMPLE_RATE

TOL = 0.05  # seconds: the tolerance for found boundaries


@pytest.fixture(scope="session")
def clean_demo(tmp_path_factory):
    """Demo utterances without added noise: their padding is exact zeros, so true speech edges are exact."""
    from obt_eval.demo_corpus import make_demo_corpus

    out = tmp_path_factory.mktemp("demo-clean")
    make_demo_corpus(out, speakers_per_language=2, sentences_per_language=5, noise_dbfs=None)
    return out


@pytest.fixture(scope="session")
def demo_ids(clean_demo):
    return pd.read_csv(clean_demo / "metadata.csv")["utterance_id"].tolist()


@pytest.fixture(scope="session")
def chapter(clean_demo, demo_ids, tmp_path_factory):
    """~40 s: 14 utterances joined by 0.6-1.4 s pauses, room tone at -60 dBFS."""
    ids = demo_ids[:14]
    return make_chapter(clean_demo, tmp_path_factory.mktemp("ch") / "chapter.wav", ids,
                        pause_plan(len(ids) - 1, 0.6, 1.4, seed=3))


def _inside_speech(t: float, speech: list[tuple[float, float]], margin: float = TOL) -> bool:
    return any(a + margin < t < b - margin for a, b in speech)


@pytest.mark.parametrize("vad", ["silero", "energy"])
def test_pause_boundaries_are_found_within_50_ms(chapter, vad):
    result = segment_recording(chapter.path, SegmentOptions(vad=vad))
    found = np.array(result.speech)
    for a, b in chapter.speech:  # every utterance's edges, i.e. every pause's edges
        assert np.min(np.abs(found[:, 0] - a)) <= TOL, (vad, "onset", a)
        assert np.min(np.abs(found[:, 1] - b)) <= TOL, (vad, "offset", b)
    for a, b in result.speech:  # and nothing is called speech inside a pause
        assert any(sa - TOL <= a and b <= sb + TOL for sa, sb in chapter.speech), (vad, a, b)

    starts = np.array([a for a, _ in chapter.speech])
    ends = np.array([b for _, b in chapter.speech])
    for s in result.segments:
        assert 2.0 <= s.duration <= 15.0, s
        assert not _inside_speech(s.start, chapter.speech, 0) and not _inside_speech(s.end, chapter.speech, 0), s
        # a segment runs from an utterance's first sound to an utterance's last, found within 50 ms
        assert np.min(np.abs(starts - s.speech_start)) <= TOL and np.min(np.abs(ends - s.speech_end)) <= TOL
        assert s.start <= s.speech_start - 0.15 and s.end >= s.speech_end + 0.15  # keeps some pause around
    covered = [a for a, b in chapter.speech if any(s.start <= a and b <= s.end for s in result.segments)]
    assert len(covered) == len(chapter.speech)  # every utterance lies whole in one segment
    assert result.stretches == []  # clean speech and short pauses: nothing to report


def test_silero_lanes_agree_with_one_sequential_pass(chapter):
    model = seg.load_silero()
    one = analyse(chapter.path, "silero", model=model, lanes=1)
    many = analyse(chapter.path, "silero", model=model)
    assert len(seg._lanes(one.num_samples, seg.LANES)) >= 4  # the file really was split
    assert np.abs(one.speech_prob - many.speech_prob).max() < 0.1
    opts = SegmentOptions()
    a = speech_regions(one, opts, energy_levels(one))
    b = speech_regions(many, opts, energy_levels(many))
    assert len(a) == len(b) and np.abs(np.array(a) - np.array(b)).max() <= TOL
    np.testing.assert_array_equal(one.power, many.power)


def test_loading_silero_keeps_torch_threads():
    import torch

    before = torch.get_num_threads()
    seg.load_silero()  # silero_vad sets one thread for the process when imported
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------------------- the planner


def _regions(lengths: list[float], gaps: list[float], start: float = 0.5) -> list[tuple[float, float]]:
    out, t = [], start
    for k, length in enumerate(lengths):
        out.append((t, t + length))
        t += length + (gaps[k] if k < len(gaps) else 0)
    return out


def _check_plan(regions, segments, duration, opts):
    for s in segments:
        assert 0 <= s.start < s.end <= duration
        assert not any(a < s.start < b or a < s.end < b for a, b in regions), "a cut inside speech"
    for x, y in zip(segments, segments[1:], strict=False):
        assert x.end <= y.start + 1e-9
    for a, b in regions:  # each speech region in exactly one segment
        assert sum(s.start <= a and b <= s.end for s in segments) == 1


def test_too_long_stretch_is_cut_at_its_longest_pauses():
    gaps = [0.3, 0.3, 0.45, 0.3, 0.25, 0.3, 0.3, 0.42, 0.3, 0.3, 0.3]  # all below the 0.5 s split pause
    regions = _regions([2.0] * 12, gaps)
    opts = SegmentOptions()
    segments, stretches = plan_segments(regions, regions[-1][1] + 0.5, opts)
    _check_plan(regions, segments, regions[-1][1] + 0.5, opts)
    assert stretches == [] and all(opts.min_seconds <= s.duration <= opts.max_seconds for s in segments)
    cut_after = [next(k for k, (_, b) in enumerate(regions) if abs(b - s.speech_end) < 1e-9) for s in segments[:-1]]
    assert cut_after == [2, 7]  # the 0.45 s and 0.42 s pauses, not the shorter ones
    assert abs(segments[0].end - (regions[2][1] + 0.2)) < 1e-9 and abs(segments[1].start - (regions[3][0] - 0.2)) < 1e-9


def test_every_pause_of_half_a_second_ends_a_segment_and_shorts_join_the_nearer_neighbour():
    # 4 s, pause 1.0, 1 s (too short), pause 0.7, 4 s, pause 3.0 (too long to bridge), 1 s isolated
    regions = _regions([4.0, 1.0, 4.0, 1.0], [1.0, 0.7, 3.0])
    duration = regions[-1][1] + 0.5
    opts = SegmentOptions()
    segments, stretches = plan_segments(regions, duration, opts)
    _check_plan(regions, segments, duration, opts)
    spans = [(s.speech_start, s.speech_end) for s in segments]
    assert spans == [regions[0], (regions[1][0], regions[2][1]), regions[3]]  # the short one joined across 0.7 s
    assert [(s.kind, s.segment) for s in stretches] == [("short", 2)]


def test_random_layouts_never_cut_inside_speech():
    rng = np.random.default_rng(0)
    opts = SegmentOptions(min_seconds=2.0, max_seconds=8.0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        regions = _regions(rng.uniform(0.2, 6.0, n).tolist(), rng.uniform(0.2, 4.0, n - 1).tolist(),
                           start=float(rng.uniform(0, 2)))
        duration = regions[-1][1] + float(rng.uniform(0, 2))
        segments, stretches = plan_segments(regions, duration, opts)
        _check_plan(regions, segments, duration, opts)
        long = [s for s in segments if s.duration > opts.max_seconds]
        # only a single pause-less region may stay too long, and then it is reported
        assert all(any(abs(s.speech_start - a) < 1e-9 and abs(s.speech_end - b) < 1e-9 for a, b in regions)
                   for s in long)
        assert len([x for x in stretches if x.kind == "long_speech"]) == len(long)
        assert len([x for x in stretches if x.kind == "short"]) == sum(s.duration < opts.min_seconds for s in segments)


def test_speech_without_pause_is_kept_whole_or_cut_at_its_quietest_point():
    regions = [(1.0, 41.0)]
    frames = int(42.0 * SAMPLE_RATE / seg.ENERGY_HOP)
    db = np.full(frames, -20.0)
    for t in (13.0, 27.0):  # two quiet dips inside the speech
        i = int(t * SAMPLE_RATE / seg.ENERGY_HOP)
        db[i - 3:i + 3] = -45.0
    levels = EnergyLevels(db=db, loud=-20.0, floor=-60.0, threshold=-50.0)
    kept, stretches = plan_segments(regions, 42.0, SegmentOptions(), levels)
    assert len(kept) == 1 and [s.kind for s in stretches] == ["long_speech"]
    cut, stretches = plan_segments(regions, 42.0, SegmentOptions(cut_long_speech=True), levels)
    assert [round(s.end, 2) for s in cut[:-1]] == pytest.approx([13.0, 27.0], abs=0.02)
    assert all(s.duration <= 15.0 for s in cut) and [s.kind for s in stretches] == ["cut_in_speech"] * 2


def test_bad_options_are_clear_errors():
    with pytest.raises(BadInputError, match="min < max"):
        SegmentOptions(min_seconds=10, max_seconds=5)
    with pytest.raises(BadInputError, match="unknown VAD"):
        SegmentOptions(vad="webrtc")
    assert SegmentOptions(max_seconds=10).threshold == 10 and SegmentOptions(threshold_seconds=60).threshold == 60


# ------------------------------------------------------------------------------------------ reports


def test_silence_noise_clipping_and_dropouts_are_reported(clean_demo, demo_ids, tmp_path):
    marks = {}

    def edit(wave, ch):
        sr = SAMPLE_RATE
        a, b = int((ch.speech[3][1] + 0.5) * sr), int((ch.speech[4][0] - 0.5) * sr)  # inside the 3.5 s pause
        wave[a:b] = np.random.default_rng(1).normal(0, 0.05, b - a)  # a hiss at -26 dBFS: sound, not speech
        marks["noise"] = (a / sr, b / sr)
        s0, s1 = (int(t * sr) for t in ch.speech[5])
        wave[s0:s1] = np.clip(wave[s0:s1] * 8, -1, 1)
        middle = int(sum(ch.speech[6]) / 2 * sr)
        wave[middle:middle + 1600] = 0.0  # 100 ms of digital silence mid-utterance
        marks["dropout"] = (middle / sr, (middle + 1600) / sr)

    ch = make_chapter(clean_demo, tmp_path / "bad.wav", demo_ids[:8], [0.8, 7.0, 0.9, 3.5, 0.8, 1.0, 0.7], edit=edit)
    result = segment_recording(ch.path, SegmentOptions())
    by_kind = {}
    for s in result.stretches:
        by_kind.setdefault(s.kind, []).append(s)
    assert set(by_kind) == {"silence", "non_speech", "clipping", "dropout"}, result.stretches
    (silence,) = by_kind["silence"]
    assert ch.speech[1][1] < silence.start < silence.end < ch.speech[2][0] and silence.end - silence.start > 6.0
    assert "without speech" in silence.reason and silence.segment is None
    (noise,) = by_kind["non_speech"]
    assert noise.start <= marks["noise"][0] + TOL and noise.end >= marks["noise"][1] - TOL
    assert "music or noise" in noise.reason
    assert not any(s.start < marks["noise"][1] and s.end > marks["noise"][0] for s in result.segments)
    (clip,) = by_kind["clipping"]
    clipped_segment = result.segments[clip.segment]
    assert clipped_segment.start <= ch.speech[5][0] and ch.speech[5][1] <= clipped_segment.end
    (drop,) = by_kind["dropout"]
    assert abs(drop.start - marks["dropout"][0]) <= 0.01 and abs(drop.end - marks["dropout"][1]) <= 0.01
    assert result.segments[drop.segment].start < drop.start  # reported where it is, the segment is kept


def test_a_file_of_noise_has_no_speech(tmp_path):
    sf.write(tmp_path / "hiss.wav", np.random.default_rng(0).normal(0, 0.1, 20 * SAMPLE_RATE).astype(np.float32),
             SAMPLE_RATE)
    result = segment_recording(tmp_path / "hiss.wav", SegmentOptions())
    assert result.segments == [] and [s.kind for s in result.stretches] == ["no_speech"]
    assert "dBFS" in result.stretches[0].reason


def test_gated_pauses_are_not_dropouts(clean_demo, demo_ids, tmp_path):
    """Edited narration often has digital silence between phrases: only zeros that cut speech off are dropouts."""
    marks = {}

    def edit(wave, ch):
        middle = int(sum(ch.speech[2]) / 2 * SAMPLE_RATE)
        wave[middle:middle + 1600] = 0.0
        marks["dropout"] = middle / SAMPLE_RATE

    ch = make_chapter(clean_demo, tmp_path / "gated.wav", demo_ids[:6], [0.8] * 5, noise_dbfs=None, edit=edit)
    result = segment_recording(ch.path, SegmentOptions(vad="energy", min_seconds=6.0))
    assert any(s.speech_start < ch.speech[0][1] < ch.speech[1][0] < s.speech_end for s in result.segments)
    (drop,) = result.stretches  # the zero pauses inside merged segments are not reported
    assert drop.kind == "dropout" and abs(drop.start - marks["dropout"]) <= 0.01


def test_a_chapter_without_split_pauses_is_planned_without_deep_recursion():
    # pauses grow along the file, so each cut falls at the far end: thousands of cuts, one after another
    n = 3000
    regions = _regions([1.0] * n, np.linspace(0.2, 0.49, n - 1).tolist())
    duration = regions[-1][1] + 0.5
    opts = SegmentOptions()
    segments, stretches = plan_segments(regions, duration, opts)
    _check_plan(regions, segments, duration, opts)
    assert all(opts.min_seconds <= s.duration <= opts.max_seconds for s in segments) and stretches == []
    long = [(0.5, 0.5 + 3600.0)]  # an hour of speech without a pause, cut at its quietest points
    db = np.full(int(3601.0 * SAMPLE_RATE / seg.ENERGY_HOP), -20.0)
    cut, stretches = plan_segments(long, 3601.0, SegmentOptions(cut_long_speech=True),
                                   EnergyLevels(db=db, loud=-20.0, floor=-60.0, threshold=-50.0))
    assert len(cut) >= 240 and all(s.duration <= 15.0 for s in cut)
    assert [s.kind for s in stretches] == ["cut_in_speech"] * (len(cut) - 1)
