"""Synthesis from a trained (tiny) vocoder: lengths, durations, input checks, stimuli, metrics CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.units.store import UnitsStore
from obt_eval.vocoder.config import preset
from obt_eval.vocoder.postprocess import integrated_loudness
from obt_eval.vocoder.synthesis import Vocoder, synthesize_units
from obt_eval.vocoder.toy import make_toy_corpus
from obt_eval.vocoder.train import train_vocoder
from obt_eval_cli.main import main as cli_main

# tiny convolutions are dominated by OpenMP start-up on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    units, corpus = make_toy_corpus(root, num_utterances=4, seconds=0.6)
    train_vocoder(units, root / "voc", preset("tiny"), corpus=corpus, speakers=True, durations=True,
                  steps=3, progress=False)
    return root, units, corpus, Vocoder.load(root / "voc", "cpu")


def test_length_is_units_times_320(trained):
    _, units, corpus, vocoder = trained
    uid = units.ids[0]
    wave = vocoder.synthesize(units.get(uid), speaker=corpus.speakers()[uid])
    assert wave.shape == (len(units.get(uid)) * 320,) and wave.dtype == np.float32


def test_batched_generation_keeps_each_length(trained):
    _, units, corpus, vocoder = trained
    from obt_eval.vocoder.synthesis import SynthItem

    items = [SynthItem(u, units.get(u)[: 5 + 7 * i], "spk1") for i, u in enumerate(units.ids)]
    waves = vocoder.generate(items)
    assert [len(w) for w in waves] == [len(i.units) * 320 for i in items]
    alone = vocoder.generate(items[-1:])[0]  # the longest item is not padded: identical alone or batched
    assert np.allclose(alone, waves[-1], atol=1e-5)


def test_deduplicated_units_with_predicted_durations(trained):
    _, units, _, vocoder = trained
    seq = units.get(units.ids[1])
    wave = vocoder.synthesize(seq, speaker="spk2", deduplicate=True)
    runs = int(np.sum(np.r_[True, seq[1:] != seq[:-1]]))
    assert len(wave) % 320 == 0 and len(wave) >= runs * 320


def test_bad_inputs_get_clear_errors(trained, tmp_path):
    _, units, _, vocoder = trained
    with pytest.raises(BadInputError, match=r"outside \[0, 8\)"):
        vocoder.synthesize(np.array([1, 2, 8]), speaker="spk1")
    with pytest.raises(BadInputError, match="outside"):
        vocoder.synthesize(np.array([-1, 2]), speaker="spk1")
    with pytest.raises(BadInputError, match="empty"):
        vocoder.synthesize(np.array([], dtype=np.int64), speaker="spk1")
    with pytest.raises(NotFoundError, match="speaker 'nobody'"):
        vocoder.synthesize(np.array([1, 2]), speaker="nobody")
    with pytest.raises(BadInputError, match="needs a speaker"):
        vocoder.synthesize(np.array([1, 2]))
    other = UnitsStore.write(tmp_path / "other", {u: units.get(u) for u in units.ids},
                             units.codebook[::-1].copy(), units.meta)
    with pytest.raises(BadInputError, match="not the units this vocoder was trained on"):
        synthesize_units(vocoder, other, tmp_path / "out", progress=False)
    bigger = UnitsStore.write(tmp_path / "k9", {u: units.get(u) for u in units.ids},
                              np.zeros((9, 4), np.float32), units.meta)
    with pytest.raises(BadInputError, match="k=9"):
        synthesize_units(vocoder, bigger, tmp_path / "out", progress=False)


def test_stimuli_are_pcm16_at_one_loudness_and_resume(trained, tmp_path):
    _, units, _, vocoder = trained
    out = tmp_path / "stim"
    report = synthesize_units(vocoder, units, out, ids="all", progress=False)
    assert report.written == 4 and not report.problems
    table = pd.read_csv(out / "stimuli.csv")
    assert table["id"].tolist() == units.ids
    for row in table.itertuples():
        info = sf.info(out / row.file)
        assert info.samplerate == 16000 and info.subtype == "PCM_16" and info.channels == 1
        wave, _ = sf.read(out / row.file, dtype="float32")
        if not row.peak_limited:
            assert abs(integrated_loudness(wave[row.pad: -row.pad]) + 23.0) < 0.5
    side = json.loads((out / "stimuli.json").read_text())
    assert side["codebook_hash"] == vocoder.meta["codebook_hash"] and side["policy"]["loudness_lufs"] == -23.0
    again = synthesize_units(vocoder, units, out, ids="all", progress=False)
    assert again.written == 0 and again.skipped == 4


def test_silent_and_near_silent_outputs_are_named_problems_not_stimuli(trained, tmp_path, monkeypatch):
    from obt_eval.vocoder.postprocess import trim_silence

    _, units, _, vocoder = trained
    real = type(vocoder).generate
    silent, quiet = units.ids[0], units.ids[1]

    def generate(self, items):
        waves = real(self, items)
        for item, wave in zip(items, waves, strict=True):
            if item.uid == silent:
                wave[:] = 0.0
            elif item.uid == quiet:  # -62.7 LUFS: reaching -23 LUFS would take +39.7 dB
                start, end = trim_silence(wave, 40.0)
                wave *= np.float32(10 ** ((-62.7 - integrated_loudness(wave[start:end])) / 20))
        return waves

    monkeypatch.setattr(type(vocoder), "generate", generate)
    report = synthesize_units(vocoder, units, tmp_path / "s", ids="all", progress=False)
    problems = {p["id"]: p["problem"] for p in report.problems}
    assert report.written == 2 and set(problems) == {silent, quiet}
    assert "silent" in problems[silent] and "-inf LUFS" in problems[silent]
    assert "-62.7 LUFS" in problems[quiet] and "+39.7 dB" in problems[quiet]
    assert "maximum gain of 30 dB" in problems[quiet]
    assert not (tmp_path / "s" / f"{silent}.wav").exists() and not (tmp_path / "s" / f"{quiet}.wav").exists()
    assert len(json.loads((tmp_path / "s" / "stimuli.json").read_text())["problems"]) == 2
    # a higher stated maximum accepts the quiet clip (and says what it did in stimuli.csv)
    from obt_eval.vocoder.postprocess import OutputPolicy

    loose = synthesize_units(vocoder, units, tmp_path / "s", ids=[quiet], policy=OutputPolicy(max_gain_db=45),
                             progress=False)
    assert loose.written == 1 and not loose.problems
    assert pd.read_csv(tmp_path / "s" / "stimuli.csv")["gain_db"].iloc[0] == pytest.approx(39.7, abs=0.05)
    with pytest.raises(BadInputError, match=rf"no utterance could be synthesized.*{silent}: the output is silent"):
        synthesize_units(vocoder, units, tmp_path / "only-silent", ids=[silent], progress=False)


def test_unknown_speaker_in_batch_is_reported(trained, tmp_path):
    _, units, _, vocoder = trained
    with pytest.raises(BadInputError, match="no utterance could be synthesized"):
        synthesize_units(vocoder, units, tmp_path / "s", ids="all", speaker="nobody", progress=False)


def test_synthesize_and_metrics_cli(trained, tmp_path, capsys):
    root, units, _, _ = trained
    ids = tmp_path / "ids.txt"
    ids.write_text(units.ids[0] + "\n")
    args = ["--workspace", str(root), "--json"]
    with pytest.raises(SystemExit) as e:
        cli_main(["synthesize", "--vocoder", str(root / "voc"), "--units", str(units.path),
                  "--out", str(tmp_path / "stim"), "--ids", str(ids), *args])
    assert e.value.code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 1
    with pytest.raises(SystemExit) as e:
        cli_main(["resynthesis-metrics", "--stimuli", str(tmp_path / "stim"), "--out", str(tmp_path / "m.csv"),
                  *args])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = summary["systems"][0]
    assert row["system"] == "stim" and row["utterances"] == 1
    assert row["mcd_db"] > 0 and 0 <= row["vde"] <= 1 and row["stoi"] == row["stoi"]  # STOI computed
    assert (tmp_path / "stim" / "metrics.csv").exists() and (tmp_path / "m.csv").exists()


def test_bf16_synthesis_is_close_to_fp32(trained):
    root, units, _, vocoder = trained
    seq = units.get(units.ids[0])
    fast = Vocoder.load(root / "voc", "cpu", precision="bf16")
    a = vocoder.synthesize(seq, speaker="spk1")
    b = fast.synthesize(seq, speaker="spk1")
    assert len(a) == len(b) and fast.bf16 and not vocoder.bf16
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.05 * np.sqrt(np.mean(a**2)) + 1e-4
    with pytest.raises(BadInputError, match="precision"):
        Vocoder.load(root / "voc", "cpu", precision="fp8")
