"""Cut long recordings (whole narrated chapters) at pauses into utterance-length segments.

Silero VAD (its weights ship in the ``silero-vad`` wheel; it needs only torch) decides which stretches
are speech. A 10 ms energy envelope sharpens its boundaries, because Silero's speech probability
decays 50-130 ms after speech ends, and is also the fallback detector (the team's in-house recipe:
RMS below -40 dB relative to the file's loud level is silence). The planner then cuts in the middle
of pauses so that segments land in [min, max] seconds, preferring the longest pauses and never
cutting inside speech. What is left out (long silences, music or noise) and what looks damaged
(clipping, dropouts) is reported with a reason, never dropped silently.

Audio is read from the canonical 16 kHz file in blocks; only per-frame arrays (about 3 MB per hour)
stay in memory. Silero runs on several stretches of the file at once (one batch row each, started
16 s early so the model's state has settled when its stretch begins), which is several times faster
on a CPU than one 32 ms window at a time.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from obt_eval.corpus.files import write_owned_wav
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.frames import SAMPLE_RATE

VAD_METHODS = ("silero", "energy")
VAD_WINDOW = 512  # samples per Silero VAD decision at 16 kHz (32 ms), fixed by the model
ENERGY_HOP = 160  # 10 ms energy frames (in-house recipe: 25 ms RMS every 10 ms; we smooth three 10 ms frames)
GRID = 2560  # lcm(512, 160): blocks that start on this grid start on both frame grids
LANES = 32  # Silero batch rows; beyond ~32 a CPU gains little (measured: 1 -> 7x, 32 -> 110x real time)
# A step costs about the same for 1 or 32 rows, so even short files are split: a lane's stretch plus its
# warm-up is what sets the number of steps. Lane 1's warm-up starts at sample 0, exactly as one pass would.
MIN_LANE = 8 * SAMPLE_RATE
# Audio run through Silero before a lane's own stretch. Its LSTM state has a long memory: measured on
# espeak speech, after 2 s of warm-up 9 of 4760 decisions differed from one sequential pass, after 16 s 1.
WARMUP = 100 * GRID  # 16 s
STEP = 12 * GRID  # samples per lane per read (1.92 s)
ENERGY_BLOCK = 100 * GRID  # samples per read when only the energy envelope is computed (16 s)

MIN_SPEECH = 0.25  # s; shorter Silero speech runs are clicks or breaths (silero-vad's min_speech_duration_ms)
MIN_SPEECH_ENERGY = 0.15  # s; shorter loud runs are clicks for the energy detector
SILERO_OFF = 0.15  # hysteresis: speech ends when the probability drops below threshold - this (silero-vad default)
REFINE_BEFORE_ONSET = 0.10  # s searched before a Silero onset for the first loud 10 ms frame
REFINE_AFTER_ONSET = 0.15
REFINE_BEFORE_OFFSET = 0.25  # Silero's probability lags speech offsets by up to ~130 ms (measured on espeak)
REFINE_AFTER_OFFSET = 0.10
FLOOR_MARGIN_DB = 10.0  # speech must be this far above the noise floor, whatever the relative threshold says
MERGE_PAUSE = 1.5  # s; a too-short segment joins a neighbour only across a pause up to this long
NON_SPEECH_MIN = 1.0  # s; a left-out stretch this long that is mostly loud is reported as non-speech sound
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
CLIP_MIN_SAMPLES = 10  # clipped samples needed before a stretch is reported
DROPOUT_MIN = 0.05  # s of exact digital zeros inside speech reported as a dropout


@dataclass(frozen=True)
class SegmentOptions:
    """How long recordings are cut. Defaults: 2-15 s segments, Silero VAD, in-house pause length 0.5 s."""

    min_seconds: float = 2.0  # shorter segments join a neighbour (across a pause <= 1.5 s) when they can
    max_seconds: float = 15.0  # longer stretches are cut at their longest pause
    threshold_seconds: float | None = None  # files longer than this are cut; None: max_seconds
    vad: str = "silero"  # "silero" or "energy"
    split_pause: float = 0.5  # every pause at least this long ends a segment (in-house recipe: 0.5 s)
    min_pause: float = 0.2  # shorter gaps in speech are not pauses: no cut is ever made there
    edge_pause: float = 0.2  # silence kept before the first and after the last word of a segment
    energy_db: float = -40.0  # energy detector: speech is louder than this relative to the file's loud level
    silero_threshold: float = 0.5  # speech probability threshold (silero-vad default)
    report_silence: float = 5.0  # a left-out pause at least this long is reported as silence
    cut_long_speech: bool = False  # cut speech longer than max_seconds at its quietest point instead of keeping it

    def __post_init__(self) -> None:
        if self.vad not in VAD_METHODS:
            raise BadInputError(f"unknown VAD {self.vad!r}", f"use one of: {', '.join(VAD_METHODS)}")
        if not 0 < self.min_seconds < self.max_seconds:
            raise BadInputError(
                f"segment length bounds {self.min_seconds}-{self.max_seconds} s are not 0 < min < max",
                "pass --segment-min smaller than --segment-max, both positive",
            )
        if self.threshold_seconds is not None and self.threshold_seconds <= 0:
            raise BadInputError(f"--segment-threshold {self.threshold_seconds} must be positive")
        if not 0 < self.min_pause <= self.split_pause:
            raise BadInputError(
                f"pause lengths min {self.min_pause} s / split {self.split_pause} s are not 0 < min <= split")
        if not 0 < self.silero_threshold < 1:
            raise BadInputError(f"Silero threshold {self.silero_threshold} must lie between 0 and 1")

    @property
    def threshold(self) -> float:
        return self.max_seconds if self.threshold_seconds is None else self.threshold_seconds


@dataclass(frozen=True)
class Segment:
    """One cut of a recording, in seconds from the start of the recording."""

    start: float  # where the segment's audio starts (inside a pause, or at a reported cut in speech)
    end: float
    speech_start: float  # first detected speech in it
    speech_end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Stretch:
    """A reported stretch of a recording: left out of every segment, or inside one but suspicious."""

    start: float
    end: float
    kind: str  # silence | non_speech | long_speech | cut_in_speech | short | clipping | dropout | no_speech
    reason: str
    segment: int | None = None  # index (0-based) of the segment it lies in, if any

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "kind": self.kind,
                "reason": self.reason, "segment": self.segment}


@dataclass
class FrameAnalysis:
    """Per-frame measurements of one recording: all the planner needs, a few MB per hour."""

    num_samples: int
    power: np.ndarray  # mean square of each 10 ms frame
    clipped: np.ndarray  # samples at full scale per 10 ms frame
    zeros: np.ndarray  # exactly-zero samples per 10 ms frame
    speech_prob: np.ndarray | None = None  # Silero speech probability per 32 ms window; None for the energy VAD

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE


@dataclass
class Segmentation:
    """The outcome for one recording: its segments and every stretch worth a user's attention."""

    duration: float
    segments: list[Segment]
    stretches: list[Stretch] = field(default_factory=list)
    speech: list[tuple[float, float]] = field(default_factory=list)  # detected speech regions (seconds)
    vad: str = "silero"

    @property
    def speech_seconds(self) -> float:
        return float(sum(b - a for a, b in self.speech))


