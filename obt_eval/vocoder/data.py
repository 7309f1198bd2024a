"""Training data: corpus audio aligned to units, and random fixed-size segments of it.

Unit i covers samples ``[320 i, 320 i + 320)``. The wav2vec2 frame grid uses a 400-sample window,
so an utterance has slightly more audio than ``units x 320``; both are cropped to
``min(len(units), samples // 320)`` units. Frame i of the encoder is centred 40 samples (2.5 ms) after
that block's centre on the wav2vec2 grid and 120 samples (7.5 ms) after it for w2v-BERT 2.0 (560-sample
window, ``frame_offset`` 0.0175 s). The blocks are deliberately not shifted by the store's offset: the
offset is constant, far inside the generator's receptive field (its first convolution alone sees ±3
units), and the same in training and synthesis, so the generator learns it and its output stays
sample-aligned with the source audio (speech-resynthesis does the same for HuBERT's grid). w2v-BERT's
wider window only means fewer frames, ``(samples - 560) // 320 + 1``, which the crop already handles.

Segments are drawn from a generator seeded with ``(seed, step, rank)``, so the batch at a given step
does not depend on what ran before: a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.frames import HOP
from obt_eval.units.store import UnitsStore, run_length
from obt_eval.workspace import Workspace

HELD_OUT_SPLITS = ("dev", "valid", "validation", "val", "test", "eval")


@dataclass
class Utterance:
    uid: str
    units: np.ndarray  # int64 (n,)
    audio: np.ndarray  # float32 (n * 320,), peak-normalised
    speaker: int = 0
    f0: np.ndarray | None = None  # int64 (n,) quantised F0 levels


def peak_normalise(wave: np.ndarray, peak: float) -> np.ndarray:
    """librosa.util.normalize(x) * peak, as speech-resynthesis' dataset does; silence stays silence."""
    top = float(np.max(np.abs(wave))) if wave.size else 0.0
    return (wave * (peak / top)).astype(np.float32) if top > 0 else wave.astype(np.float32)


