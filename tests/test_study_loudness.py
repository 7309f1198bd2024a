"""Study loudness step: silent, NaN or near-silent clips are refused by name (system, utterance, file, loudness,
the gain they would need), or left out with --allow-partial; never boosted by 40 dB into a study."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
from study_helpers import SR, make_system_folders

from obt_eval.errors import BadInputError
from obt_eval.study.config import DesignConfig, LoudnessConfig
from obt_eval.study.design import StimulusKey
from obt_eval.study.loudness import loudness_lufs
from obt_eval.study.prepare import prepare_study
from obt_eval.study.render import render_stimuli
from obt_eval.study.sources import scan_system
from obt_eval.vocoder.postprocess import OutputPolicy, UnusableClip, apply_policy
from obt_eval.workspace import Workspace
from obt_eval_cli.main import run as cli_run

DESIGN = DesignConfig(target_ratings=2, trials_per_block=4, seed=1)


def _noise_at(lufs: float, seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    """White noise scaled to `lufs` integrated loudness (what an untrained vocoder's hiss looks like)."""
    wave = np.random.default_rng(seed).normal(0, 0.1, int(seconds * SR))
    return (wave * 10 ** ((lufs - loudness_lufs(wave, SR)) / 20)).astype(np.float32)


@pytest.fixture
def folders(tmp_path):
    return make_system_folders(tmp_path / "wavs", {"xlsr53": 0.2, "mms-300m": 0.8}, utterances=5)


def _prepare(tmp_path, folders, **kw):
    return prepare_study("pilot", [(n, str(d)) for n, d in folders.items()], workspace=Workspace.at(tmp_path / "ws"),
                         design=DESIGN, progress=False, **kw)


@pytest.mark.parametrize("kind", ["zeros", "nan"])
def test_a_silent_or_nan_clip_is_refused_by_name_before_any_audio_is_written(tmp_path, folders, kind):
    bad = folders["mms-300m"] / "utt02.wav"
    wave = np.zeros(int(0.6 * SR), np.float32)
    if kind == "nan":
        wave[100:200] = np.nan
    sf.write(bad, wave, SR, subtype="FLOAT")
    with pytest.raises(BadInputError) as caught:
        _prepare(tmp_path, folders)
    message = str(caught.value)
    assert "1 clip cannot be loudness-normalised" in message
    assert "system 'mms-300m', utterance 'utt02'" in message and str(bad.resolve()) in message
    assert ("silent (loudness -inf LUFS" if kind == "zeros" else "NaN or infinite samples") in message
    assert "--allow-partial" in message and "xlsr53" not in message
    assert not (tmp_path / "ws" / "studies" / "pilot" / "audio").exists()


def test_a_near_silent_clip_names_its_loudness_and_the_gain_it_would_need(tmp_path, folders):
    sf.write(folders["xlsr53"] / "utt01.wav", _noise_at(-62.7), SR)
    sf.write(folders["mms-300m"] / "utt03.wav", _noise_at(-66.0, seed=1), SR)  # just above the -70 LUFS gate
    with pytest.raises(BadInputError) as caught:
        _prepare(tmp_path, folders)
    message = str(caught.value)
    assert "2 clips cannot be loudness-normalised" in message
    found = {m[0]: (float(m[1]), float(m[2])) for m in re.findall(
        r"system '([^']+)', utterance '[^']+' \([^)]+\): near-silent \((-?[\d.]+) LUFS\): reaching -23 LUFS "
        r"needs \+([\d.]+) dB, above the maximum gain of 30 dB", message)}
    assert set(found) == {"xlsr53", "mms-300m"}
    for system, expected in (("xlsr53", -62.7), ("mms-300m", -66.0)):
        lufs, gain = found[system]
        assert abs(lufs - expected) < 0.5 and gain == pytest.approx(-23 - lufs, abs=0.11)


def test_the_study_and_synthesize_draw_the_line_at_the_same_gain(tmp_path, folders):
    quiet, too_quiet = _noise_at(-50.0), _noise_at(-56.0, seed=2)  # need +27 dB and +33 dB
    policy = OutputPolicy()
    assert LoudnessConfig().max_gain_db == policy.max_gain_db
    apply_policy(quiet, policy)  # synthesize keeps it ...
    with pytest.raises(UnusableClip):
        apply_policy(too_quiet, policy)  # ... and refuses this one
    sf.write(folders["mms-300m"] / "utt00.wav", quiet, SR)
    prepared = _prepare(tmp_path, folders)
    gains = {(s["system"], s["utterance"]): s["gain_db"] for s in prepared.stimuli if s["variant"] == ""}
    assert 26 < gains[("mms-300m", "utt00")] <= 30
    sf.write(folders["mms-300m"] / "utt00.wav", too_quiet, SR)
    with pytest.raises(BadInputError, match="near-silent"):
        prepare_study("again", [(n, str(d)) for n, d in folders.items()], workspace=Workspace.at(tmp_path / "ws"),
                      design=DESIGN, progress=False)


def test_allow_partial_leaves_the_utterance_out_for_every_system_and_says_which(tmp_path, folders):
    sf.write(folders["xlsr53"] / "utt01.wav", _noise_at(-62.7), SR)
    sf.write(folders["mms-300m"] / "utt04.wav", np.zeros(int(0.6 * SR), np.float32), SR)
    prepared = _prepare(tmp_path, folders, allow_partial=True)
    assert prepared.design["utterances"] == ["utt00", "utt02", "utt03"]
    assert {s["utterance"] for s in prepared.stimuli} == {"utt00", "utt02", "utt03"}
    (warning,) = [w for w in prepared.warnings if w.startswith("left out")]
    assert "left out 2 utterances for every system" in warning
    assert "system 'xlsr53', utterance 'utt01'" in warning and "system 'mms-300m', utterance 'utt04'" in warning
    assert max(s["gain_db"] for s in prepared.stimuli) <= LoudnessConfig().max_gain_db
    # every clip of every utterance unusable: nothing left to compare
    for path in folders["xlsr53"].glob("*.wav"):
        sf.write(path, np.zeros(int(0.6 * SR), np.float32), SR)
    with pytest.raises(BadInputError, match="no utterance is left"):
        prepare_study("empty", [(n, str(d)) for n, d in folders.items()], workspace=Workspace.at(tmp_path / "ws"),
                      design=DESIGN, progress=False, allow_partial=True)


def test_render_alone_also_refuses_a_silent_clip_by_name(tmp_path, folders):
    sf.write(folders["xlsr53"] / "utt00.wav", np.zeros(int(0.6 * SR), np.float32), SR)
    sources = {n: scan_system(n, d) for n, d in folders.items()}
    keys = [StimulusKey(n, "utt00", "") for n in folders]
    with pytest.raises(BadInputError, match=r"system 'xlsr53', utterance 'utt00' \(.*utt00.wav\): silent"):
        render_stimuli(keys, sources, tmp_path / "out", seed=0, progress=False)


def test_cli_study_create_prints_the_clip_and_exits_2(tmp_path, folders, capsys):
    sf.write(folders["mms-300m"] / "utt02.wav", _noise_at(-62.7), SR)
    args = ["study", "create", "--name", "pilot", "--system", f"xlsr53={folders['xlsr53']}",
            "--system", f"mms-300m={folders['mms-300m']}", "--workspace", str(tmp_path / "ws"),
            "--db", f"sqlite:///{tmp_path / 'study.db'}", "--json"]
    capsys.readouterr()
    assert cli_run(args) == 2
    err = capsys.readouterr().err
    assert "system 'mms-300m', utterance 'utt02'" in err and "near-silent" in err and "Traceback" not in err
    assert "what to do:" in err and "--allow-partial" in err
    assert cli_run([*args[:-1], "--allow-partial", "--json"]) == 0
    assert "left out 1 utterance for every system" in capsys.readouterr().out
