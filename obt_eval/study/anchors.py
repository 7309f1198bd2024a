"""Quality-control audio: the degraded anchor for attention checks and byte-distinct copies for hidden repeats."""

from __future__ import annotations

import numpy as np
from scipy import signal

from obt_eval.study.config import AnchorConfig


def degrade(wave: np.ndarray, sample_rate: int, config: AnchorConfig, rng: np.random.Generator) -> np.ndarray:
    """Low-pass at `lowpass_hz` and add white noise at `snr_db`: clearly worse than any sane system."""
    out = np.asarray(wave, dtype=np.float64)
    if config.lowpass_hz < sample_rate / 2:
        sos = signal.butter(8, config.lowpass_hz, btype="low", fs=sample_rate, output="sos")
        out = signal.sosfiltfilt(sos, out)
    power = float(np.mean(out**2)) or 1e-10
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (config.snr_db / 10)), out.size)
    return (out + noise).astype(np.float32)


def dithered_copy(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same clip plus ±1 LSB (16-bit) triangular dither: inaudible, but different samples and bytes.

    Players and Gradio's cache key clips by content, so an exact copy would give a hidden repeat away.
    """
    lsb = 1.0 / 32768
    tpdf = (rng.uniform(-lsb, lsb, wave.size) + rng.uniform(-lsb, lsb, wave.size)).astype(np.float32)
    return np.asarray(wave, dtype=np.float32) + tpdf
