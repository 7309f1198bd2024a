"""Frame-level unit quality: phone/cluster purity and PNMI (with shuffled baselines), silhouette, bitrate.

Definitions (reference/metrics-and-data.md §2): purity and PNMI follow HuBERT (arXiv:2106.07447) as
fairseq ``examples/hubert/measure_teacher_quality.py`` computes them; bitrate follows ZeroSpeech
2019/2020 (``zerospeech2020/evaluation/bitrate.py``): (symbols / seconds) x entropy of the symbol
distribution. PNMI has a plug-in bias of about (|Y|-1)(|Z|-1)/(2N) nats, large for big k and small
sets, so every purity/PNMI comes with the same number on shuffled units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from obt_eval.errors import BadInputError
from obt_eval.frames import FRAME_OFFSET, FRAME_RATE, frame_centres
from obt_eval.units.store import run_length


@dataclass
class PurityScores:
    phone_purity: float
    cluster_purity: float
    pnmi: float
    mutual_info: float  # nats
    phone_entropy: float  # nats
    unit_entropy: float  # nats
    num_frames: int
    num_phones: int
    num_units_used: int

    def as_dict(self) -> dict:
        return asdict(self)


def purity_pnmi(phones: Sequence | np.ndarray, units: Sequence | np.ndarray) -> PurityScores:
    """Phone purity, cluster purity and PNMI of frame-level (phone, unit) pairs.

    phone purity = sum_z max_y p(y, z); cluster purity = sum_y max_z p(y, z); PNMI = I(y; z) / H(y).
    """
    y = np.asarray(phones)
    z = np.asarray(units)
    if y.shape != z.shape or y.ndim != 1:
        raise BadInputError(f"need one phone per unit frame, got {y.shape} phones and {z.shape} units")
    if y.size == 0:
        raise BadInputError("no labelled frames to score", "check that alignments cover the utterances")
    yi = pd.factorize(y)[0]
    zi = pd.factorize(z)[0]
    joint = np.zeros((yi.max() + 1, zi.max() + 1))
    np.add.at(joint, (yi, zi), 1)
    p = joint / joint.sum()
    py, pz = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(py, pz)[nz])).sum())
    hy = float(-(py * np.log(py)).sum())
    hz = float(-(pz * np.log(pz)).sum())
    return PurityScores(
        phone_purity=float(p.max(0).sum()),
        cluster_purity=float(p.max(1).sum()),
        pnmi=mi / hy if hy > 0 else float("nan"),
        mutual_info=mi,
        phone_entropy=hy,
        unit_entropy=hz,
        num_frames=int(y.size),
        num_phones=int(joint.shape[0]),
        num_units_used=int(joint.shape[1]),
    )


def purity_with_baseline(phones, units, *, seed: int = 0) -> dict:
    """`purity_pnmi` plus the same scores on a seeded permutation of the units (the chance level)."""
    scores = purity_pnmi(phones, units).as_dict()
    shuffled = np.random.default_rng(seed).permutation(np.asarray(units))
    base = purity_pnmi(phones, shuffled)
    scores.update({f"shuffled_{k}": getattr(base, k) for k in ("phone_purity", "cluster_purity", "pnmi")})
    return scores


def frame_phone_table(
    alignments: pd.DataFrame,
    units: Mapping[str, np.ndarray],
    *,
    frame_rate: float = FRAME_RATE,
    frame_offset: float = FRAME_OFFSET,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Pair each unit frame with the phone under its centre; frames without a phone are left out.

    Frame i is centred at ``frame_offset + i / frame_rate`` s: pass the units' own timing
    (`obt_eval.frames.store_frame_timing(units)`; the default is the wav2vec2 grid).
    Returns (phones, units, problems) where problems counts utterances with no units and phone
    intervals that fall beyond the utterance's last frame (they cannot be scored and are skipped).
    """
    from obt_eval.alignments import frame_labels

    need = {"id", "onset", "offset", "phone"}
    if not need <= set(alignments.columns):
        raise BadInputError(f"alignment table lacks {sorted(need - set(alignments.columns))}")
    problems = {"utterances_without_units": 0, "phones_outside_frames": 0}
    ys, zs = [], []
    for uid, group in alignments.groupby("id", sort=True):
        seq = units.get(uid)
        if seq is None:
            problems["utterances_without_units"] += 1
            continue
        seq = np.asarray(seq)
        last_centre = frame_centres(len(seq), frame_rate, frame_offset)[-1] if len(seq) else -np.inf
        problems["phones_outside_frames"] += int((group["onset"] > last_centre).sum())
        ivs = list(zip(group["onset"], group["offset"], group["phone"].astype(str), strict=True))
        labels = frame_labels(ivs, len(seq), frame_rate, frame_offset)
        mask = labels != ""
        ys.append(labels[mask])
        zs.append(seq[mask])
    if not ys:
        raise BadInputError("no aligned utterance has units", "units and alignments must share utterance ids")
    return np.concatenate(ys).astype(str), np.concatenate(zs), problems


