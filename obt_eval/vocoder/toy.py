"""A toy corpus of tone "phones" with matching units, for vocoder tests, benchmarks and smoke runs.

Each unit id is a harmonic tone of its own pitch (unit 0 is near-silence), each speaker shifts all
pitches, and units come in runs of 2-6 frames like deduplicatable SSL units. The audio is exactly as
long as the wav2vec2 frame grid needs for the unit count, so it exercises the real alignment rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.audio import write_wav
from obt_eval.corpus.files import write_info, write_manifest
from obt_eval.corpus.manifest import MANIFEST_COLUMNS, Corpus
from obt_eval.frames import HOP, SAMPLE_RATE, WINDOW
from obt_eval.units.store import UnitsStore


def toy_units(rng: np.random.Generator, num_frames: int, k: int) -> np.ndarray:
    out: list[int] = [0] * 3  # leading silence, as in real recordings
    while len(out) < num_frames - 3:
        out += [int(rng.integers(1, k))] * int(rng.integers(2, 7))
    out = out[: num_frames - 3] + [0] * 3
    return np.asarray(out, dtype=np.int64)


def toy_wave(units: np.ndarray, pitch_scale: float, rng: np.random.Generator) -> np.ndarray:
    samples = (len(units) - 1) * HOP + WINDOW
    frame = np.minimum(np.arange(samples) // HOP, len(units) - 1)
    u = units[frame]
    f0 = np.where(u > 0, 110.0 * pitch_scale * (1.0 + 0.12 * u), 0.0)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE  # continuous phase: no clicks between units
    wave = sum(np.sin(h * phase) / h for h in (1, 2, 3))
    wave = np.where(u > 0, 0.3 * wave, 0.0) + 0.003 * rng.standard_normal(samples)
    return wave.astype(np.float32)


def make_toy_corpus(
    root: str | Path,
    num_utterances: int = 6,
    k: int = 8,
    seconds: float = 1.0,
    speakers: tuple[str, ...] = ("spk1", "spk2"),
    name: str = "toy",
    seed: int = 0,
) -> tuple[UnitsStore, Corpus]:
    """Write a corpus folder `root/corpora/<name>` and its units `root/units/<name>-k<k>`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    corpus_dir = root / "corpora" / name
    rows, sequences = [], {}
    for i in range(num_utterances):
        uid = f"utt{i:03d}"
        spk = speakers[i % len(speakers)]
        n = max(8, int(seconds * 50 * rng.uniform(0.8, 1.2)))
        units = toy_units(rng, n, k)
        wave = toy_wave(units, 1.0 + 0.3 * speakers.index(spk), rng)
        path = corpus_dir / "audio" / f"{uid}.wav"
        write_wav(path, wave)
        sequences[uid] = units
        rows.append({"id": uid, "audio_path": str(path), "source_path": str(path), "num_samples": len(wave),
                     "duration": len(wave) / SAMPLE_RATE, "num_frames": len(units), "orig_sample_rate": SAMPLE_RATE,
                     "orig_channels": 1, "speaker": spk, "language": "toy", "split": "", "transcript": ""})
    write_info(corpus_dir, {"name": name})
    write_manifest(corpus_dir, pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    codebook = np.random.default_rng(seed + 1).standard_normal((k, 4)).astype(np.float32)
    units = UnitsStore.write(root / "units" / f"{name}-k{k}", sequences, codebook,
                             {"corpus": name, "corpus_path": str(corpus_dir), "encoder": "toy", "layer": None,
                              "features": ""})
    return units, Corpus.open(corpus_dir)
