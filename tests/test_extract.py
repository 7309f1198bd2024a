"""Extraction: padded batches equal one-at-a-time, chunks equal whole files, a killed run resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obt_eval.errors import BadInputError
from obt_eval.features import FeatureStore
from obt_eval.features import extract as extract_module
from obt_eval.features.extract import ExtractOptions, extract_features, make_batches, plan_shards, segments_of
from obt_eval.frames import num_frames
from obt_eval_cli.main import run

FP16_TOL = dict(atol=2e-2, rtol=1e-2)  # stores hold fp16


def _stores_equal(a: FeatureStore, b: FeatureStore, **tol) -> None:
    assert sorted(a.ids) == sorted(b.ids)
    for uid in a.ids:
        np.testing.assert_allclose(a.get(uid), b.get(uid), **tol)


def test_segments_cover_every_frame_once():
    for samples in (400, 719, 720, 16_000, 16_000 * 7 + 123):
        total = num_frames(samples)
        for chunk in (None, 1, 7, 50):
            segs = segments_of("u", samples, chunk)
            assert sum(s.frames for s in segs) == total
            for s in segs:
                assert s.end <= samples and num_frames(s.end - s.start) == s.frames
            starts = [s.start // 320 for s in segs]
            assert starts == sorted(starts) and starts[0] == 0
    assert segments_of("u", 399, None) == []


def test_batches_respect_the_padded_budget():
    segs = [seg for i, n in enumerate([16_000, 3_000, 48_000, 800, 20_000]) for seg in segments_of(f"u{i}", n, None)]
    batches = make_batches(segs, batch_samples=50_000, max_batch=3)
    assert sorted(s.uid for b in batches for s in b) == sorted(s.uid for s in segs)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or max(s.end - s.start for s in batch) * len(batch) <= 50_000


def test_shard_plan_is_deterministic_and_bounded():
    lengths = {f"u{i}": 16_000 * (1 + i % 5) for i in range(40)}
    shards = plan_shards(lengths, shard_frames=300)
    assert shards == plan_shards(dict(reversed(list(lengths.items()))), shard_frames=300)
    assert sorted(u for s in shards for u in s) == sorted(lengths)
    assert all(sum(num_frames(lengths[u]) for u in s) <= 300 or len(s) == 1 for s in shards)


def test_padded_batches_equal_one_at_a_time(tone_corpus, tiny_wav2vec2, workspace, tmp_path):
    from obt_eval.workspace import Workspace

    batched = extract_features(tone_corpus, str(tiny_wav2vec2), [1, 4], workspace, progress=False,
                               options=ExtractOptions(batch_seconds=100))
    alone = extract_features(tone_corpus, str(tiny_wav2vec2), [1, 4], Workspace.at(tmp_path / "ws2"),
                             progress=False, options=ExtractOptions(max_batch=1))
    for layer in (1, 4):
        assert batched[layer].meta["layer"] == layer and batched[layer].dim == 32
        _stores_equal(batched[layer], alone[layer], **FP16_TOL)
    for uid, n in zip(tone_corpus.manifest["id"], tone_corpus.manifest["num_samples"], strict=True):
        assert batched[4].get(uid).shape == (num_frames(n), 32)


def test_several_layers_from_one_pass_equal_single_layer_runs(tone_corpus, tiny_wav2vec2, workspace, tmp_path):
    from obt_eval.workspace import Workspace

    many = extract_features(tone_corpus, str(tiny_wav2vec2), [0, 2, 3], workspace, progress=False)
    one = extract_features(tone_corpus, str(tiny_wav2vec2), [2], Workspace.at(tmp_path / "ws3"), progress=False)
    _stores_equal(many[2], one[2], **FP16_TOL)
    assert {k: s.layer for k, s in many.items()} == {0: 0, 2: 2, 3: 3}


def test_chunked_equals_whole_away_from_seams(tone_corpus, tiny_wav2vec2, workspace, tmp_path):
    from obt_eval.workspace import Workspace

    whole = extract_features(tone_corpus, str(tiny_wav2vec2), [0], workspace, progress=False,
                             options=ExtractOptions(chunk_seconds=60))[0]
    chunked = extract_features(tone_corpus, str(tiny_wav2vec2), [0], Workspace.at(tmp_path / "ws4"), progress=False,
                               options=ExtractOptions(chunk_seconds=1.0))[0]
    chunk = 50
    reach = 8  # the tiny model's positional convolution has 16 taps: +-8 frames
    uid = "utt03"  # 3.1 s -> 154 frames -> four chunks
    a, b = whole.get(uid), chunked.get(uid)
    assert a.shape == b.shape  # no frame lost or duplicated at the seams
    far = [i for i in range(a.shape[0]) if min(abs(i - s) for s in range(chunk, a.shape[0], chunk)) > reach]
    np.testing.assert_allclose(a[far], b[far], **FP16_TOL)
    near = [s for s in range(chunk, a.shape[0], chunk)]
    assert not np.allclose(a[near], b[near], atol=1e-3)  # the seams really were cut


def test_killed_extraction_resumes_without_redoing_shards(tone_corpus, tiny_wav2vec2, workspace, tmp_path,
                                                         monkeypatch):
    from obt_eval.workspace import Workspace

    opts = ExtractOptions(shard_frames=100)  # four utterances -> several shards
    real_run = extract_module._run_batch
    calls = {"n": 0}

    def dying_run(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(extract_module, "_run_batch", dying_run)
    with pytest.raises(KeyboardInterrupt):
        extract_features(tone_corpus, str(tiny_wav2vec2), [2], workspace, progress=False, options=opts)
    path = workspace.features_dir("tones", tiny_wav2vec2.name, 2)
    with pytest.raises(BadInputError, match="incomplete"):
        FeatureStore.open(path)
    done_before = sorted(p.name for p in (path / "shards").glob("*.json"))
    assert done_before  # some shards were finished before the kill

    monkeypatch.setattr(extract_module, "_run_batch", real_run)
    batches = []
    monkeypatch.setattr(extract_module, "_run_batch", lambda *a, **k: batches.append(a[1]) or real_run(*a, **k))
    resumed = extract_features(tone_corpus, str(tiny_wav2vec2), [2], workspace, progress=False, options=opts)[2]
    redone = {seg.uid for batch in batches for seg in batch}
    shards = plan_shards(dict(zip(tone_corpus.ids, tone_corpus.manifest["num_samples"], strict=True)), 100)
    finished = {u for i, s in enumerate(shards) if f"shard-{i:05d}.json" in done_before for u in s}
    assert redone and not (redone & finished)
    fresh = extract_features(tone_corpus, str(tiny_wav2vec2), [2], Workspace.at(tmp_path / "ws5"), progress=False,
                             options=opts)[2]
    _stores_equal(resumed, fresh, atol=0, rtol=0)
    # a complete store is returned as is, without loading or running the encoder
    batches.clear()
    monkeypatch.setattr(extract_module, "load_encoder", lambda *a, **k: pytest.fail("model loaded needlessly"))
    extract_features(tone_corpus, str(tiny_wav2vec2), [2], workspace, progress=False, options=opts)
    assert batches == []


def test_a_partial_store_of_another_corpus_version_is_not_resumed(tone_corpus, tiny_wav2vec2, workspace, tmp_path,
                                                                  monkeypatch):
    from conftest import write_tone_wavs

    from obt_eval.corpus import Corpus
    from obt_eval.corpus.ingest import ingest

    opts = ExtractOptions(shard_frames=100)
    real_run = extract_module._run_batch
    calls = {"n": 0}

    def dying_run(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(extract_module, "_run_batch", dying_run)
    with pytest.raises(KeyboardInterrupt):
        extract_features(tone_corpus, str(tiny_wav2vec2), [2], workspace, progress=False, options=opts)
    monkeypatch.setattr(extract_module, "_run_batch", real_run)
    # the corpus changes before the re-run: finished shards would now hold the wrong utterances
    write_tone_wavs(tmp_path / "tones", durations=(1.0, 2.3, 0.6, 3.1, 1.7))
    ingest(tmp_path / "tones", "tones", workspace, progress=False)
    changed = Corpus.open("tones", workspace)
    with pytest.raises(BadInputError, match="plan"):
        extract_features(changed, str(tiny_wav2vec2), [2], workspace, progress=False, options=opts)
    store = extract_features(changed, str(tiny_wav2vec2), [2], workspace, progress=False, options=opts,
                             overwrite=True)[2]
    assert sorted(store.ids) == sorted(changed.ids) and len(store) == 5


def test_cli_extract_and_export_zerospeech_layout(tone_corpus, workspace, tmp_path, capsys):
    assert run(["extract", "--corpus", "tones", "--encoder", "mfcc", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    store_path = summary["stores"][0]["path"]
    assert summary["stores"][0]["dim"] == 39 and summary["x_real_time"] > 0
    assert run(["export-features", store_path, str(tmp_path / "npy"), "--json"]) == 0
    files = sorted((tmp_path / "npy").glob("*.npy"))
    assert [f.stem for f in files] == sorted(tone_corpus.ids)
    store = FeatureStore.open(store_path)
    for f in files:
        array = np.load(f)
        assert array.dtype == np.float32 and array.shape == (store.lengths()[f.stem], 39)
    assert run(["extract", "--corpus", "tones", "--encoder", "mfcc", "--layer", "3"]) == 2
    assert run(["extract", "--corpus", "nope", "--encoder", "mfcc"]) == 2


def test_the_progress_bar_ends_at_100_percent(tone_corpus, workspace, monkeypatch):
    import obt_eval.features.extract as ex

    bars = []

    class Recorded(ex.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(ex, "tqdm", Recorded)
    extract_features(tone_corpus, "mfcc", None, workspace, progress=True)
    (bar,) = bars
    # the count covers every frame extracted, and nothing else: 100 %, not a rounded 98-99 %
    assert bar.total > 0 and bar.n == bar.total


def _corpus_with_loud_tails(tmp_path, workspace, name="tails"):
    """Utterances whose lengths are not frame multiples, with a loud burst in the samples past the last frame.

    The frame grid needs samples [0, 320 (n_frames - 1) + 400); the 1..319 samples after that change
    the utterance's mean and variance, i.e. the waveform normalisation the full model applies.
    """
    import soundfile as sf

    from obt_eval.corpus import Corpus
    from obt_eval.corpus.ingest import ingest

    rng = np.random.default_rng(7)
    folder = tmp_path / name
    folder.mkdir()
    for i, n in enumerate((16_000 + 311, 27_000 + 93, 9_000 + 250)):
        assert (n - 400) % 320 != 0
        wave = 0.05 * rng.standard_normal(n)
        used = 320 * (num_frames(n) - 1) + 400
        wave[used:] += 0.8 * np.sign(rng.standard_normal(n - used))  # a click in the cut-off tail
        sf.write(folder / f"u{i}.wav", wave.astype(np.float32), 16_000, subtype="FLOAT")
    ingest(folder, name, workspace, progress=False)
    return Corpus.open(name, workspace)


def _full_model_layers(model_dir, wave, layers):
    import torch
    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(model_dir).eval()
    x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)  # the feature extractor, on the untruncated file
    with torch.no_grad():
        hs = model(torch.from_numpy(x.astype(np.float32))[None], output_hidden_states=True).hidden_states
    return {k: hs[k][0].numpy() for k in layers}


@pytest.mark.parametrize("chunk_seconds,layers", [(60.0, [1, 4]), (0.8, [0])])
def test_stored_features_equal_the_full_model_on_the_untruncated_file(tmp_path, workspace, tiny_wav2vec2,
                                                                     chunk_seconds, layers):
    """Normalisation uses the whole utterance, not the samples the frame grid (or a chunk) keeps.

    fp16 stores are compared with the full model's hidden_states[k] on the whole file: the difference
    must stay at fp16 rounding (well under 1 % of the features' standard deviation). Chunked runs are
    compared at layer 0 (before attention, which a chunk necessarily cuts), away from the seams.
    """
    from obt_eval.audio import load_16k

    corpus = _corpus_with_loud_tails(tmp_path, workspace)
    stores = extract_features(corpus, str(tiny_wav2vec2), layers, workspace, progress=False,
                              options=ExtractOptions(chunk_seconds=chunk_seconds))
    chunk = int(chunk_seconds * 50)
    reach = 8  # the tiny model's positional convolution has 16 taps
    for uid, path in zip(corpus.ids, corpus.manifest["audio_path"], strict=True):
        wave = load_16k(path).astype(np.float64)
        reference = _full_model_layers(tiny_wav2vec2, wave, layers)
        for k in layers:
            stored = stores[k].get(uid).astype(np.float32)
            assert stored.shape == reference[k].shape
            seams = range(chunk, len(stored), chunk)
            far = [i for i in range(len(stored)) if all(abs(i - s) > reach for s in seams)]
            assert len(far) > len(stored) // 3
            error = np.abs(stored[far] - reference[k][far]).max() / reference[k].std()
            assert error < 0.005, f"{uid} layer {k}: {error:.4f} of a standard deviation"
