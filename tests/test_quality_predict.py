"""predict-mos: DNSMOS and Distill-MOS on their real weights per clip and per system; UTMOSv2's Hub error;
rank agreement with human MOS."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import soundfile as sf
from mms_helpers import add_noise, real_speech

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.quality import predict as predict_module
from obt_eval.quality.agreement import rank_agreement
from obt_eval.quality.dnsmos import Dnsmos
from obt_eval.quality.predict import load_judges, predict_system
from obt_eval_cli.main import main as cli_main

needs_distillmos = pytest.mark.skipif(importlib.util.find_spec("distillmos") is None,
                                      reason="pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0")


def clip_95(wave: np.ndarray) -> np.ndarray:
    """9.5 s of the recording repeated: DNSMOS scores one window at its reference hop."""
    return np.tile(wave, 11)[: int(9.5 * 16000)]


@pytest.fixture
def systems(tmp_path):
    clean = real_speech()
    folders = {}
    for name, transform in {"clean": lambda w: w, "noisy": lambda w: add_noise(w, 3.0, seed=5)}.items():
        folder = tmp_path / name
        folder.mkdir()
        for i in range(2):
            sf.write(folder / f"utt{i}.wav", clip_95(transform(np.roll(clean, 2000 * i))), 16000, subtype="PCM_16")
        folders[name] = folder
    return folders


@needs_distillmos
def test_distillmos_runs_without_torchaudio():
    from obt_eval.quality.distillmos import DistillMos

    judge = DistillMos()
    clean = real_speech()
    assert judge.score(clean)["distillmos"] > judge.score(add_noise(clean, 5.0))["distillmos"]
    about = judge.describe()
    assert about["revision"].startswith("distillmos ") and about["files"]["distill_mos_v7.pt"].startswith("sha256:")
    assert "torchaudio" not in sys.modules  # the placeholder used while importing is gone


@needs_distillmos
def test_predicted_mos_per_clip_and_system_resumes(systems, monkeypatch):
    from obt_eval.quality.distillmos import DistillMos

    judges = [Dnsmos(threads=1), DistillMos()]
    clean = predict_system(systems["clean"], judges, progress=False)
    noisy = predict_system(systems["noisy"], judges, progress=False)
    written = json.loads((systems["clean"] / "predicted_mos.json").read_text())
    assert set(written["judges"]) == {"dnsmos", "distillmos"} and written["judges"]["dnsmos"]["revision"]
    assert [c["utterance"] for c in written["clips"]] == ["utt0", "utt1"]
    for c in written["clips"]:
        assert {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "distillmos", "checksum"} <= set(c)
    assert written["system"]["n"] == 2
    assert written["system"]["dnsmos_ovrl"] == pytest.approx(np.mean([c["dnsmos_ovrl"] for c in written["clips"]]),
                                                             abs=1e-3)
    for col in ("dnsmos_ovrl", "distillmos"):
        assert clean["system"][col] > noisy["system"][col]

    calls = []
    for cls in (Dnsmos, DistillMos):
        monkeypatch.setattr(cls, "score", (lambda real: lambda self, wave: calls.append(self.name) or real(self, wave))(
            cls.score))
    again = predict_system(systems["clean"], judges, progress=False)
    assert not calls and again["clips"] == clean["clips"]  # every score came from the resume log
    sf.write(systems["clean"] / "utt1.wav", clip_95(add_noise(real_speech(), 0.0)), 16000, subtype="PCM_16")
    changed = predict_system(systems["clean"], judges, progress=False)
    assert sorted(calls) == ["distillmos", "dnsmos"]  # only the changed file, once per judge
    assert changed["clips"][0] == clean["clips"][0] and changed["clips"][1]["checksum"] != clean["clips"][1]["checksum"]


def test_judge_selection_and_utmos_needs_the_hub(monkeypatch):
    judges, skipped = load_judges("dnsmos")
    assert [j.name for j in judges] == ["dnsmos"] and not skipped
    with pytest.raises(NotFoundError, match="UTMOSv2") as err:
        load_judges("utmosv2")
    assert "pip install" in str(err.value) or "Hub" in str(err.value)
    with pytest.raises(BadInputError, match="unknown judge"):
        load_judges("dnsmos,nonexistent")
    monkeypatch.setattr(predict_module, "OFFLINE_JUDGES", ("dnsmos", "utmosv2"))
    judges, skipped = load_judges("auto")  # `auto` goes on without a judge that cannot load, and says why
    assert [j.name for j in judges] == ["dnsmos"] and "UTMOSv2" in skipped["utmosv2"]


def test_rank_agreement():
    human = {"a": 4.1, "b": 3.2, "c": 2.0, "d": 1.5}
    assert rank_agreement({"a": 3.9, "b": 3.0, "c": 2.9, "d": 1.0}, human)["spearman"] == 1.0
    reverse = rank_agreement({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, human)
    assert reverse["spearman"] == -1.0 and reverse["kendall"] == -1.0
    few = rank_agreement({"a": 1.0, "b": 2.0, "x": 3.0}, human)
    assert few["spearman"] is None and few["n_systems"] == 2 and "three" in few["reason"]


def test_predict_mos_cli(systems, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["predict-mos", "--stimuli", str(systems["clean"]), "--stimuli", str(systems["noisy"]),
                  "--judges", "dnsmos", "--json"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    by = {s["system"]: s for s in summary["systems"]}
    assert by["clean"]["dnsmos_ovrl"] > by["noisy"]["dnsmos_ovrl"] and by["clean"]["n"] == 2
    with pytest.raises(SystemExit) as e:
        cli_main(["predict-mos", "--stimuli", str(systems["clean"]), "--judges", "utmosv2"])
    assert e.value.code == 2


class LoudnessJudge:
    """A transparent judge (RMS level in dB) to check the per-clip/per-system bookkeeping exactly."""

    name = "rms"
    columns = ("rms_db",)

    def describe(self):
        return {"model": "rms", "revision": "1"}

    def score(self, wave):
        return {"rms_db": float(20 * np.log10(np.sqrt(np.mean(wave**2)) + 1e-12))}


def test_system_means_and_missing_clips_are_reported(tmp_path):
    import pandas as pd

    folder = tmp_path / "sys"
    folder.mkdir()
    levels = {"a": 0.1, "b": 0.3}
    for uid, amp in levels.items():
        sf.write(folder / f"{uid}.wav", (amp * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    pd.DataFrame({"id": ["a", "b", "c"], "file": ["a.wav", "b.wav", "c.wav"]}).to_csv(folder / "stimuli.csv",
                                                                                       index=False)
    result = predict_system(folder, [LoudnessJudge()], progress=False)
    assert [c["utterance"] for c in result["clips"]] == ["a", "b"]
    assert [p["id"] for p in result["problems"]] == ["c"] and "missing" in result["problems"][0]["problem"]
    expected = np.mean([20 * np.log10(a / np.sqrt(2)) for a in levels.values()])
    assert result["system"]["rms_db"] == pytest.approx(expected, abs=0.05) and result["system"]["n"] == 2
