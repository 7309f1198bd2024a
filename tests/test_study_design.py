"""Trial design balance, QC trials, and source checks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from study_helpers import make_system_folders

from obt_eval.errors import BadInputError
from obt_eval.study.anchors import degrade
from obt_eval.study.config import AnchorConfig, DesignConfig
from obt_eval.study.design import KIND_ATTENTION, KIND_REGULAR, KIND_REPEAT, make_design
from obt_eval.study.sources import check_sources, scan_system

UTTS = [f"u{i:02d}" for i in range(13)]


@pytest.mark.parametrize("systems", [["x", "m"], ["nat", "x", "m"]])
def test_every_stimulus_reaches_the_target_and_positions_balance(systems):
    design = make_design(systems, UTTS, DesignConfig(target_ratings=10, trials_per_block=6, seed=5),
                         reference="nat" if "nat" in systems else None)
    regular = [t for t in design.trials if t.kind == KIND_REGULAR]
    per_stimulus = Counter(k for t in regular for k in (t.a, t.b))
    assert set(per_stimulus.values()) == {10} and len(per_stimulus) == len(systems) * len(UTTS)
    for block in range(design.blocks):
        trials = [t for t in regular if t.block == block]
        items = [(t.utterance, frozenset((t.a.system, t.b.system))) for t in trials]
        assert len(items) == len(set(items))  # no item twice in one rater's block
        assert len(trials) <= 6
        for pair in {frozenset((t.a.system, t.b.system)) for t in trials}:
            first = [t.a.system for t in trials if frozenset((t.a.system, t.b.system)) == pair]
            counts = Counter(first)
            assert max(counts.values()) - min(counts.get(s, 0) for s in pair) <= 1
        kinds = Counter(t.kind for t in design.trials if t.block == block)
        assert kinds[KIND_ATTENTION] == 1 and kinds[KIND_REPEAT] == 1
    sizes = Counter(t.block for t in regular)
    assert max(sizes.values()) - min(sizes.values()) <= 1  # near-equal blocks
    overall = Counter(t.a.system for t in regular)
    assert max(overall.values()) - min(overall.values()) <= design.blocks


def test_repeat_and_attention_trials():
    design = make_design(["nat", "x"], UTTS, DesignConfig(target_ratings=2, trials_per_block=8, seed=1), "nat")
    for t in design.trials:
        if t.kind == KIND_REPEAT:
            orig = design.trials[t.repeat_of]
            assert orig.kind == KIND_REGULAR and orig.block == t.block and orig.seq < t.seq
            assert (t.a.system, t.b.system) == (orig.b.system, orig.a.system)  # positions swapped
            assert t.a.variant.startswith("repeat") and t.a != orig.b
        if t.kind == KIND_ATTENTION:
            variants = {t.a.variant, t.b.variant}
            assert variants == {"", "anchor"} and t.a.system == t.b.system == "nat"
    orders = [tuple(t.utterance for t in design.trials if t.block == b) for b in range(design.blocks)]
    assert len(set(orders)) == len(orders)  # order randomised per block


def test_seeded_design_is_reproducible():
    a = make_design(["x", "m"], UTTS, DesignConfig(seed=9))
    b = make_design(["x", "m"], UTTS, DesignConfig(seed=9))
    assert a.trials == b.trials and a.seed == 9


def test_anchor_is_band_limited_and_noisy():
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, 16000).astype(np.float32)
    out = degrade(wave, 16000, AnchorConfig(), rng)
    spec_in, spec_out = np.abs(np.fft.rfft(wave)), np.abs(np.fft.rfft(out))
    hi = slice(int(5000 / 8000 * spec_in.size), None)
    assert spec_out[hi].mean() < 0.5 * spec_in[hi].mean()


def test_sources_must_match(tmp_path):
    folders = make_system_folders(tmp_path, {"a": 0.5, "b": 0.5}, utterances=3)
    (folders["b"] / "utt02.wav").unlink()
    sources = [scan_system("a", folders["a"]), scan_system("b", folders["b"])]
    with pytest.raises(BadInputError, match="same utterances"):
        check_sources(sources)
    utts, warnings = check_sources(sources, allow_partial=True)
    assert utts == ["utt00", "utt01"] and warnings
    other = make_system_folders(tmp_path / "c", {"c": 0.5}, utterances=3, sample_rate=22050)
    with pytest.raises(BadInputError, match="sample rates"):
        check_sources([scan_system("a", folders["a"]), scan_system("c", other["c"])], allow_partial=True)
    with pytest.raises(BadInputError, match="reserved"):
        scan_system("anchor", folders["a"])