# ------------------------------------------------------------------------------------------ analysis


def load_silero():
    """The Silero VAD TorchScript model from the ``silero-vad`` wheel (no download, no torchaudio)."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError as exc:
        raise ObtEvalError("Silero VAD is not installed", "pip install silero-vad, or use --vad energy") from exc
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread for the whole process
    with warnings.catch_warnings():  # its loader uses deprecated importlib/torch.jit calls; nothing for a user to do
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


def _lanes(num_samples: int, lanes: int) -> list[tuple[int, int, int]]:
    """(read start, core start, core end) of each batch row; core stretches tile the file on GRID."""
    count = max(1, min(lanes, num_samples // MIN_LANE))
    length = math.ceil(num_samples / count / GRID) * GRID
    out = []
    for k in range(count):
        core = k * length
        if core >= num_samples:
            break
        out.append((max(0, core - WARMUP), core, min(num_samples, core + length)))
    return out


def analyse(
    path: str | os.PathLike,
    vad: str = "silero",
    *,
    model=None,
    lanes: int = LANES,
    progress: Callable[[float], None] | None = None,
) -> FrameAnalysis:
    """Stream canonical 16 kHz mono audio once: energy, clipping and zero counts, and Silero probabilities.

    `progress` is called with the seconds of audio done after each block.
    """
    if vad not in VAD_METHODS:
        raise BadInputError(f"unknown VAD {vad!r}", f"use one of: {', '.join(VAD_METHODS)}")
    if vad == "energy":
        return _analyse(path, None, 1, progress)
    import torch

    model = model if model is not None else load_silero()
    # Each step is a few tiny matrix products: handing them to a second thread costs more than it gains,
    # and on a busy machine it stalls (measured: 0.7x real time with 2 threads, 24x with 1). The setting
    # is per thread, so ingest's other workers keep theirs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _analyse(path, model, lanes, progress)
    finally:
        torch.set_num_threads(threads)


def _analyse(path, model, lanes: int, progress: Callable[[float], None] | None) -> FrameAnalysis:
    with sf.SoundFile(str(path)) as f:
        if f.samplerate != SAMPLE_RATE or f.channels != 1:
            raise BadInputError(f"{path} is not 16 kHz mono audio", "segment the canonical audio that ingest writes")
        n = f.frames
        energy_frames = math.ceil(n / ENERGY_HOP)
        power = np.zeros(energy_frames, np.float32)
        clipped = np.zeros(energy_frames, np.uint16)
        zeros = np.zeros(energy_frames, np.uint16)
        probs = np.zeros(math.ceil(n / VAD_WINDOW), np.float32) if model is not None else None
        plan = _lanes(n, lanes) if model is not None else [(0, 0, n)]
        step = STEP if model is not None else ENERGY_BLOCK
        if model is not None:
            model.reset_states()
        longest = max(end - read for read, _, end in plan)
        done = 0.0
        for t in range(math.ceil(longest / step)):
            block = np.zeros((len(plan), step), np.float32) if model is not None else None
            for row, (read, core, end) in enumerate(plan):
                a = read + t * step
                b = min(a + step, end)
                if a >= b:
                    continue
                f.seek(a)
                x = f.read(b - a, dtype="float32", always_2d=False)
                if len(x) < b - a:
                    raise BadInputError(f"{path}: audio ends after {a + len(x)} of {n} samples (truncated)")
                if block is not None:
                    block[row, : len(x)] = x
                _frame_stats(x, a // ENERGY_HOP, power, clipped, zeros)
                done += (b - max(a, core)) / SAMPLE_RATE if b > core else 0.0
            if model is not None:
                _silero_block(model, block, plan, t * step, probs)
            if progress is not None:
                progress(done)
    return FrameAnalysis(num_samples=n, power=power, clipped=clipped, zeros=zeros, speech_prob=probs)


def _frame_stats(x: np.ndarray, first: int, power: np.ndarray, clipped: np.ndarray, zeros: np.ndarray) -> None:
    # Blocks start on the 10 ms grid; only the file's last block can end mid-frame (zero-padded).
    whole = math.ceil(len(x) / ENERGY_HOP)
    padded = np.zeros(whole * ENERGY_HOP, np.float32)
    padded[: len(x)] = x
    frames = padded.reshape(whole, ENERGY_HOP)
    sl = slice(first, first + whole)
    power[sl] = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / ENERGY_HOP
    clipped[sl] = (np.abs(frames) >= CLIP_LEVEL).sum(axis=1)
    exact = (frames == 0).sum(axis=1)
    exact[-1] -= len(padded) - len(x)  # padding is not a dropout
    zeros[sl] = exact


def _silero_block(model, block: np.ndarray, plan: list[tuple[int, int, int]], offset: int, probs: np.ndarray) -> None:
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(block)
        out = np.empty((block.shape[0], block.shape[1] // VAD_WINDOW), np.float32)
        for j in range(out.shape[1]):
            out[:, j] = model(x[:, j * VAD_WINDOW:(j + 1) * VAD_WINDOW], SAMPLE_RATE).numpy()[:, 0]
    for row, (read, core, end) in enumerate(plan):
        # keep only windows of the row's own stretch: its warm-up belongs to the row before
        start = read + offset
        first = max(0, (core - start) // VAD_WINDOW)
        last = min(out.shape[1], math.ceil((end - start) / VAD_WINDOW))
        if last > first:
            probs[start // VAD_WINDOW + first: start // VAD_WINDOW + last] = out[row, first:last]


# ------------------------------------------------------------------------------------ speech regions


@dataclass(frozen=True)
class EnergyLevels:
    db: np.ndarray  # 30 ms RMS level in dB, one value per 10 ms frame
    loud: float  # the file's loud level (99.9th percentile frame, robust to a single click)
    floor: float  # its noise floor (5th percentile frame)
    threshold: float  # speech is at or above this

    @property
    def active(self) -> np.ndarray:
        return self.db >= self.threshold


def energy_levels(analysis: FrameAnalysis, relative_db: float = -40.0) -> EnergyLevels:
    smoothed = np.convolve(analysis.power.astype(np.float64), np.ones(3) / 3, mode="same")
    db = 10 * np.log10(smoothed + 1e-10)
    loud = float(np.percentile(db, 99.9))
    floor = float(np.percentile(db, 5))
    return EnergyLevels(db=db, loud=loud, floor=floor, threshold=max(loud + relative_db, floor + FLOOR_MARGIN_DB))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of `mask`."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _bridge(regions: list[list[float]], min_gap: float, min_length: float) -> list[tuple[float, float]]:
    """Join regions separated by less than `min_gap`, then drop those shorter than `min_length`."""
    joined: list[list[float]] = []
    for a, b in regions:
        if joined and a - joined[-1][1] < min_gap:
            joined[-1][1] = max(joined[-1][1], b)
        else:
            joined.append([a, b])
    return [(a, b) for a, b in joined if b - a >= min_length]


def _energy_time(index: int) -> float:
    # a smoothed energy frame is centred on its 10 ms frame's middle
    return (index * ENERGY_HOP + ENERGY_HOP / 2) / SAMPLE_RATE


def speech_regions(analysis: FrameAnalysis, opts: SegmentOptions, levels: EnergyLevels) -> list[tuple[float, float]]:
    """Detected speech as (start, end) seconds, sorted, separated by pauses of at least `opts.min_pause`."""
    active = levels.active
    if analysis.speech_prob is None:
        starts, ends = _runs(active)
        raw = [[_energy_time(a), _energy_time(b)] for a, b in zip(starts, ends, strict=True)]
        regions = _bridge(raw, opts.min_pause, MIN_SPEECH_ENERGY)
    else:
        regions = _bridge(_silero_runs(analysis.speech_prob, opts.silero_threshold), opts.min_pause, MIN_SPEECH)
        regions = _bridge([_refine(a, b, active) for a, b in regions], opts.min_pause, MIN_SPEECH)
    duration = analysis.duration
    return [(max(0.0, a), min(duration, b)) for a, b in regions if min(duration, b) > max(0.0, a)]


def _silero_runs(probs: np.ndarray, threshold: float) -> list[list[float]]:
    on, off = threshold, max(threshold - SILERO_OFF, 0.01)
    runs, start, speaking = [], 0, False
    # hysteresis as in silero-vad: enter at >= on, leave below off; vectorised over the few state changes
    above_on, below_off = probs >= on, probs < off
    i, n = 0, len(probs)
    while i < n:
        if not speaking:
            hits = np.flatnonzero(above_on[i:])
            if not len(hits):
                break
            start, speaking, i = i + hits[0], True, i + hits[0] + 1
        else:
            hits = np.flatnonzero(below_off[i:])
            if not len(hits):
                break
            runs.append([start * VAD_WINDOW / SAMPLE_RATE, (i + hits[0]) * VAD_WINDOW / SAMPLE_RATE])
            speaking, i = False, i + hits[0] + 1
    if speaking:
        runs.append([start * VAD_WINDOW / SAMPLE_RATE, n * VAD_WINDOW / SAMPLE_RATE])
    return runs


def _refine(start: float, end: float, active: np.ndarray) -> list[float]:
    """Move Silero's 32 ms boundaries to the first/last loud 10 ms frame nearby, if there is one."""
    def frame(t: float) -> int:
        return int(np.clip(round(t * SAMPLE_RATE / ENERGY_HOP), 0, len(active)))

    lo, hi = frame(start - REFINE_BEFORE_ONSET), frame(start + REFINE_AFTER_ONSET)
    hits = np.flatnonzero(active[lo:hi])
    new_start = _energy_time(lo + hits[0]) if len(hits) else start
    lo, hi = frame(end - REFINE_BEFORE_OFFSET), frame(end + REFINE_AFTER_OFFSET)
    hits = np.flatnonzero(active[lo:hi])
    new_end = _energy_time(lo + hits[-1] + 1) if len(hits) else end
    if new_end <= new_start:
        return [start, end]
    return [new_start, new_end]