def aligned(units: np.ndarray, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop units and audio to the same number of whole 320-sample units."""
    n = min(len(units), len(wave) // HOP)
    return np.array(units[:n], dtype=np.int64), wave[: n * HOP]


def split_ids(corpus: Corpus, ids: Iterable[str], num_validation: int, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, validation ids). A manifest split named dev/valid/test is held out; otherwise a
    seeded draw of a few utterances. Every encoder of an A/B comparison therefore validates on the
    same utterances, because the draw depends on the corpus ids and the seed only."""
    ids = sorted(ids)
    if not ids:
        raise BadInputError("no utterances to train on", "check that the units folder and the corpus share ids")
    split = dict(zip(corpus.manifest["id"], corpus.manifest["split"].fillna("").astype(str), strict=True)) \
        if "split" in corpus.manifest else {}
    held = [u for u in ids if split.get(u, "").lower() in HELD_OUT_SPLITS]
    if held and len(held) < len(ids):
        train = [u for u in ids if u not in set(held)]
        return train, held[:num_validation] if num_validation else held
    if len(ids) == 1:
        return ids, ids  # a one-utterance corpus can only overfit; validate on what it trains on
    n_val = max(1, min(num_validation, len(ids) // 10))
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [u for u in ids if u not in set(val)], val


def load_utterances(
    units: UnitsStore,
    corpus: Corpus,
    ids: list[str],
    peak: float,
    speaker_index: dict[str, int] | None = None,
    progress: bool = True,
) -> tuple[list[Utterance], list[dict]]:
    """Audio + units of `ids`; problems (missing audio, units longer than the audio) are collected."""
    speakers = corpus.speakers()
    out, problems = [], []
    for uid in tqdm(ids, desc="loading audio", unit="utt", disable=not progress, leave=False):
        try:
            wave = corpus.wave(uid)
            seq = units.get(uid)
        except Exception as exc:  # one unreadable file must not stop a training run
            problems.append({"id": uid, "problem": str(exc).splitlines()[0]})
            continue
        if len(seq) == 0 or len(wave) < HOP:
            problems.append({"id": uid, "problem": "empty units or audio shorter than one unit"})
            continue
        if len(seq) > len(wave) // HOP + 1:
            problems.append({"id": uid, "problem": f"{len(seq)} units but only {len(wave)} samples of audio "
                                                   "(units from another corpus?)"})
            continue
        seq, wave = aligned(seq, wave)
        spk = speaker_index.get(speakers.get(uid, "unknown"), 0) if speaker_index else 0
        out.append(Utterance(uid, seq, peak_normalise(wave, peak), spk))
    return out, problems


def resolve_units(units: UnitsStore | str | os.PathLike) -> UnitsStore:
    return units if isinstance(units, UnitsStore) else UnitsStore.open(units)


def resolve_corpus(units: UnitsStore, corpus: Corpus | str | None, workspace: Workspace | None) -> Corpus:
    if isinstance(corpus, Corpus):
        return corpus
    name = corpus or units.meta.get("corpus_path") or units.meta.get("corpus")
    if not name:
        raise NotFoundError(f"units at {units.path} do not say which corpus they came from",
                            "pass --corpus NAME (the corpus whose audio the units were extracted from)")
    try:
        return Corpus.open(name, workspace)
    except NotFoundError:
        if units.meta.get("corpus") and name != units.meta["corpus"]:
            return Corpus.open(units.meta["corpus"], workspace)
        raise


class SegmentSampler:
    """Random `segment_units`-long crops; short utterances are tiled up to the segment, as published."""

    def __init__(self, utterances: list[Utterance], segment_units: int, seed: int):
        if not utterances:
            raise BadInputError("no usable utterances to train on", "see the problems listed above")
        self.utterances = utterances
        self.segment_units = segment_units
        self.seed = seed

    def batch(self, step: int, batch_size: int, rank: int = 0) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step, rank])
        seg = self.segment_units
        units, audio, speaker, f0 = [], [], [], []
        for idx in rng.integers(0, len(self.utterances), size=batch_size):
            utt = self.utterances[idx]
            u, a, f = utt.units, utt.audio, utt.f0
            reps = -(-seg // len(u))
            if reps > 1:
                u, a = np.tile(u, reps), np.tile(a, reps)
                f = np.tile(f, reps) if f is not None else None
            start = int(rng.integers(0, len(u) - seg + 1))
            units.append(u[start:start + seg])
            audio.append(a[start * HOP:(start + seg) * HOP])
            speaker.append(utt.speaker)
            if f is not None:
                f0.append(f[start:start + seg])
        out = {
            "units": torch.from_numpy(np.stack(units)),
            "audio": torch.from_numpy(np.stack(audio)).unsqueeze(1),
            "speaker": torch.tensor(speaker, dtype=torch.long),
        }
        if f0:
            out["f0"] = torch.from_numpy(np.stack(f0))
        return out


def dedup_batch(units: torch.Tensor, trim_edges: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run-length view of a batch of segments for the duration loss: (units, durations, mask), padded.

    The first and last run of a random crop are cut by the crop, so they are masked out of the loss.
    """
    seqs, durs = [], []
    for row in units.cpu().numpy():
        u, d = run_length(row)
        seqs.append(u)
        durs.append(d)
    n = max(len(s) for s in seqs)
    out_u = torch.zeros(len(seqs), n, dtype=torch.long)
    out_d = torch.ones(len(seqs), n, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, (s, d) in enumerate(zip(seqs, durs, strict=True)):
        out_u[i, : len(s)] = torch.from_numpy(s)
        out_d[i, : len(d)] = torch.from_numpy(d)
        mask[i, : len(s)] = True
        if trim_edges and len(s) > 2:
            mask[i, 0] = mask[i, len(s) - 1] = False
    return out_u.to(units.device), out_d.to(units.device), mask.to(units.device)
