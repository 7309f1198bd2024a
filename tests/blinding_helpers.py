"""Generated stimuli for the blinding tests: one shared "speech" per utterance, packaged as each system would.

The systems differ only in what real pipelines leave around the words: a vocoder that starts every clip
with exactly 150 ms of digital silence (and ends with 40 ms more), one whose output is rounded up to
whole 20 ms frames with zeros and is exactly silent between syllables, and natural segments cut from a
recording with room tone (-60 dBFS) before and after the words. Each has its own level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SYSTEMS = ("natural", "voc150", "vocframe")


def speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Syllable-like harmonic bursts with a moving f0: onsets, gaps and a speech-like envelope, peak 1."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 115 + 25 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(h * phase) / h for h in range(1, 9))
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(rng.uniform(0.11, 0.22) * SR)
        envelope[pos:pos + syl] = (np.hanning(syl) * rng.uniform(0.5, 1.0))[: n - pos]
        pos += syl + int(rng.uniform(0.02, 0.07) * SR)
    return voice * envelope / np.max(np.abs(voice * envelope))


def write_packaged_sources(root: Path, utterances: int, seed: int = 0) -> dict[str, str]:
    """One folder of WAVs per system (`SYSTEMS`), utterances ``u00``, ``u01``…; returns name → folder."""
    rng = np.random.default_rng(seed)
    dirs = {s: Path(root) / s for s in SYSTEMS}
    for d in dirs.values():
        d.mkdir(parents=True)
    for u in range(utterances):
        speech = speech_like(rng, rng.uniform(0.5, 1.1))
        lead, tail = (int(rng.uniform(0.03, 0.12) * SR) for _ in range(2))
        natural = np.concatenate([np.zeros(lead), 0.4 * speech, np.zeros(tail)])
        natural += rng.normal(0, 10 ** (-60 / 20), natural.size)
        voc150 = np.concatenate([np.zeros(int(0.15 * SR)), 0.7 * speech + rng.normal(0, 1e-4, speech.size),
                                 np.zeros(int(0.04 * SR))])
        frame = 320
        vocframe = np.concatenate([0.25 * speech, np.zeros(-speech.size % frame + frame)])
        for name, wave in (("natural", natural), ("voc150", voc150), ("vocframe", vocframe)):
            sf.write(dirs[name] / f"u{u:02d}.wav", wave.astype(np.float32), SR, subtype="PCM_16")
    return {k: str(v) for k, v in dirs.items()}