# ------------------------------------------------------------------------------------------- planner


def plan_segments(
    speech: list[tuple[float, float]],
    duration: float,
    opts: SegmentOptions,
    levels: EnergyLevels | None = None,
) -> tuple[list[Segment], list[Stretch]]:
    """Cut points for detected `speech`: every cut in the middle of a pause, segments in [min, max] s.

    1. every pause of at least `split_pause` ends a segment (sentence and verse breaks);
    2. a stretch longer than `max_seconds` is cut at its longest pause, preferring cuts that leave
       both sides at least `min_seconds` long, until it fits;
    3. a segment shorter than `min_seconds` joins the neighbour across the shorter pause (at most
       MERGE_PAUSE long) if the result still fits;
    4. speech longer than `max_seconds` without any pause is kept whole and reported, or, with
       `cut_long_speech`, cut at its quietest 50 ms.
    Each segment keeps up to `edge_pause` of the pause before and after its speech.
    """
    if not speech:
        return [], []
    regions = [(float(a), float(b)) for a, b in speech]
    n = len(regions)
    gaps = [regions[i + 1][0] - regions[i][1] for i in range(n - 1)]
    left = [min(opts.edge_pause, regions[0][0])] + [min(opts.edge_pause, g / 2) for g in gaps]
    right = [min(opts.edge_pause, g / 2) for g in gaps] + [min(opts.edge_pause, duration - regions[-1][1])]

    def length(i: int, j: int) -> float:
        return regions[j][1] + right[j] - (regions[i][0] - left[i])

    groups: list[tuple[int, int]] = []
    first = 0
    for i, gap in enumerate(gaps):
        if gap >= opts.split_pause:
            groups.append((first, i))
            first = i + 1
    groups.append((first, n - 1))

    def split(i: int, j: int) -> list[tuple[int, int]]:
        # a work list, not recursion: a chapter without one 0.5 s pause may need hundreds of cuts
        done, todo = [], [(i, j)]
        while todo:
            i, j = todo.pop()
            if i == j or length(i, j) <= opts.max_seconds:
                done.append((i, j))
                continue
            cuts = range(i, j)
            balanced = [k for k in cuts if length(i, k) >= opts.min_seconds and length(k + 1, j) >= opts.min_seconds]
            middle = (regions[i][0] + regions[j][1]) / 2
            k = max(balanced or cuts, key=lambda k: (gaps[k], -abs(regions[k][1] - middle)))
            todo += [(k + 1, j), (i, k)]
        return done

    groups = [part for i, j in groups for part in split(i, j)]
    groups = _merge_short(groups, gaps, length, opts)

    segments: list[Segment] = []
    stretches: list[Stretch] = []
    for i, j in groups:
        start, end = regions[i][0] - left[i], regions[j][1] + right[j]
        whole = Segment(start, end, regions[i][0], regions[j][1])
        if whole.duration > opts.max_seconds and i == j:
            if opts.cut_long_speech and levels is not None:
                pieces = _cut_in_speech(whole, opts, levels)
                for a, b in zip(pieces, pieces[1:], strict=False):
                    stretches.append(Stretch(a.end, b.start, "cut_in_speech",
                                             f"{whole.duration:.1f} s of speech without a pause; cut at its quietest "
                                             f"point", len(segments)))
                    segments.append(a)
                segments.append(pieces[-1])
                continue
            stretches.append(Stretch(whole.speech_start, whole.speech_end, "long_speech",
                                     f"{whole.duration:.1f} s of speech without a pause of {opts.min_pause} s; kept "
                                     f"whole (over --segment-max {opts.max_seconds} s; --cut-long-speech cuts it at "
                                     f"its quietest point)", len(segments)))
        elif whole.duration < opts.min_seconds:
            stretches.append(Stretch(whole.start, whole.end, "short",
                                     f"{whole.duration:.1f} s of speech between long pauses; kept as a segment "
                                     f"shorter than --segment-min {opts.min_seconds} s", len(segments)))
        segments.append(whole)
    return segments, stretches


