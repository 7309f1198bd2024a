"""Audio I/O: read any file soundfile can decode, downmix to mono, resample to 16 kHz with soxr.

All downstream steps read the canonical 16 kHz mono audio that ingest records, so decoding there
is a plain read with no resampling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from obt_eval.atomic import atomic_path
from obt_eval.errors import BadInputError
from obt_eval.frames import SAMPLE_RATE

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".oga", ".opus")


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average channels; soundfile returns (frames, channels) when always_2d=True."""
    return data if data.ndim == 1 else data.mean(axis=1)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave.astype(np.float32, copy=False), orig_sr, target_sr, quality="HQ").astype(np.float32)


def load_audio(path: str | os.PathLike, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file as mono float32 at `target_sr`. Raises BadInputError with the reason if unreadable."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError…
        raise BadInputError(f"cannot read audio {path}: {exc}", "check that the file is a valid audio file") from exc
    return resample(to_mono(data), sr, target_sr)


def load_16k(path: str | os.PathLike | BinaryIO) -> np.ndarray:
    """Read canonical 16 kHz mono audio as written by ingest (no resampling, checks the rate).

    `path` may be an open binary file (the corpus decodes bytes it has just verified).
    """
    data, sr = sf.read(path if hasattr(path, "read") else str(path), dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE:
        return resample(to_mono(np.atleast_1d(data)), sr)
    return to_mono(data)


def write_wav(
    path: str | os.PathLike, wave: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16"
) -> None:
    """Write a WAV atomically (temp name, then rename)."""
    path = Path(path)
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), np.asarray(wave, dtype=np.float32), sample_rate, subtype=subtype, format="WAV")
