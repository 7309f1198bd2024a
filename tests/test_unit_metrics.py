"""Purity/PNMI, bitrate, silhouette, speaker probe and cross-lingual numbers against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from obt_eval.errors import BadInputError
from obt_eval.metrics.crosslingual import crosslingual_consistency, jensen_shannon, unit_usage_overlap
from obt_eval.metrics.speaker import abx_gap, speaker_probe
from obt_eval.metrics.unit_quality import (
    bitrate,
    frame_phone_table,
    purity_pnmi,
    purity_with_baseline,
    silhouette,
)


def test_purity_and_pnmi_equal_hand_computed_values():
    phones = ["a", "a", "a", "b", "b", "c"]
    units = [0, 0, 1, 1, 1, 2]
    s = purity_pnmi(phones, units)
    # joint counts: (a,0)=2 (a,1)=1 (b,1)=2 (c,2)=1 of 6
    assert s.phone_purity == pytest.approx((2 + 2 + 1) / 6)  # per unit: max over phones
    assert s.cluster_purity == pytest.approx((2 + 2 + 1) / 6)  # per phone: max over units
    mi = (2 / 6) * math.log((2 / 6) / (1 / 2 * 1 / 3)) + (1 / 6) * math.log((1 / 6) / (1 / 2 * 1 / 2)) \
        + (2 / 6) * math.log((2 / 6) / (1 / 3 * 1 / 2)) + (1 / 6) * math.log((1 / 6) / (1 / 6 * 1 / 6))
    h = -(1 / 2 * math.log(1 / 2) + 1 / 3 * math.log(1 / 3) + 1 / 6 * math.log(1 / 6))
    assert s.mutual_info == pytest.approx(mi)
    assert s.pnmi == pytest.approx(mi / h)
    # purities are not symmetric in general
    s2 = purity_pnmi(["a", "a", "b", "b"], [0, 1, 2, 2])  # 'a' split over two units
    assert s2.phone_purity == pytest.approx(1.0) and s2.cluster_purity == pytest.approx(3 / 4)


def test_pnmi_extremes_and_shuffled_baseline():
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 40, 20000)
    split = phones * 2 + rng.integers(0, 2, phones.size)  # every phone split into two units
    s = purity_pnmi(phones, split)
    assert s.phone_purity == pytest.approx(1.0) and s.pnmi == pytest.approx(1.0)
    assert 0.5 < s.cluster_purity < 0.55  # each phone: the larger of its two halves
    base = purity_with_baseline(phones, split)
    # chance level is the plug-in bias (|Y|-1)(|Z|-1)/(2N) nats, not zero: why the baseline is reported
    assert base["shuffled_pnmi"] * s.phone_entropy == pytest.approx(39 * 79 / (2 * 20000), abs=0.01)
    from sklearn.metrics import mutual_info_score

    assert s.mutual_info == pytest.approx(mutual_info_score(phones, split))
    with pytest.raises(BadInputError):
        purity_pnmi(["a"], [1, 2])


def test_bitrate_raw_and_deduplicated():
    # 6 symbols over 0.2 s of audio (not 6 frames / 50 = 0.12 s): three equiprobable symbols;
    # runs [0,1] and [2]: three symbols, still equiprobable
    out = bitrate({"a": np.array([0, 0, 1, 1]), "b": np.array([2, 2])}, {"a": 0.115, "b": 0.085})
    assert out["bitrate"] == pytest.approx(6 / 0.2 * math.log2(3))
    assert out["bitrate_dedup"] == pytest.approx(3 / 0.2 * math.log2(3))
    assert bitrate({"a": np.array([5, 5, 5])}, {"a": 1.0})["bitrate"] == 0.0
    with pytest.raises(BadInputError):
        bitrate({"a": np.array([], int)}, {"a": 1.0})
    with pytest.raises(BadInputError, match="no audio duration"):
        bitrate({"a": np.array([1, 2])}, {})


def test_silhouette_states_its_sample():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 0.1, (300, 4)), rng.normal(5, 0.1, (300, 4))]
    lab = np.r_[np.zeros(300), np.ones(300)]
    out = silhouette(x, lab, sample_size=200, seed=1)
    assert out["sample_size"] == 200 and out["silhouette"] > 0.9
    assert math.isnan(silhouette(x, np.zeros(600))["silhouette"])


def test_frame_phone_table_counts_what_it_cannot_score():
    align = pd.DataFrame({
        "id": ["u1", "u1", "u1", "u2"],
        "onset": [0.0, 0.05, 9.0, 0.0],
        "offset": [0.05, 0.1, 9.1, 0.1],
        "phone": ["a", "b", "c", "a"],
    })
    units = {"u1": np.array([7, 7, 8, 8, 8])}  # 5 frames, centres 0.0125 + 0.02 i
    phones, z, problems = frame_phone_table(align, units)
    assert phones.tolist() == ["a", "a", "b", "b", "b"] and z.tolist() == [7, 7, 8, 8, 8]
    assert problems == {"utterances_without_units": 1, "phones_outside_frames": 1}


def test_speaker_probe_separates_speaker_dependent_units():
    rng = np.random.default_rng(0)
    speakers, dependent, invariant = {}, {}, {}
    for s in range(3):
        for u in range(10):
            uid = f"s{s}u{u}"
            speakers[uid] = f"s{s}"
            dependent[uid] = rng.integers(s * 5, s * 5 + 5, 80)  # each speaker has its own units
            invariant[uid] = rng.integers(0, 15, 80)
    dep = speaker_probe(dependent, speakers, 15)
    inv = speaker_probe(invariant, speakers, 15)
    assert dep["speaker_probe_accuracy"] > 0.95
    assert inv["speaker_probe_accuracy"] < 0.7 and dep["chance"] == pytest.approx(1 / 3)
    lonely = dict(speakers, extra="s9")
    out = speaker_probe({**invariant, "extra": np.array([1, 2])}, lonely, 15)
    assert out["speakers_dropped"] == 1
    with pytest.raises(BadInputError, match="two speakers"):
        speaker_probe({k: v for k, v in dependent.items() if k.startswith("s0")}, speakers, 15)
    assert abx_gap(0.1, 0.25) == pytest.approx(0.15)


def test_crosslingual_measures():
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    over = unit_usage_overlap(np.array([0, 0, 1]), np.array([1, 2]), 4)
    assert over["units_only_a"] == 1 and over["units_only_b"] == 1 and over["units_shared"] == 1
    rng = np.random.default_rng(0)
    ph = rng.choice(list("aeiou"), 2000)
    units = pd.Series(ph).map({"a": 0, "e": 1, "i": 2, "o": 3, "u": 4}).to_numpy()
    same = crosslingual_consistency(ph, units, ph, units, 5, own_pnmi_b=1.0)
    assert same["transfer_pnmi"] == pytest.approx(1.0) and same["usage_jsd"] == pytest.approx(0.0)
    assert same["argmax_agreement"] == 1.0 and same["transfer_pnmi_drop"] == pytest.approx(0.0)
    scrambled = crosslingual_consistency(ph, units, ph, rng.integers(0, 5, 2000), 5)
    assert scrambled["transfer_pnmi"] < 0.05 and scrambled["shared_phone_jsd"] > 0.3
