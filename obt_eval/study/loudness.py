"""Loudness normalisation of stimuli to one target, so level never tells a rater which system they hear."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm

from obt_eval.errors import BadInputError
from obt_eval.study.config import LoudnessConfig

_MIN_SECONDS = 0.4  # one BS.1770 gating block


def integrated_loudness(wave: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness (LUFS); raises BadInputError on clips too short or silent."""
    if wave.size < int(_MIN_SECONDS * sample_rate):
        raise BadInputError(f"a clip of {wave.size / sample_rate:.2f} s is too short to measure loudness",
                            "use clips of at least 0.4 s")
    value = loudness_lufs(wave, sample_rate)
    if not math.isfinite(value):
        raise BadInputError("a clip is silent (loudness -inf)", "remove silent clips from the stimuli")
    return value


def loudness_lufs(wave: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness of a clip of at least 0.4 s; -inf when nothing passes the -70 LUFS gate."""
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(wave, dtype=np.float64)))
    return value if not math.isnan(value) else -math.inf


def level_problem(loudness_lufs: float, config: LoudnessConfig) -> str | None:
    """Why a clip of this loudness cannot be normalised to the study's target (None: it can).

    Silent clips (below BS.1770's -70 LUFS gate, or NaN) have no loudness to scale; a clip needing more
    than ``config.max_gain_db`` is near-silence whose boost would mostly be noise. Measured against the
    configured target, the highest the common target can be, so a clip accepted here never gets more
    than the maximum gain; synthesize applies the same rule to its outputs.
    """
    if not math.isfinite(loudness_lufs):
        return "silent (loudness -inf LUFS: nothing above the -70 LUFS gate)"
    gain = config.target_lufs - loudness_lufs
    if gain > config.max_gain_db:
        return (f"near-silent ({loudness_lufs:.1f} LUFS): reaching {config.target_lufs:g} LUFS needs {gain:+.1f} dB, "
                f"above the maximum gain of {config.max_gain_db:g} dB (it would mostly amplify noise)")
    return None


def peak_dbfs(wave: np.ndarray) -> float:
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def common_target(loudness: list[float], peaks: list[float], config: LoudnessConfig) -> tuple[float, list[str]]:
    """The one target for all clips: the configured one, lowered (down to the floor) so that no clip clips."""
    notes = []
    headroom = [lu + (config.max_peak_dbfs - pk) for lu, pk in zip(loudness, peaks, strict=True)]
    target = config.target_lufs
    if headroom and min(headroom) < target:
        target = max(min(headroom), config.floor_lufs)
        notes.append(f"loudness target lowered from {config.target_lufs} to {target:.1f} LUFS so no clip clips")
    return target, notes


def apply_gain(wave: np.ndarray, gain_db: float, max_peak_dbfs: float) -> tuple[np.ndarray, bool]:
    """Scale by `gain_db`; samples beyond the peak ceiling are hard-limited (reported, rare by construction)."""
    out = np.asarray(wave, dtype=np.float32) * np.float32(10 ** (gain_db / 20))
    ceiling = np.float32(10 ** (max_peak_dbfs / 20))
    limited = bool(np.any(np.abs(out) > ceiling))
    if limited:
        out = np.clip(out, -ceiling, ceiling)
    return out, limited
