"""What a rater downloads: a study clip whose samples differ on every serve, inaudibly, in a bare 16-bit WAV.

Served as stored, a clip is sample-identical for every rater and every session: its hash names it, so a
hidden repeat or the one clip never heard in a regular trial (the degraded anchor) can be picked out
by comparing downloads; even a fixed silence or noise before the sound would name it. Each serve
therefore moves the sound to a fresh offset in the clip's padding, drawn from one distribution for
every clip (the length stays), lays a freshly drawn noise floor (-66 dBFS) under the whole clip, so
nothing served is digital silence, changes the gain by up to ±0.1 dB (below the ~0.5 dB level
difference anyone hears) and quantises to 16 bits with dither (the noise floor, about 16 LSB RMS, is itself
a sufficient dither; without it, triangular dither at the LSB). A seed makes a serve reproducible, so the
bytes of one token agree across HTTP range requests. Every serve is rendered afresh (no bytes are kept per
link), so it is done in float32 with as few passes as possible: a fetch is one of the app's commonest requests.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from obt_eval.study.config import PaddingConfig
from obt_eval.study.framing import draw_lead, noise_floor, stored_lead

MAX_GAIN_DB = 0.1
_FULL_SCALE = 32768.0


@dataclass(frozen=True)
class Variation:
    """What one serve changed: the sound moved `shift` samples later (earlier if negative), `gain_db` louder."""

    shift: int
    gain_db: float


def serve_rng(seed: int | bytes | str) -> np.random.Generator:
    """A generator from any seed (a token's nonce, an int); the same seed gives the same serve."""
    raw = seed if isinstance(seed, bytes) else str(seed).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(raw).digest()[:16], "little"))


def _silent_ends(x: np.ndarray) -> tuple[int, int]:
    """Samples of digital silence (below half an LSB) at the start and at the end: a stored clip's padding."""
    sound = np.flatnonzero(np.abs(x) >= 0.5)
    if not sound.size:
        return int(x.size), int(x.size)
    return int(sound[0]), int(x.size - 1 - sound[-1])


def vary(samples: np.ndarray, sample_rate: int, rng: np.random.Generator,
         padding: PaddingConfig = PaddingConfig(), floor: bool = True) -> tuple[np.ndarray, Variation]:
    """One serve of `samples` (float, in 16-bit LSB units): sound re-placed, noise floor laid under it,
    re-gained, dithered, as int16. (`floor=False` leaves the floor out, to measure the rest.)

    A stored clip is silence, its trimmed and faded sound from `stored_lead`, silence
    (obt_eval.study.framing): the sound is moved from there to a lead drawn from the padding range, the
    same for every clip whatever its sound begins with. Only digital silence is ever dropped (the shift
    is bounded by the silent runs at both ends), so a clip without silent ends (a study rendered before
    framing existed) is never cut, only floored, re-gained and dithered.
    """
    stored = np.asarray(samples, dtype=np.float32)
    lead, tail = _silent_ends(stored)
    want = draw_lead(rng, sample_rate, padding)
    shift = 0 if lead == stored.size else int(np.clip(want - stored_lead(sample_rate, padding), -lead, tail))
    gain_db = float(rng.uniform(-MAX_GAIN_DB, MAX_GAIN_DB))
    # the sound moved by `shift` (only digital silence leaves or enters at the ends), re-gained, in one buffer
    x = np.zeros(stored.size, dtype=np.float32)
    if shift >= 0:
        np.multiply(stored[:stored.size - shift], 10 ** (gain_db / 20), out=x[shift:])
    else:
        np.multiply(stored[-shift:], 10 ** (gain_db / 20), out=x[:shift])
    if floor:
        x += noise_floor(x.size, rng, padding)  # fresh white noise, ~16 LSB RMS: also the quantisation's dither
    else:
        x += rng.random(x.size, dtype=np.float32)  # TPDF dither, ±1 LSB
        x -= rng.random(x.size, dtype=np.float32)
    np.rint(x, out=x)
    np.clip(x, -_FULL_SCALE, _FULL_SCALE - 1, out=x)
    return x.astype(np.int16), Variation(shift, gain_db)


def wav_container(pcm: np.ndarray, sample_rate: int) -> bytes:
    """The smallest RIFF/WAVE: a fmt and a data chunk, 16-bit mono PCM — no name, no metadata, no padding chunk."""
    data = np.asarray(pcm, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def read_clip(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A stored clip as mono float samples in 16-bit LSB units, and its sample rate."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    return mono * np.float32(_FULL_SCALE), int(rate)


def served_wav_bytes(path: str | os.PathLike | Path, seed: int | bytes | str) -> bytes:
    """The bytes of one serve of the clip at `path`: varied per `seed`, same length as stored, bare WAV."""
    samples, rate = read_clip(path)
    pcm, _ = vary(samples, rate, serve_rng(seed))
    return wav_container(pcm, rate)
