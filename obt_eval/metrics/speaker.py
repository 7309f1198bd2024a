"""Speaker invariance of units: the across-minus-within ABX gap and a speaker-ID probe on unit histograms.

Lower is more speaker-invariant for both (reference/metrics-and-data.md §2.3). The probe is a
logistic regression on L1-normalised unit histograms per utterance, cross-validated with folds
stratified by speaker, reported next to chance (the majority-speaker share).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from obt_eval.errors import BadInputError


def abx_gap(within_error: float, across_error: float) -> float:
    """Across-speaker minus within-speaker ABX error (same context mode); smaller = more invariant."""
    return float(across_error - within_error)


def unit_histograms(units: Mapping[str, np.ndarray], k: int, ids: list[str]) -> np.ndarray:
    """(utterances, k) unit frequencies, each row summing to 1 (utterance length does not leak)."""
    hist = np.zeros((len(ids), k))
    for i, uid in enumerate(ids):
        seq = np.asarray(units[uid])
        if seq.size:
            hist[i] = np.bincount(seq, minlength=k)[:k] / seq.size
    return hist


def speaker_probe(
    units: Mapping[str, np.ndarray],
    speakers: Mapping[str, str],
    k: int,
    *,
    folds: int = 5,
    seed: int = 0,
) -> dict:
    """Cross-validated speaker-ID accuracy from unit histograms.

    Speakers with fewer than two utterances cannot be both trained and tested on, so they are left
    out and counted; folds shrink to the smallest speaker's utterance count.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ids = [u for u in units if u in speakers and np.asarray(units[u]).size]
    spk = pd.Series([speakers[u] for u in ids], index=ids)
    counts = spk.value_counts()
    keep_spk = counts[counts >= 2].index
    dropped = int((counts < 2).sum())
    ids = [u for u in ids if spk[u] in keep_spk]
    if len(keep_spk) < 2:
        raise BadInputError(
            f"the speaker probe needs at least two speakers with two utterances each (found {len(keep_spk)})",
            "run it on a corpus with several speakers",
        )
    y = spk[ids].to_numpy()
    x = unit_histograms(units, k, ids)
    n_folds = int(min(folds, counts[keep_spk].min()))
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(model, x, y, cv=cv)
    chance = float(pd.Series(y).value_counts(normalize=True).max())
    return {
        "speaker_probe_accuracy": float(scores.mean()),
        "speaker_probe_std": float(scores.std()),
        "chance": chance,
        "folds": n_folds,
        "speakers": int(len(keep_spk)),
        "utterances": len(ids),
        "speakers_dropped": dropped,
    }
