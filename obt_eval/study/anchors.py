"""Quality-control audio: the degraded anchor for attention checks."""

from __future__ import annotations

import numpy as np
from scipy import signal

from obt_eval.study.config import AnchorConfig


def degrade(wave: np.ndarray, sample_rate: int, config: AnchorConfig, rng: np.random.Generator,
            noise_envelope: np.ndarray | None = None) -> np.ndarray:
    """Low-pass at `lowpass_hz` and add white noise at `snr_db`: clearly worse than any sane system.

    `noise_envelope` (0..1 per sample) confines the noise to the sound, so the anchor's audible start
    and end sit where every other version of the utterance has them (no onset cue in the bytes).
    """
    out = np.asarray(wave, dtype=np.float64)
    if config.lowpass_hz < sample_rate / 2:
        sos = signal.butter(8, config.lowpass_hz, btype="low", fs=sample_rate, output="sos")
        out = signal.sosfiltfilt(sos, out)
    envelope = np.ones(out.size) if noise_envelope is None else np.asarray(noise_envelope, dtype=np.float64)
    # The SNR holds where the noise is: signal power over the envelope-weighted span.
    weight = float(np.sum(envelope**2)) or 1.0
    power = float(np.sum(out**2 * envelope**2)) / weight or 1e-10
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (config.snr_db / 10)), out.size) * envelope
    return (out + noise).astype(np.float32)
