"""Shared pieces of the MMS and quality-judge tests: real recorded speech from a wheel, degradations,
small ingested corpora with transcripts, and system folders made from the corpus audio."""

from __future__ import annotations

import csv
import importlib.resources
import json

import numpy as np
import soundfile as sf

SR = 16_000


def real_speech() -> np.ndarray:
    """0.89 s of recorded speech (16 kHz) that ships in the amfm_decompy wheel (MIT), peak 0.5."""
    path = importlib.resources.files("amfm_decompy") / "sample.wav"
    wave, rate = sf.read(str(path), dtype="float32")
    assert rate == SR
    return (wave / np.abs(wave).max() * 0.5).astype(np.float32)


def add_noise(wave: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(wave.size).astype(np.float32)
    noise *= np.sqrt(np.mean(wave**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    out = wave + noise
    return (out / max(1.0, float(np.abs(out).max()) / 0.99)).astype(np.float32)


def hard_clip(wave: np.ndarray, gain: float = 8.0, ceiling: float = 0.3) -> np.ndarray:
    return np.clip(wave * gain, -ceiling, ceiling).astype(np.float32)


def tone(seconds: float, f0: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(0.2 / h * np.sin(2 * np.pi * f0 * h * t) for h in range(1, 5)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_corpus(root, workspace, name: str, items: dict[str, tuple[np.ndarray, str, str]]):
    """Ingest `items` (id → (wave, language, transcript)) as corpus `name`; returns the Corpus."""
    from obt_eval.corpus import Corpus
    from obt_eval.corpus.ingest import ingest

    folder = root / f"{name}-wavs"
    folder.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "speaker", "language", "split", "transcript"])
        for uid, (wave, language, text) in items.items():
            sf.write(folder / f"{uid}.wav", wave, SR, subtype="PCM_16")
            writer.writerow([uid, f"spk-{language or 'x'}", language, "test", text])
    ingest(folder, name, workspace, metadata=root / f"{name}.csv", progress=False)
    return Corpus.open(name, workspace)


def system_folder(out, corpus, ids, transform=None, name: str | None = None):
    """A folder of `<id>.wav` made from the corpus audio (optionally transformed), naming its corpus."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for uid in ids:
        if transform is None:  # the same bytes: a PCM-16 float round trip is not exact in libsndfile
            shutil.copyfile(corpus.audio_path(uid), out / f"{uid}.wav")
        else:
            sf.write(out / f"{uid}.wav", transform(corpus.wave(uid)), SR, subtype="PCM_16")
    (out / "stimuli.json").write_text(json.dumps({"system": name or out.name, "corpus": corpus.name,
                                                  "corpus_path": str(corpus.root)}))
    return out
