"""What makes stimuli comparable across systems: one silence policy and one loudness target.

Raters must not be able to tell systems apart by level or by how much silence precedes the speech,
so every system's output goes through the same two steps: trim leading/trailing silence (relative
to the clip's own peak) and pad a fixed margin of digital silence; then scale to one integrated
loudness (EBU R128 / ITU-R BS.1770, pyloudnorm). A silent clip, or one so quiet that reaching the
target would need more than `max_gain_db` (the gain would mostly amplify noise), is refused with the
reason instead of being normalised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyloudnorm

from obt_eval.frames import SAMPLE_RATE
from obt_eval.study.config import MAX_GAIN_DB


@dataclass(frozen=True)
class OutputPolicy:
    # EBU R128 programme loudness target; BS.1770 gating is what pyloudnorm implements
    loudness_lufs: float = -23.0
    trim: bool = True
    trim_db: float = 40.0  # below the clip's peak counts as silence (librosa.effects.trim's default is 60)
    pad_ms: float = 150.0  # digital silence added at both ends after trimming
    peak_limit: float = 0.99  # a clip whose peak would exceed this is scaled down (and flagged)
    # most gain a clip may get (one rule with study creation, see obt_eval.study.config.MAX_GAIN_DB): a -53 LUFS
    # clip still reaches -23 LUFS; one quieter is near-silence, and a 40 dB boost would play its noise to raters
    max_gain_db: float = MAX_GAIN_DB

    def to_dict(self) -> dict:
        return asdict(self)


def trim_silence(wave: np.ndarray, top_db: float, frame: int = 512, hop: int = 128) -> tuple[int, int]:
    """(start, end) sample indices of the non-silent part; the whole clip when it is all silence."""
    import librosa

    if wave.size < frame:
        return 0, wave.size
    _, (start, end) = librosa.effects.trim(wave, top_db=top_db, frame_length=frame, hop_length=hop)
    return (int(start), int(end)) if end > start else (0, wave.size)


def integrated_loudness(wave: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """BS.1770 integrated loudness; clips shorter than the 400 ms gating block use one block."""
    block = min(0.4, wave.size / rate)
    if block <= 0:
        return float("-inf")
    return float(pyloudnorm.Meter(rate, block_size=block).integrated_loudness(wave.astype(np.float64)))


class UnusableClip(ValueError):
    """A clip that cannot be loudness-normalised (silent, or quieter than the maximum gain allows)."""


def apply_policy(wave: np.ndarray, policy: OutputPolicy, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """Trim, pad and loudness-normalise one clip; returns the clip and what was done to it.

    Raises `UnusableClip` (the message gives the loudness and the gain it would need) for a silent or
    near-silent clip.
    """
    wave = np.asarray(wave, dtype=np.float32)
    start, end = trim_silence(wave, policy.trim_db) if policy.trim else (0, wave.size)
    core = wave[start:end]
    before = integrated_loudness(core, rate)
    if not np.isfinite(before):
        raise UnusableClip("the output is silent (loudness -inf LUFS, below the -70 LUFS gate): not written")
    gain_db = policy.loudness_lufs - before
    if gain_db > policy.max_gain_db:
        raise UnusableClip(
            f"the output is near-silent ({before:.1f} LUFS): reaching {policy.loudness_lufs:g} LUFS needs "
            f"{gain_db:+.1f} dB, above the maximum gain of {policy.max_gain_db:g} dB (it would mostly amplify "
            "noise): not written")
    core = core * np.float32(10 ** (gain_db / 20))
    peak = float(np.max(np.abs(core))) if core.size else 0.0
    limited = peak > policy.peak_limit
    if limited:
        core = core * np.float32(policy.peak_limit / peak)
    pad = int(round(policy.pad_ms * rate / 1000))
    out = np.concatenate([np.zeros(pad, np.float32), core, np.zeros(pad, np.float32)])
    info = {"trim_start": start, "trim_end": int(wave.size - end), "pad": pad, "loudness_before": before,
            "gain_db": gain_db, "peak_limited": bool(limited)}
    return out, info