def silhouette(
    features: np.ndarray, labels: np.ndarray, *, sample_size: int = 5000, seed: int = 0, metric: str = "euclidean"
) -> dict:
    """Silhouette score on a seeded frame sample (exact silhouette is O(n^2); 1 h of audio is 180k frames)."""
    from sklearn.metrics import silhouette_score

    x = np.asarray(features, dtype=np.float32)
    lab = np.asarray(labels)
    if len(x) != len(lab):
        raise BadInputError(f"{len(x)} frames but {len(lab)} labels")
    rng = np.random.default_rng(seed)
    n = min(sample_size, len(x))
    idx = rng.choice(len(x), size=n, replace=False) if n < len(x) else np.arange(len(x))
    xs, ls = x[idx], lab[idx]
    n_labels = len(np.unique(ls))
    if n_labels < 2 or n_labels >= len(xs):
        return {"silhouette": float("nan"), "sample_size": int(n), "labels_in_sample": int(n_labels)}
    return {
        "silhouette": float(silhouette_score(xs, ls, metric=metric)),
        "sample_size": int(n),
        "labels_in_sample": int(n_labels),
        "metric": metric,
    }


def _entropy_bits(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def bitrate(sequences: Mapping[str, np.ndarray], durations: Mapping[str, float]) -> dict:
    """ZeroSpeech bitrate (bits/s) of unit sequences, raw (every frame) and deduplicated (runs).

    The one definition every report uses (reference/metrics-and-data.md §2.2): B = (N / D) x H, with N
    the number of symbols, H the entropy of their distribution and D the total AUDIO duration of the
    utterances, in seconds (`durations`: utterance id -> seconds, the corpus manifest's ``duration``).
    D is not frames / 50: n frames cover (n - 1) x 20 ms + 25 ms of audio plus up to 20 ms of tail, so
    frames / 50 understates D by 5-25 ms per utterance and inflates the bitrate (317.5 vs 315.2 bit/s).
    """
    missing = [uid for uid in sequences if uid not in durations]
    if missing:
        raise BadInputError(f"no audio duration for {len(missing)} utterance(s) ({', '.join(map(str, missing[:5]))})",
                            "measure bitrate against the corpus the units were made from")
    seqs = [np.asarray(s) for s in sequences.values()]
    seqs = [s for s in seqs if s.size]
    if not seqs:
        raise BadInputError("no unit sequences to measure")
    raw = np.concatenate(seqs)
    dedup = np.concatenate([run_length(s)[0] for s in seqs])
    seconds = float(sum(float(durations[uid]) for uid in sequences))
    if seconds <= 0:
        raise BadInputError("total duration must be positive to compute a bitrate")
    return {
        "bitrate": raw.size / seconds * _entropy_bits(raw),
        "bitrate_dedup": dedup.size / seconds * _entropy_bits(dedup),
        "symbols": int(raw.size),
        "symbols_dedup": int(dedup.size),
        "seconds": seconds,
        "mean_run_frames": float(raw.size / dedup.size),
    }


def corpus_durations(corpus) -> dict[str, float]:
    """Utterance id -> audio duration in seconds, from a corpus manifest (what `bitrate` divides by)."""
    return dict(zip(corpus.manifest["id"], corpus.manifest["duration"].astype(float), strict=True))
