"""The frame-0 centre travels with the data: stores of a w2v-BERT-like grid (frames centred 5 ms later than
wav2vec2's) get phone labels, ABX segments and PNMI on their own grid; stores without the key behave as before.

The synthetic corpus: phones 40 ms long whose boundaries lie 2.5 ms before a w2v-BERT frame centre
(0.015 + 0.04 m s), so each phone covers exactly frames 2m and 2m+1 of the 0.0175 s grid, while on the
wav2vec2 grid (0.0125 s) its frames are 2m+1 and 2m+2: 5 ms decides which phone a frame belongs to.
Each frame's feature is the one-hot vector of its phone on the 0.0175 s grid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from obt_eval.alignments import PhoneInterval, frame_labels, items_from_intervals, write_item_file
from obt_eval.features.store import FeatureStore, FeatureStoreWriter
from obt_eval.frames import FRAME_OFFSET, store_frame_timing
from obt_eval.metrics.abx import AbxConfig, MappingSource, abx, abx_from_paths, frame_bounds, open_feature_source
from obt_eval.metrics.unit_quality import frame_phone_table
from obt_eval.units.kmeans import KMeansConfig
from obt_eval.units.learn import learn_units

W2V_BERT_OFFSET = 0.0175  # FBANK_GRID: window 560, hop 320 -> centre of frame 0 at 280 / 16000 s
PHONES = "abcd"
NUM_PHONES = 20
NUM_FRAMES = 2 * NUM_PHONES + 4


def _phone_sequences(num_files: int = 6, seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {f"utt{i}": [PHONES[j] for j in rng.integers(0, len(PHONES), NUM_PHONES)] for i in range(num_files)}


def _intervals(seqs: dict[str, list[str]]) -> list[PhoneInterval]:
    return [PhoneInterval(uid, 0.015 + 0.04 * m, 0.055 + 0.04 * m, p) for uid, seq in seqs.items()
            for m, p in enumerate(seq)]


def _features(seq: list[str]) -> np.ndarray:
    """One-hot of the phone under each frame centre of the 0.0175 s grid (zeros outside the phones)."""
    feats = np.zeros((NUM_FRAMES, len(PHONES)), np.float32)
    for m, p in enumerate(seq):
        feats[2 * m: 2 * m + 2, PHONES.index(p)] = 1.0
    return feats


def _store(path, seqs, frame_offset: float | None) -> FeatureStore:
    meta = {"dim": len(PHONES), "layer": 1, "encoder": "toy-grid", "corpus": "grid", "frame_rate": 50.0}
    if frame_offset is not None:
        meta["frame_offset"] = frame_offset
    writer = FeatureStoreWriter(path, meta)
    writer.write_shard(0, [(uid, _features(seq)) for uid, seq in seqs.items()])
    return writer.finalize(1)


def test_frame_labels_and_abx_bounds_move_with_the_frame_offset():
    # a boundary at 95 ms: frame 4 is centred at 92.5 ms on the wav2vec2 grid, at 97.5 ms on w2v-BERT's
    ivs = [(0.0, 0.095, "a"), (0.095, 0.2, "b")]
    before = frame_labels(ivs, 8)
    assert before.tolist() == ["a"] * 5 + ["b"] * 3
    # the default is the wav2vec2 grid exactly as it was computed before: centres (i + 0.625) / 50
    old_centres = (np.arange(8) + 0.625) / 50
    assert before.tolist() == np.where(old_centres < 0.095, "a", "b").tolist()
    assert frame_labels(ivs, 8, frame_offset=W2V_BERT_OFFSET).tolist() == ["a"] * 4 + ["b"] * 4
    start, end = frame_bounds(np.array([0.095]), np.array([0.2]), 50.0, FRAME_OFFSET)
    start_b, end_b = frame_bounds(np.array([0.095]), np.array([0.2]), 50.0, W2V_BERT_OFFSET)
    assert (start[0], end[0]) == (5, 10) and (start_b[0], end_b[0]) == (4, 10)


def test_stores_report_their_own_grid_and_old_stores_the_wav2vec2_one(tmp_path):
    seqs = _phone_sequences(2)
    new = _store(tmp_path / "new", seqs, W2V_BERT_OFFSET)
    old = _store(tmp_path / "old", seqs, None)
    assert store_frame_timing(new) == (50.0, W2V_BERT_OFFSET)
    assert store_frame_timing(old) == (50.0, FRAME_OFFSET) == (50.0, 0.0125)
    assert store_frame_timing({}) == (50.0, 0.0125)
    assert open_feature_source(new.path)[1] == W2V_BERT_OFFSET
    assert open_feature_source(old.path)[1] == 0.0125
    # units record the grid of the features they were learned from
    units = learn_units(new, KMeansConfig(k=4, seed=0, sample_frac=1.0, n_init=1), out_dir=tmp_path / "units",
                        progress=False).units
    assert units.meta["frame_offset"] == W2V_BERT_OFFSET and units.meta["frame_rate"] == 50.0
    assert store_frame_timing(units) == (50.0, W2V_BERT_OFFSET)
    assert open_feature_source(units.path)[1] == W2V_BERT_OFFSET
    # units learned before units recorded the grid take it from the feature store they name
    assert store_frame_timing({"features": str(new.path)}) == (50.0, W2V_BERT_OFFSET)
    assert store_frame_timing({"features": str(tmp_path / "gone")}) == (50.0, 0.0125)


def test_abx_on_a_store_uses_its_recorded_frame_offset(tmp_path):
    seqs = _phone_sequences()
    intervals = _intervals(seqs)
    items = items_from_intervals(intervals, dict.fromkeys(seqs, "spk1"))
    write_item_file(tmp_path / "grid.item", items)
    new = _store(tmp_path / "new", seqs, W2V_BERT_OFFSET)
    old = _store(tmp_path / "old", seqs, None)
    cfg = AbxConfig(context="any", max_size_group=0)

    on_grid = abx_from_paths(tmp_path / "grid.item", new.path, cfg)
    assert on_grid.config["frame_offset"] == W2V_BERT_OFFSET
    assert on_grid.error == 0.0  # every segment holds exactly its own phone's frames
    # the same frames read with the wav2vec2 centres take in the next phone's frame: errors appear
    shifted = abx_from_paths(tmp_path / "grid.item", old.path, cfg)
    assert shifted.config["frame_offset"] == 0.0125 and shifted.error > 0.02
    # a store without the key is scored exactly as before (frames.py's 0.0125)
    feats = {uid: _features(seq) for uid, seq in seqs.items()}
    reference = abx(items, MappingSource(feats), AbxConfig(context="any", max_size_group=0, frame_offset=0.0125))
    assert shifted.error == reference.error


def test_unit_metrics_and_search_label_frames_on_the_stores_grid(tmp_path, workspace):
    from obt_eval.corpus.ingest import ingest
    from obt_eval.metrics.unit_report import unit_metrics
    from obt_eval.search import _phone_frames

    seqs = _phone_sequences()
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    rng = np.random.default_rng(1)
    for uid in seqs:
        sf.write(wavs / f"{uid}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    intervals = _intervals(seqs)
    items = items_from_intervals(intervals, {uid: f"spk{i % 2}" for i, uid in enumerate(seqs)})
    write_item_file(tmp_path / "grid.item", items)
    ingest(wavs, "grid", workspace, alignments=tmp_path / "grid.item", progress=False)

    scores = {}
    for name, offset in (("w2v-bert-grid", W2V_BERT_OFFSET), ("old", None)):
        store = _store(workspace.root / "features" / name, seqs, offset)
        units = learn_units(store, KMeansConfig(k=len(PHONES), seed=0, sample_frac=1.0, n_init=3),
                            out_dir=workspace.root / "units" / name, progress=False).units
        scores[name] = unit_metrics(units.path, workspace=workspace, write=False)
        # search labels continuous frames on the same grid
        labels, frames, _ = _phone_frames(pd.read_parquet(workspace.corpus_dir("grid") / "alignments.parquet"),
                                          store, list(seqs))
        scores[name]["label_matches_frame"] = float(np.mean([PHONES[int(f.argmax())] == lab
                                                             for lab, f in zip(labels, frames, strict=True)]))
    bert, old = scores["w2v-bert-grid"], scores["old"]
    # one unit per phone, read on the grid the features were made on: perfect PNMI and unit ABX
    assert bert["pnmi"] == pytest.approx(1.0) and bert["phone_purity"] == pytest.approx(1.0)
    assert bert["abx_within"] == 0.0 and bert["label_matches_frame"] == 1.0
    # the same units without a recorded grid are read on the wav2vec2 one, as before: half the frames mislabelled
    assert old["pnmi"] < 0.9 and old["label_matches_frame"] < 0.8


def test_frame_phone_table_counts_phones_past_the_last_centre_on_the_units_grid():
    # 3 frames: last centre 0.0525 s (wav2vec2) or 0.0575 s (w2v-BERT); a phone starting at 55 ms lies between
    align = pd.DataFrame({"id": ["u"] * 2, "onset": [0.0, 0.055], "offset": [0.055, 0.1], "phone": ["a", "b"]})
    units = {"u": np.array([1, 1, 2])}
    _, _, problems = frame_phone_table(align, units)
    assert problems["phones_outside_frames"] == 1
    phones, _, problems = frame_phone_table(align, units, frame_offset=W2V_BERT_OFFSET)
    assert problems["phones_outside_frames"] == 0 and phones.tolist() == ["a", "a", "b"]