def _merge_short(
    groups: list[tuple[int, int]], gaps: list[float], length: Callable[[int, int], float], opts: SegmentOptions
) -> list[tuple[int, int]]:
    groups = list(groups)
    stuck: set[tuple[int, int]] = set()
    while True:
        shorts = [g for g in groups if length(*g) < opts.min_seconds and g not in stuck]
        if not shorts:
            return groups
        g = min(shorts, key=lambda g: (length(*g), g))
        k = groups.index(g)
        options = []
        if k > 0:
            prev = groups[k - 1]
            options.append((gaps[prev[1]], k - 1, (prev[0], g[1])))
        if k + 1 < len(groups):
            nxt = groups[k + 1]
            options.append((gaps[g[1]], k, (g[0], nxt[1])))
        options = [o for o in options if o[0] <= MERGE_PAUSE and length(*o[2]) <= opts.max_seconds]
        if not options:
            stuck.add(g)
            continue
        _, at, merged = min(options)
        groups[at: at + 2] = [merged]


def _cut_in_speech(whole: Segment, opts: SegmentOptions, levels: EnergyLevels) -> list[Segment]:
    """Cut a pause-less stretch at its quietest 50 ms (allowed by `cut_long_speech`) until the pieces fit."""
    smooth = np.convolve(levels.db, np.ones(5) / 5, mode="same")
    frame = ENERGY_HOP / SAMPLE_RATE
    done, todo = [], [whole]
    while todo:
        seg = todo.pop()
        if seg.duration <= opts.max_seconds:
            done.append(seg)
            continue
        lo, hi = int(math.ceil((seg.start + opts.min_seconds) / frame)), int((seg.end - opts.min_seconds) / frame)
        if hi <= lo:  # both sides cannot reach min_seconds: the quietest point anywhere inside
            lo, hi = int(seg.start / frame) + 1, int(seg.end / frame)
        at = _energy_time(lo + int(np.argmin(smooth[lo:hi])))
        todo += [Segment(at, seg.end, at, seg.speech_end), Segment(seg.start, at, seg.speech_start, at)]
    return done


