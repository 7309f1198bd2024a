"""Long recordings of known structure for the segmentation tests and benchmark: espeak demo utterances
joined by pauses of chosen length, with the true speech extents and whole-file phone alignments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from obt_eval.alignments import PhoneInterval, read_textgrid, write_textgrid
from obt_eval.frames import SAMPLE_RATE

AUDIBLE = 1e-3  # |sample| above this (-60 dBFS) is sound; the demo's own padding is exact zeros without noise


@dataclass
class Chapter:
    path: Path
    duration: float
    utterances: list[str]  # demo utterance ids in order
    offsets: list[float]  # where each utterance's file starts in the chapter (seconds)
    speech: list[tuple[float, float]]  # true audible extent of each utterance in the chapter
    phones: list[PhoneInterval]  # whole-chapter phone alignment (utterance = chapter id)

    def pauses(self) -> list[tuple[float, float]]:
        """The silent stretches between utterances (and before the first / after the last)."""
        edges = [0.0] + [t for a, b in self.speech for t in (a, b)] + [self.duration]
        return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]


def make_chapter(
    demo_dir: Path,
    out: Path,
    utterances: list[str],
    pauses: list[float],
    *,
    noise_dbfs: float | None = -60.0,
    seed: int = 0,
    lead: float = 0.5,
    edit=None,
) -> Chapter:
    """Join demo utterances (made with noise_dbfs=None) with `pauses` seconds of silence between them.

    Room tone (white noise) is added over the whole file; then `edit(wave, chapter)` may change the
    wave in place (overwrite a pause with music, clip or zero part of an utterance). Writes `out` in the format
    its suffix names (.wav, .mp3, .flac) and `<out stem>.TextGrid` next to it.
    """
    assert len(pauses) == len(utterances) - 1
    parts, offsets, speech, phones = [np.zeros(int(lead * SAMPLE_RATE), np.float32)], [], [], []
    t = int(lead * SAMPLE_RATE)
    for k, uid in enumerate(utterances):
        x, sr = sf.read(demo_dir / "wavs" / f"{uid}.wav", dtype="float32")
        assert sr == SAMPLE_RATE
        loud = np.flatnonzero(np.abs(x) > AUDIBLE)
        offsets.append(t / SAMPLE_RATE)
        speech.append(((t + loud[0]) / SAMPLE_RATE, (t + loud[-1] + 1) / SAMPLE_RATE))
        phones += [PhoneInterval(out.stem, t / SAMPLE_RATE + a, t / SAMPLE_RATE + b, p)
                   for a, b, p in read_textgrid(demo_dir / "textgrids" / f"{uid}.TextGrid")]
        gap = np.zeros(int(round((pauses[k] if k < len(pauses) else lead) * SAMPLE_RATE)), np.float32)
        parts += [x, gap]
        t += len(x) + len(gap)
    wave = np.concatenate(parts)
    chapter = Chapter(out, len(wave) / SAMPLE_RATE, list(utterances), offsets, speech, phones)
    if noise_dbfs is not None:
        rng = np.random.default_rng(seed)
        wave = wave + rng.normal(0, 10 ** (noise_dbfs / 20), wave.size).astype(np.float32)
    if edit is not None:
        edit(wave, chapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, np.clip(wave, -1, 1), SAMPLE_RATE)
    write_textgrid(out.with_suffix(".TextGrid"), phones, xmax=chapter.duration)
    return chapter


def pause_plan(count: int, low: float, high: float, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).uniform(low, high, count).round(3).tolist()
