"""Render a study's audio: loudness-normalised copies under opaque ids, plus anchors and repeat copies.

Nothing written here names a system: files are ``audio/<random hex>.wav`` with no metadata chunk.
The key → id map (``plan.json``) is server-side only and makes a killed run resume with the same ids.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from obt_eval.atomic import read_json, write_json
from obt_eval.audio import load_audio, write_wav
from obt_eval.study.anchors import degrade, dithered_copy
from obt_eval.study.config import AnchorConfig, LoudnessConfig
from obt_eval.study.design import ANCHOR_SYSTEM, StimulusKey
from obt_eval.study.loudness import apply_gain, common_target, integrated_loudness, peak_dbfs
from obt_eval.study.sources import SystemSource


@dataclass
class RenderedStimulus:
    key: StimulusKey
    opaque_id: str
    path: Path
    sample_rate: int
    num_samples: int
    duration: float
    loudness_lufs: float
    source_loudness_lufs: float
    gain_db: float
    source_path: Path
    limited: bool


def _key_str(key: StimulusKey) -> str:
    return f"{key.system}\x1f{key.utterance}\x1f{key.variant}"


def _base(key: StimulusKey) -> StimulusKey:
    """The sound a stimulus is made from: repeat copies share their original's, anchors are their own."""
    return StimulusKey(key.system, key.utterance, key.variant if key.variant == ANCHOR_SYSTEM else "")


def _seed_for(key: StimulusKey, seed: int) -> int:
    # Anchors and dithers depend only on (key, study seed): a resumed run writes the same audio.
    return int.from_bytes(hashlib.sha256(f"{seed}|{_key_str(key)}".encode()).digest()[:8], "little")


def _source_wave(key: StimulusKey, sources: dict[str, SystemSource], sample_rate: int, anchor: AnchorConfig,
                 seed: int) -> np.ndarray:
    wave = load_audio(sources[key.system].files[key.utterance], target_sr=sample_rate)
    if key.variant == ANCHOR_SYSTEM:
        wave = degrade(wave, sample_rate, anchor, np.random.default_rng(_seed_for(key, seed)))
    return wave


def render_stimuli(keys: list[StimulusKey], sources: dict[str, SystemSource], out_dir: Path, seed: int,
                   loudness: LoudnessConfig = LoudnessConfig(), anchor: AnchorConfig = AnchorConfig(),
                   progress: bool = True) -> tuple[list[RenderedStimulus], list[str]]:
    """Write every stimulus once, loudness-normalised to one common target; returns records and notes."""
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    plan_path = out_dir / "plan.json"
    plan: dict[str, str] = read_json(plan_path) if plan_path.exists() else {}
    for key in keys:
        plan.setdefault(_key_str(key), secrets.token_hex(12))
    write_json(plan_path, plan)
    sample_rate = next(iter(next(iter(sources.values())).sample_rates.values()))
    # Pass 1: loudness and peak of each distinct sound (repeat copies share their original's).
    base_keys = sorted({_base(k) for k in keys})
    measured: dict[StimulusKey, tuple[float, float]] = {}
    for key in tqdm(base_keys, desc="loudness", disable=not progress):
        wave = _source_wave(key, sources, sample_rate, anchor, seed)
        measured[key] = (integrated_loudness(wave, sample_rate), peak_dbfs(wave))
    target, notes = common_target([m[0] for m in measured.values()], [m[1] for m in measured.values()], loudness)
    # Pass 2: write each stimulus (skipping files a killed run already finished — writes are atomic).
    records = []
    for key in tqdm(keys, desc="stimuli", disable=not progress):
        base = _base(key)
        src_lufs, _ = measured[base]
        gain = target - src_lufs
        path = audio_dir / f"{plan[_key_str(key)]}.wav"
        limited = False
        if not path.exists():
            wave, limited = apply_gain(_source_wave(base, sources, sample_rate, anchor, seed), gain,
                                       loudness.max_peak_dbfs)
            if key.variant.startswith("repeat"):
                wave = dithered_copy(wave, np.random.default_rng(_seed_for(key, seed)))
            write_wav(path, wave, sample_rate)
            if limited:
                notes.append(f"{key.system}/{key.utterance}: peaks limited at {loudness.max_peak_dbfs} dBFS")
        info = sf.info(str(path))
        records.append(RenderedStimulus(
            key=key, opaque_id=path.stem, path=path, sample_rate=int(info.samplerate), num_samples=int(info.frames),
            duration=float(info.duration), loudness_lufs=float(target), source_loudness_lufs=src_lufs,
            gain_db=float(gain), source_path=sources[key.system].files[key.utterance], limited=limited,
        ))
    return records, notes