# ----------------------------------------------------------------------------------------- reporting


def _left_out(segments: list[Segment], duration: float) -> Iterator[tuple[float, float]]:
    t = 0.0
    for s in segments:
        if s.start > t:
            yield t, s.start
        t = max(t, s.end)
    if duration > t:
        yield t, duration


def _segment_at(segments: list[Segment], t: float) -> int | None:
    for k, s in enumerate(segments):
        if s.start <= t < s.end:
            return k
    return None


def report_stretches(
    segments: list[Segment],
    speech: list[tuple[float, float]],
    analysis: FrameAnalysis,
    levels: EnergyLevels,
    opts: SegmentOptions,
) -> list[Stretch]:
    """Left-out silence and sound, and clipping or dropouts anywhere, each with its reason."""
    out: list[Stretch] = []
    active = levels.active
    frame = ENERGY_HOP / SAMPLE_RATE
    for a, b in _left_out(segments, analysis.duration):
        i, j = int(a / frame), int(math.ceil(b / frame))
        loud = float(active[i:j].mean()) if j > i else 0.0
        if analysis.speech_prob is not None and b - a >= NON_SPEECH_MIN and loud >= 0.5:
            out.append(Stretch(a, b, "non_speech", f"{b - a:.1f} s of sound that Silero VAD does not hear as speech "
                                                  f"({loud:.0%} of it at speech level): music or noise? left out"))
        elif b - a >= opts.report_silence:
            level = float(np.median(levels.db[i:j])) if j > i else levels.floor
            out.append(Stretch(a, b, "silence", f"{b - a:.1f} s without speech (median level {level:.0f} dBFS); "
                                                f"left out"))
    starts, ends = _runs(analysis.clipped > 0)
    for a, b in _group_runs(starts, ends, gap=int(1.0 / frame)):
        count = int(analysis.clipped[a:b].sum())
        if count >= CLIP_MIN_SAMPLES:
            t = float(a * frame)
            out.append(Stretch(t, float(b * frame), "clipping", f"{count} samples at full scale (clipped recording)",
                               _segment_at(segments, t)))
    # A dropout is digital silence inside speech (shorter than a pause, loud right before and after).
    # Digital silence between phrases is a gated pause (common in edited narration), not damage.
    raw_db = 10 * np.log10(analysis.power.astype(np.float64) + 1e-10)
    speech_starts = np.array([a for a, _ in speech])
    starts, ends = _runs(analysis.zeros >= ENERGY_HOP)
    for a, b in zip(starts, ends, strict=True):
        t0, t1 = float(a * frame), float(b * frame)
        k = _segment_at(segments, (t0 + t1) / 2)
        abrupt = a > 0 and b < len(raw_db) and min(raw_db[a - 1], raw_db[b]) >= levels.threshold
        k_speech = int(np.searchsorted(speech_starts, t0)) - 1
        in_speech = k_speech >= 0 and speech[k_speech][1] > t1
        if t1 - t0 >= DROPOUT_MIN and k is not None and abrupt and in_speech:
            out.append(Stretch(t0, t1, "dropout", f"{(t1 - t0) * 1000:.0f} ms of digital silence inside a segment "
                                                  f"(a dropout in the recording?)", k))
    return sorted(out, key=lambda s: (s.start, s.kind))


