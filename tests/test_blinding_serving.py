"""Per-serve variation (obt_eval.study.serving): every download differs, none sounds different, none is cut."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from obt_eval.study.config import PaddingConfig
from obt_eval.study.serving import MAX_GAIN_DB, read_clip, serve_rng, served_wav_bytes, vary
from webapp.audio import wav_bytes

SR = 16000
PAD = PaddingConfig()


def _stored_clip(tmp_path, lead: float = 0.16, tail: float = 0.1, name: str = "clip.wav", room: float = 0.0):
    """A clip as the renderer stores it: silence, a faded harmonic sound at about -23 LUFS, silence
    (`room`: noise of a recording, from the first sample to the last)."""
    t = np.arange(int(0.7 * SR)) / SR
    sound = 0.2 * sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 6)) * np.hanning(t.size) ** 0.3
    sound = sound + np.random.default_rng(0).normal(0, room, sound.size)
    wave = np.concatenate([np.zeros(int(lead * SR)), sound, np.zeros(int(tail * SR))])
    path = tmp_path / name
    sf.write(path, wave.astype(np.float32), SR, subtype="PCM_16")
    return path, int(lead * SR), sound.size


def _pcm(data: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(data), dtype="int16")[0].astype(np.float64)


def _undo(served: np.ndarray, shift: int, gain_db: float) -> np.ndarray:
    """Move the served samples back by `shift` and take the gain out: what is left should be the stored clip."""
    return np.roll(served, -shift) / 10 ** (gain_db / 20)


def test_a_seed_gives_one_serve_and_every_seed_another(tmp_path):
    path, _, _ = _stored_clip(tmp_path)
    assert served_wav_bytes(path, b"nonce-1") == served_wav_bytes(path, b"nonce-1")  # range requests agree
    serves = [served_wav_bytes(path, seed) for seed in range(20)]
    assert len(set(serves)) == 20
    assert wav_bytes(path, b"nonce-1") == served_wav_bytes(path, b"nonce-1")  # the app serves through it
    assert wav_bytes(path) != wav_bytes(path)  # no nonce: a random one


def test_the_variation_is_inaudible(tmp_path):
    """Gain within ±0.1 dB, the sound only moved within its padding, and the rest is dither: at most 2 LSB
    after shift and gain are taken out, more than 60 dB below the clip."""
    path, lead, size = _stored_clip(tmp_path)
    stored, rate = read_clip(path)
    clip_rms = np.sqrt(np.mean(stored[lead:lead + size] ** 2))
    for seed in range(12):
        pcm, variation = vary(stored, rate, serve_rng(seed), floor=False)
        assert abs(variation.gain_db) <= MAX_GAIN_DB and pcm.size == stored.size
        start = lead + variation.shift  # where the sound starts in this serve (its first sample is 0)
        assert int(PAD.lead_min_seconds * SR) - 2 <= start <= int(PAD.lead_max_seconds * SR)
        # the shift measured from the samples, not taken on trust
        template = stored[lead - 1000:lead + size + 1000]
        lag = int(np.argmax(np.correlate(pcm.astype(float), template, "valid"))) - (lead - 1000)
        assert lag == variation.shift
        residual = _undo(pcm.astype(float), variation.shift, variation.gain_db) - stored
        inner = residual[SR // 100:-SR // 100]  # the wrapped ends of np.roll are silence anyway
        assert np.max(np.abs(inner)) <= 2.0
        assert 20 * np.log10(clip_rms / np.sqrt(np.mean(inner**2))) > 60


def test_the_noise_floor_is_fresh_and_at_its_level(tmp_path):
    """The floor under every serve: the configured -66 dBFS white noise, drawn anew, never digital silence."""
    path, lead, size = _stored_clip(tmp_path)
    stored, rate = read_clip(path)
    floors = []
    for seed in range(4):
        pcm, variation = vary(stored, rate, serve_rng(seed))
        floor = _undo(pcm.astype(float), variation.shift, variation.gain_db) - stored
        floors.append(floor[SR // 100:-SR // 100])
        level = 20 * np.log10(np.sqrt(np.mean(floors[-1] ** 2)) / 32768)
        assert abs(level - PAD.noise_floor_dbfs) < 0.5
        assert np.max(np.convolve(pcm == 0, np.ones(8), "valid")) < 8  # no 8 samples of digital silence
    assert abs(np.corrcoef(floors[0], floors[1])[0, 1]) < 0.05  # a new realisation each serve


def test_clips_without_silent_ends_are_never_cut(tmp_path):
    """A study rendered before framing existed: a recording's noise from the first sample on is not shifted."""
    path, _, _ = _stored_clip(tmp_path, lead=0.0, tail=0.0, room=1e-3)
    stored, rate = read_clip(path)
    for seed in range(6):
        pcm, variation = vary(stored, rate, serve_rng(seed), floor=False)
        assert variation.shift == 0
        assert np.max(np.abs(pcm / 10 ** (variation.gain_db / 20) - stored)) <= 2.0


def test_an_old_vocoder_silence_is_replaced_by_the_common_padding(tmp_path):
    """A legacy clip with 150 ms of digital silence: served with a drawn padding and a noise floor."""
    path, lead, _ = _stored_clip(tmp_path, lead=0.15, tail=0.04)
    stored, rate = read_clip(path)
    starts = set()
    for seed in range(20):
        pcm, variation = vary(stored, rate, serve_rng(seed))
        starts.add(lead + variation.shift)
        assert (pcm == 0).mean() < 0.05
    spread = int((PAD.lead_max_seconds - PAD.lead_min_seconds) * SR)
    assert len(starts) > 10 and lead - spread <= min(starts) and max(starts) <= lead


def test_the_wav_is_bare(tmp_path):
    path, _, _ = _stored_clip(tmp_path, name="xlsr53_utt001.wav")
    data = served_wav_bytes(path, 3)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    assert data[12:16] == b"fmt " and data[36:40] == b"data" and len(data) == 44 + 2 * info.frames
    assert b"LIST" not in data and b"JUNK" not in data and b"xlsr53" not in data
    assert _pcm(data).size == sf.info(str(path)).frames
