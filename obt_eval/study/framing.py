"""One frame for every clip of an utterance: trimmed by one energy rule, faded, placed in one common length.

Whatever padding a system left (a vocoder's leading digital silence, frame rounding, a recording's room
tone) is cut by the same rule for all, so the length of a clip, where its sound starts and what its
ends look like depend only on the utterance — never on the system or the trial kind. The padding
before the sound is drawn, and the noise floor laid under the clip, at each serve
(obt_eval.study.serving).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obt_eval.study.config import PaddingConfig

_FRAME_SECONDS = 0.005


@dataclass(frozen=True)
class Span:
    """Where a clip's sound is: ``loud`` is the first to last frame above the threshold, ``kept`` adds the margin
    (and may reach before 0 or past the end)."""

    kept_start: int
    kept_end: int
    loud_start: int
    loud_end: int


def sound_span(wave: np.ndarray, sample_rate: int, config: PaddingConfig = PaddingConfig()) -> Span:
    """Frames quieter than the loudest one by ``trim_top_db`` at either end are padding, whatever made them.

    Relative to the clip's own loudest frame, so a vocoder's digital silence, its low-level hiss and a
    natural recording's room tone are all cut; silence inside the utterance is kept. ``kept`` reaches
    ``trim_margin_seconds`` beyond the loud frames even past the clip's ends (`trim` fills that with
    silence), so the words start at the same place in every system's clip.
    """
    wave = np.asarray(wave, dtype=np.float64)
    margin = int(round(config.trim_margin_seconds * sample_rate))
    hop = max(1, int(_FRAME_SECONDS * sample_rate))
    frames = wave.size // hop
    power = np.mean(wave[: frames * hop].reshape(frames, hop) ** 2, axis=1) if frames else np.zeros(0)
    if power.size == 0 or power.max() <= 0:
        return Span(-margin, wave.size + margin, 0, wave.size)  # nothing found (loudness refuses silence later)
    db = 10 * np.log10(np.maximum(power, 1e-20))
    loud = np.flatnonzero(db >= db.max() - config.trim_top_db)
    loud_start, loud_end = int(loud[0]) * hop, min(wave.size, (int(loud[-1]) + 1) * hop)
    return Span(loud_start - margin, loud_end + margin, loud_start, loud_end)


def fade_window(length: int, sample_rate: int, config: PaddingConfig = PaddingConfig()) -> np.ndarray:
    """Ones with a raised-cosine rise and fall of ``fade_seconds`` at the ends (shorter for very short clips)."""
    window = np.ones(length)
    n = min(int(round(config.fade_seconds * sample_rate)), length // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
        window[:n] = ramp
        window[length - n:] = ramp[::-1]
    return window


def trim(wave: np.ndarray, sample_rate: int, config: PaddingConfig = PaddingConfig()) -> tuple[np.ndarray, Span]:
    """The clip without its quiet ends (margins filled with silence where the clip is shorter), faded in
    and out; and where its loud part is within the trimmed clip."""
    wave = np.asarray(wave, dtype=np.float64)
    span = sound_span(wave, sample_rate, config)
    cut = np.concatenate([np.zeros(max(0, -span.kept_start)), wave[max(0, span.kept_start):span.kept_end],
                          np.zeros(max(0, span.kept_end - wave.size))])
    inner = Span(0, cut.size, span.loud_start - span.kept_start, span.loud_end - span.kept_start)
    return cut * fade_window(cut.size, sample_rate, config), inner


def frame_length(longest_sound: int, sample_rate: int, config: PaddingConfig = PaddingConfig()) -> int:
    """The common length of an utterance's clips: its longest trimmed version plus the most padding."""
    return longest_sound + int(round((config.lead_max_seconds + config.tail_min_seconds) * sample_rate))


def stored_lead(sample_rate: int, config: PaddingConfig = PaddingConfig()) -> int:
    """Where every stored clip's sound starts: after the most padding, so a serve can move it anywhere earlier.

    The same for all clips; each serve draws the padding it plays (`draw_lead`).
    """
    return int(round(config.lead_max_seconds * sample_rate))


def draw_lead(rng: np.random.Generator, sample_rate: int, config: PaddingConfig = PaddingConfig()) -> int:
    """Samples of padding before the sound in one serve, drawn the same way for every clip."""
    low = int(round(config.lead_min_seconds * sample_rate))
    high = int(round(config.lead_max_seconds * sample_rate))
    return int(rng.integers(low, max(low, high) + 1))


def place(sound: np.ndarray, lead: int, length: int) -> np.ndarray:
    """``sound`` at offset ``lead`` in ``length`` samples; the noise floor is added by each serve."""
    if lead + sound.size > length:
        raise ValueError(f"a clip of {sound.size} samples at offset {lead} does not fit in {length}")
    out = np.zeros(length, dtype=np.float32)
    out[lead:lead + sound.size] = sound
    return out


def noise_floor(length: int, rng: np.random.Generator, config: PaddingConfig = PaddingConfig()) -> np.ndarray:
    """White noise at ``noise_floor_dbfs`` RMS, drawn afresh for every serve (in 16-bit LSB units).

    Fresh, not stored: a noise stored with a clip would be its fingerprint (its loudest padding sample,
    say), recognisable in every serve of it.
    """
    return rng.standard_normal(length, dtype=np.float32) * np.float32(10 ** (config.noise_floor_dbfs / 20) * 32768)
