"""DNSMOS on its real ONNX weights (speechmos wheel) and real recorded speech (amfm_decompy wheel)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from mms_helpers import add_noise, hard_clip, make_corpus, real_speech

from obt_eval.atomic import read_json
from obt_eval.corpus import Corpus
from obt_eval.errors import BadInputError
from obt_eval.quality.corpus_quality import score_corpus_quality
from obt_eval.quality.dnsmos import Dnsmos
from obt_eval_cli.main import main as cli_main


@pytest.fixture(scope="module")
def dnsmos():
    # one 9.01 s window per clip (hop longer than the tiled clip): the test stays fast on a busy machine
    return Dnsmos(hop_seconds=10.0, threads=1)


def test_clean_speech_scores_higher_than_noisy_or_clipped(dnsmos):
    clean = real_speech()
    scores = {name: dnsmos.score(wave) for name, wave in
              {"clean": clean, "noise 5 dB": add_noise(clean, 5.0), "clipped": hard_clip(clean)}.items()}
    print(json.dumps(scores, indent=1))  # the figures, for the record
    assert scores["clean"]["dnsmos_ovrl"] > scores["noise 5 dB"]["dnsmos_ovrl"]
    assert scores["clean"]["dnsmos_ovrl"] > scores["clipped"]["dnsmos_ovrl"]
    assert scores["clean"]["dnsmos_bak"] > scores["noise 5 dB"]["dnsmos_bak"]  # BAK is the noise axis
    for s in scores.values():
        assert all(1.0 <= v <= 5.0 for v in s.values())


def test_scores_equal_the_speechmos_reference_and_are_pinned():
    from speechmos import dnsmos as reference

    clip = np.tile(real_speech(), 11)[: int(9.5 * 16000)]  # 9.5 s: one window in both implementations
    ours = Dnsmos(threads=1).score(clip)
    theirs = reference.run(clip, 16000)
    for mine, key in [("dnsmos_sig", "sig_mos"), ("dnsmos_bak", "bak_mos"), ("dnsmos_ovrl", "ovrl_mos"),
                      ("dnsmos_p808", "p808_mos")]:
        assert ours[mine] == pytest.approx(float(theirs[key]), abs=1e-5)
    about = Dnsmos().describe()
    assert about["revision"].startswith("speechmos ") and set(about["files"]) == {"sig_bak_ovr.onnx", "model_v8.onnx"}
    assert all(v.startswith("sha256:") and len(v) == 71 for v in about["files"].values())


def test_bad_audio_is_refused(dnsmos):
    with pytest.raises(BadInputError):
        dnsmos.score(np.zeros(0, np.float32))
    with pytest.raises(BadInputError):
        dnsmos.score(np.full(1000, np.nan, np.float32))


def test_corpus_quality_lists_the_noisy_recording(tmp_path, workspace, dnsmos, capsys):
    clean = real_speech()
    corpus = make_corpus(tmp_path, workspace, "field", {
        "clean": (clean, "pt", "x"), "noisy": (add_noise(clean, 0.0, seed=1), "pt", "y"),
        "clipped": (hard_clip(clean), "pt", "z")})
    before = corpus.manifest.copy()
    report = score_corpus_quality(corpus, judge=dnsmos, progress=False)
    assert report.scored == 3 and report.noisiest[0]["id"] == "noisy" and report.noisiest[-1]["id"] == "clean"
    manifest = Corpus.open(corpus.root).manifest.set_index("id")
    assert manifest.loc["clean", "dnsmos_ovrl"] > manifest.loc["noisy", "dnsmos_ovrl"]
    assert list(Corpus.open(corpus.root).manifest.columns[: len(before.columns)]) == list(before.columns)
    info = read_json(corpus.root / "corpus.json")
    assert info["quality"]["judge"]["files"] and info["quality"]["means"]["dnsmos_ovrl"] == pytest.approx(
        manifest["dnsmos_ovrl"].mean(), abs=1e-3)
    again = score_corpus_quality(corpus, judge=dnsmos, progress=False)
    assert again.reused == 3 and again.scored == 0
    with pytest.raises(SystemExit) as e:
        cli_main(["corpus-quality", "--corpus", "field", "--hop-seconds", "10", "--worst", "1", "--json"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["id"] for r in summary["noisiest"]] == ["noisy"] and summary["reused"] == 3


def test_no_torchaudio_needed():
    assert "torchaudio" not in sys.modules