def _group_runs(starts: np.ndarray, ends: np.ndarray, gap: int) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if out and a - out[-1][1] <= gap:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


# ------------------------------------------------------------------------------------------ top level


def segment_recording(
    path: str | os.PathLike,
    opts: SegmentOptions | None = None,
    *,
    model=None,
    progress: Callable[[float], None] | None = None,
) -> Segmentation:
    """Detect speech in a canonical 16 kHz recording and plan its segments; nothing is written."""
    opts = opts or SegmentOptions()
    analysis = analyse(path, opts.vad, model=model, progress=progress)
    levels = energy_levels(analysis, opts.energy_db)
    speech = speech_regions(analysis, opts, levels)
    segments, planned = plan_segments(speech, analysis.duration, opts, levels)
    if segments:
        stretches = sorted(planned + report_stretches(segments, speech, analysis, levels, opts),
                           key=lambda s: (s.start, s.kind))
    else:
        level = float(np.median(levels.db))
        stretches = [Stretch(0.0, analysis.duration, "no_speech", f"no speech found by the {opts.vad} VAD in "
                                                                  f"{analysis.duration:.1f} s (median level "
                                                                  f"{level:.0f} dBFS)")]
    return Segmentation(duration=analysis.duration, segments=segments, stretches=stretches, speech=speech,
                        vad=opts.vad)


def sample_bounds(segment: Segment) -> tuple[int, int]:
    """First and end (exclusive) sample of a segment in the 16 kHz recording."""
    return int(round(segment.start * SAMPLE_RATE)), int(round(segment.end * SAMPLE_RATE))


def write_segment_audio(source: str | os.PathLike, segments: list[Segment], destinations: list[Path]
                        ) -> list[tuple[int, int, str]]:
    """Copy each segment of canonical 16 kHz audio `source` to its WAV (atomic writes).

    Returns (samples, file size, checksum) per segment: the corpus owns these files and verifies them
    when they are read. The segment keeps the source's sample format (16-bit or float), so cutting adds
    no requantisation.
    """
    written = []
    with sf.SoundFile(str(source)) as f:
        subtype = "FLOAT" if f.subtype in ("FLOAT", "DOUBLE") else "PCM_16"
        for segment, dest in zip(segments, destinations, strict=True):
            a, b = sample_bounds(segment)
            b = min(b, f.frames)
            f.seek(a)
            wave = f.read(b - a, dtype="float32", always_2d=False)
            size, checksum = write_owned_wav(dest, wave, SAMPLE_RATE, subtype)
            written.append((len(wave), size, checksum))
    return written
