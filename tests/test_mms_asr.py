"""CTC ASR with MMS language adapters (tiny random checkpoints, loaded by path) and the intelligibility step."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mms_helpers import add_noise, make_corpus, system_folder, tone
from safetensors.torch import load_file

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.mms import asr as asr_module
from obt_eval.mms.asr import ErrorCounts, SpeechRecognizer, cer, edit_distance, normalise_text, wer
from obt_eval.mms.intelligibility import score_system
from obt_eval.mms.toy import make_ctc, make_plain_ctc
from obt_eval_cli.main import main as cli_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ctc(tmp_path_factory):
    return make_ctc(tmp_path_factory.mktemp("ctc"), ["por", "grn"])


def test_edit_distance_and_rates_on_known_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1 and edit_distance("abc", "abc") == 0
    assert cer("abcd", "abxd") == pytest.approx(0.25)
    assert wer("o gato preto", "o rato preto") == pytest.approx(1 / 3)
    assert cer("", "anything") is None  # no reference: no rate
    # corpus-level rates add edits and lengths; they are not the mean of per-clip rates
    total = ErrorCounts.of("ab", "xb") + ErrorCounts.of("abcdefgh", "abcdefgh")
    assert total.cer == pytest.approx(1 / 10) and total.cer != pytest.approx((0.5 + 0.0) / 2)


def test_text_normalisation_is_stated_and_applied():
    assert normalise_text("Olá,  MUNDO!  —  ’tá bem-vindo.") == "olá mundo 'tá bem vindo"
    assert normalise_text("Ñandejára ñanderayhu.") == "ñandejára ñanderayhu"
    assert normalise_text("ﬁm") == "fim"  # NFKC folds the ligature
    assert cer("Olá, mundo!", "ola mundo") == pytest.approx(1 / 9)  # only the accent differs


def test_adapter_is_loaded_for_the_language(ctc):
    vocab = json.loads((ctc / "vocab.json").read_text())
    por = SpeechRecognizer(str(ctc), "pt", device="cpu")  # ISO 639-1 is mapped to the adapter's 639-3
    assert por.adapter == "por" and por.languages == ["grn", "por"]
    assert por.model.lm_head.out_features == len(vocab["por"])
    stored = load_file(str(ctc / "adapter.por.safetensors"))
    assert np.allclose(por.model.lm_head.weight.detach().numpy(), stored["lm_head.weight"].numpy())
    grn = SpeechRecognizer(str(ctc), "grn", device="cpu")
    assert grn.model.lm_head.out_features == len(vocab["grn"]) != len(vocab["por"])
    assert grn.processor.tokenizer.encoder == vocab["grn"]
    text = grn.transcribe(tone(1.0, 150))
    assert set(text) <= set(vocab["grn"]) | {" "}  # decoded with the grn vocabulary


def test_language_without_adapter_is_explained_and_closest_can_be_chosen(ctc):
    with pytest.raises(BadInputError, match="no adapter for 'mav'.*grn, por") as err:
        SpeechRecognizer(str(ctc), "mav", device="cpu")
    assert "--adapter" in str(err.value)
    closest = SpeechRecognizer(str(ctc), "mav", adapter="grn", device="cpu")
    assert closest.adapter == "grn" and closest.lang == "mav"
    with pytest.raises(BadInputError, match="needs a language"):
        SpeechRecognizer(str(ctc), device="cpu")


def test_macrolanguage_member_adapter_is_used(tmp_path):
    path = make_ctc(tmp_path / "ctc", ["por", "gug"])
    rec = SpeechRecognizer(str(path), "gn", device="cpu")  # gn -> grn, a macrolanguage whose member gug exists
    assert rec.lang == "grn" and rec.adapter == "gug"


def test_plain_ctc_checkpoint_and_missing_checkpoint(tmp_path):
    plain = make_plain_ctc(tmp_path / "plain")
    rec = SpeechRecognizer(str(plain), device="cpu")
    assert rec.adapter is None and isinstance(rec.transcribe(tone(0.5, 200)), str)
    long_text = rec.transcribe(tone(31.0, 200))  # two 30 s pieces
    assert isinstance(long_text, str)
    with pytest.raises(BadInputError, match="no language adapters"):
        SpeechRecognizer(str(plain), adapter="por", device="cpu")
    with pytest.raises(NotFoundError, match="cannot load"):
        SpeechRecognizer(str(tmp_path / "nowhere"), "por", device="cpu")


@pytest.fixture
def corpus_and_systems(tmp_path, workspace):
    items = {f"u{i}": (tone(0.8 + 0.3 * i, 120 + 30 * i, seed=i), "pt-br", text)
             for i, text in enumerate(["o gato preto", "Bom dia, Maria!", ""])}
    corpus = make_corpus(tmp_path, workspace, "asr", items)
    copy = system_folder(tmp_path / "copy", corpus, corpus.ids)
    noisy = system_folder(tmp_path / "noisy", corpus, corpus.ids, lambda w: add_noise(w, 0.0, seed=3))
    return corpus, copy, noisy


def test_intelligibility_of_identity_and_degraded_systems(ctc, corpus_and_systems, monkeypatch):
    corpus, copy, noisy = corpus_and_systems
    rec = SpeechRecognizer(str(ctc), "por", device="cpu")
    same = score_system(copy, rec, lang="por", progress=False)
    written = json.loads((copy / "intelligibility.json").read_text())
    assert written["system"] == same["system"] and written["model"] == str(ctc) and written["lang"] == "por"
    assert written["revision"].startswith("sha256:") and written["adapter"] == "por"
    clips = {c["utterance"]: c for c in written["clips"]}
    assert set(clips) == {"u0", "u1", "u2"}
    for c in clips.values():  # the same audio gives the same transcript
        assert c["hypothesis"] == c["original_hypothesis"]
        if c["original_hypothesis"]:
            assert c["cer_vs_original"] == 0.0
    assert clips["u2"]["reference_text"] is None and clips["u2"]["cer"] is None  # no transcript
    assert clips["u0"]["cer"] == pytest.approx(cer("o gato preto", clips["u0"]["hypothesis"]), abs=1e-6)
    system = written["system"]
    assert system["n"] == 3 and system["n_with_transcript"] == 2
    assert system["dcer"] == 0.0 and system["dwer"] == 0.0 and system["cer"] == system["original_cer"]

    other = score_system(noisy, rec, lang="por", progress=False)
    assert other["system"]["cer_vs_original"] > 0  # noise changes what the recogniser hears
    assert other["system"]["dcer"] == pytest.approx(other["system"]["cer"] - other["system"]["original_cer"],
                                                    abs=1e-6)

    calls = []
    original = asr_module.SpeechRecognizer.transcribe
    monkeypatch.setattr(asr_module.SpeechRecognizer, "transcribe",
                        lambda self, wave: calls.append(1) or original(self, wave))
    score_system(copy, rec, lang="por", progress=False)
    assert not calls  # originals cached per corpus, clips logged per folder: nothing re-transcribed
    import soundfile as sf

    sf.write(noisy / "u1.wav", add_noise(corpus.wave("u1"), 10.0, seed=9), 16000, subtype="PCM_16")
    score_system(noisy, rec, lang="por", progress=False)
    assert len(calls) == 1  # only the clip whose bytes changed


def test_intelligibility_cli(ctc, corpus_and_systems, capsys):
    corpus, copy, noisy = corpus_and_systems
    with pytest.raises(SystemExit) as e:
        cli_main(["intelligibility", "--stimuli", str(copy), "--stimuli", str(noisy), "--lang", "por",
                  "--model", str(ctc), "--json"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["system"] for s in summary["systems"]] == ["copy", "noisy"]
    assert summary["systems"][0]["dcer"] == 0.0 and summary["model"]["adapter"] == "por"
    with pytest.raises(SystemExit) as e:
        cli_main(["intelligibility", "--stimuli", str(copy), "--lang", "xx-yy-zz!", "--model", str(ctc)])
    assert e.value.code == 2
