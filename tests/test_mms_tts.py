"""MMS-TTS baseline (tiny random VITS at 22.05 kHz, loaded by path) as a stimuli folder a study accepts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from mms_helpers import make_corpus, system_folder, tone

from obt_eval.errors import BadInputError
from obt_eval.integrity import file_checksum, verify_files
from obt_eval.mms.toy import make_tts
from obt_eval.mms.tts import TextToSpeech, synthesize_transcripts
from obt_eval.study.sources import check_sources, scan_system
from obt_eval.vocoder.postprocess import integrated_loudness
from obt_eval_cli.main import main as cli_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tts_path(tmp_path_factory):
    return make_tts(tmp_path_factory.mktemp("tts"), "por", sampling_rate=22050)


@pytest.fixture
def corpus(tmp_path, workspace):
    items = {"a": (tone(1.0, 140), "pt", "O gato dorme."), "b": (tone(1.4, 180, 1), "pt", "Bom dia, Maria!"),
             "c": (tone(0.8, 120, 2), "pt", ""), "d": (tone(0.8, 160, 3), "pt", "Жжж")}
    return make_corpus(tmp_path, workspace, "ttsc", items)


def test_transcripts_become_16k_loudness_matched_stimuli(tts_path, corpus, tmp_path):
    tts = TextToSpeech(str(tts_path), device="cpu")
    assert tts.sampling_rate == 22050 and tts.revision.startswith("sha256:")
    out = tmp_path / "mms-tts"
    report = synthesize_transcripts(tts, corpus, out, ids="all", progress=False)
    assert report.written == 2
    problems = {p["id"]: p["problem"] for p in report.problems}
    assert set(problems) == {"c", "d"} and "no transcript" in problems["c"] and "no character" in problems["d"]
    table = pd.read_csv(out / "stimuli.csv")
    assert table["id"].tolist() == ["a", "b"] and table["text"].tolist() == ["O gato dorme.", "Bom dia, Maria!"]
    raw = tts.speak("O gato dorme.", 0)
    for row in table.itertuples():
        info = sf.info(out / row.file)
        assert info.samplerate == 16000 and info.subtype == "PCM_16" and info.channels == 1
        wave, _ = sf.read(out / row.file, dtype="float32")
        assert np.all(wave[: row.pad] == 0) and np.all(wave[-row.pad:] == 0)
        if not row.peak_limited:
            assert abs(integrated_loudness(wave[row.pad: -row.pad]) + 23.0) < 0.5
        assert row.source_samples == corpus.row(row.id)["num_samples"]
    # the 22.05 kHz model output was resampled: 16 kHz length = model length * 16000 / 22050
    torch.manual_seed(0)
    native = tts.model(input_ids=tts.token_ids("O gato dorme.")).waveform[0].detach().numpy()
    assert abs(len(raw) - len(native) * 16000 / 22050) <= 2
    side = json.loads((out / "stimuli.json").read_text())
    assert side["kind"] == "tts" and side["model"] == str(tts_path) and side["corpus"] == "ttsc"
    assert side["deduplicate"] is True and side["policy"]["loudness_lufs"] == -23.0 and side["count"] == 2
    verify_files(out, side["checksums"])


def test_resume_determinism_and_study_sources(tts_path, corpus, tmp_path):
    out = tmp_path / "mms-tts"
    synthesize_transcripts(str(tts_path), corpus, out, ids=["a", "b"], seed=7, progress=False)
    first = {p.name: file_checksum(p) for p in out.glob("*.wav")}
    again = synthesize_transcripts(str(tts_path), corpus, out, ids=["a", "b"], seed=7, progress=False)
    assert again.written == 0 and again.skipped == 2
    fresh = tmp_path / "fresh"
    synthesize_transcripts(str(tts_path), corpus, fresh, ids=["a", "b"], seed=7, progress=False)
    assert {p.name: file_checksum(p) for p in fresh.glob("*.wav")} == first  # same seed, same audio
    other = tmp_path / "other-seed"
    synthesize_transcripts(str(tts_path), corpus, other, ids=["a"], seed=8, progress=False)
    assert file_checksum(other / "a.wav") != first["a.wav"]
    # a study takes the folder as one more system
    resynth = system_folder(tmp_path / "resynth", corpus, ["a", "b"])
    common, _ = check_sources([scan_system("mms-tts", out), scan_system("resynth", resynth)])
    assert common == ["a", "b"]


def test_resynthesis_metrics_accept_the_tts_folder(tts_path, corpus, tmp_path):
    from obt_eval.vocoder.metrics import resynthesis_metrics

    out = tmp_path / "mms-tts"
    synthesize_transcripts(str(tts_path), corpus, out, ids=["a"], progress=False)
    table = resynthesis_metrics(out, progress=False)
    assert table["id"].tolist() == ["a"] and table["mcd_db"].iloc[0] > 0
    assert np.isnan(table["stoi"].iloc[0])  # not sample-aligned with the original: no STOI


def test_tts_cli_like_a_system_and_errors(tts_path, corpus, tmp_path, capsys):
    like = system_folder(tmp_path / "voc", corpus, ["b"])
    out = tmp_path / "cli-tts"
    with pytest.raises(SystemExit) as e:
        cli_main(["tts-baseline", "--corpus", "ttsc", "--model", str(tts_path), "--like", str(like),
                  "--out", str(out), "--json"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 1 and pd.read_csv(out / "stimuli.csv")["id"].tolist() == ["b"]
    with pytest.raises(BadInputError, match="no utterance could be synthesized"):
        synthesize_transcripts(str(tts_path), corpus, tmp_path / "none", ids=["c"], progress=False)
    with pytest.raises(SystemExit) as e:
        cli_main(["tts-baseline", "--corpus", "ttsc", "--model", str(tmp_path / "nowhere")])
    assert e.value.code == 2
