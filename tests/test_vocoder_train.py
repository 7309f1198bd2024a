"""Vocoder training: the loss falls, a killed run resumes exactly, other units are refused, A/B CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from obt_eval.errors import BadInputError
from obt_eval.units.store import UnitsStore
from obt_eval.vocoder.checkpoint import latest_checkpoint, load_checkpoint
from obt_eval.vocoder.config import preset
from obt_eval.vocoder.toy import make_toy_corpus
from obt_eval.vocoder.train import train_vocoder
from obt_eval_cli.main import main as cli_main

# tiny convolutions are dominated by OpenMP start-up on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    units, corpus = make_toy_corpus(root, num_utterances=4, seconds=0.6)
    return root, units, corpus


def test_loss_falls_when_overfitting_one_utterance(tmp_path):
    units, _ = make_toy_corpus(tmp_path, num_utterances=1, seconds=0.6)
    cfg = preset("tiny")
    cfg.train = replace(cfg.train, learning_rate=5e-3, validate_every=40, checkpoint_every=1000, log_every=10)
    mel: list[float] = []
    result = train_vocoder(units, tmp_path / "voc", cfg, steps=40, progress=False,
                           on_step=lambda step, losses: mel.append(losses["mel_l1"]))
    assert result.step == 40 and len(mel) == 40
    assert np.mean(mel[-5:]) < 0.5 * np.mean(mel[:5])
    log = pd.read_csv(tmp_path / "voc" / "train_log.csv")
    assert log["step"].tolist() == [10, 20, 30, 40]
    assert (tmp_path / "voc" / "curves.png").stat().st_size > 1000
    assert list((tmp_path / "voc" / "samples" / "step-00000040").glob("*.wav"))


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_parameters(toy, tmp_path):
    _, units, corpus = toy
    cfg = preset("tiny")
    cfg.train = replace(cfg.train, checkpoint_every=3, validate_every=100, log_every=1)
    kwargs = {"corpus": corpus, "speakers": True, "f0": True, "durations": True, "progress": False}

    def kill_at_5(step, losses):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train_vocoder(units, tmp_path / "a", cfg, steps=6, on_step=kill_at_5, **kwargs)
    assert load_checkpoint(latest_checkpoint(tmp_path / "a"))["step"] == 3
    resumed = train_vocoder(units, tmp_path / "a", cfg, steps=6, **kwargs)
    straight = train_vocoder(units, tmp_path / "b", cfg, steps=6, **kwargs)
    assert resumed.resumed_from == 3 and resumed.step == straight.step == 6

    a = load_checkpoint(latest_checkpoint(tmp_path / "a"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    for part in ("generator", "mpd", "msd"):
        for key, value in b[part].items():
            assert torch.allclose(a[part][key], value, atol=1e-6), f"{part}.{key} differs after resume"
    # the curve has no repeated steps and matches the uninterrupted one
    la = pd.read_csv(tmp_path / "a" / "train_log.csv")
    lb = pd.read_csv(tmp_path / "b" / "train_log.csv")
    assert la["step"].tolist() == list(range(1, 7))
    assert np.allclose(la["mel_l1"], lb["mel_l1"], atol=1e-5)


def test_resume_refuses_units_from_another_codebook(toy, tmp_path):
    root, units, corpus = toy
    cfg = preset("tiny")
    train_vocoder(units, tmp_path / "voc", cfg, corpus=corpus, steps=1, progress=False)
    other = UnitsStore.write(tmp_path / "other", {u: units.get(u) for u in units.ids},
                             units.codebook + 1.0, units.meta)
    with pytest.raises(BadInputError, match="other units"):
        train_vocoder(other, tmp_path / "voc", cfg, corpus=corpus, steps=2, progress=False)
    with pytest.raises(BadInputError, match="different settings"):
        train_vocoder(units, tmp_path / "voc", cfg, corpus=corpus, steps=2, speakers=True, progress=False)


def test_train_vocoders_cli_trains_one_per_encoder_alike(toy, tmp_path, capsys):
    root, units, corpus = toy
    second = UnitsStore.write(tmp_path / "enc-b", {u: units.get(u) for u in units.ids[:3]},
                              units.codebook * 2.0, units.meta)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train-vocoders", "--units", f"a={units.path}", "--units", f"b={second.path}",
                  "--preset", "tiny", "--steps", "2", "--workspace", str(tmp_path / "ws"), "--json"])
    assert exit_info.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["utterances"] == 3 and set(summary["vocoders"]) == {"a", "b"}
    configs = [json.loads((tmp_path / "ws" / "vocoders" / f"vocoder-{e}" / "config.json").read_text())
               for e in ("a", "b")]
    assert configs[0]["config"] == configs[1]["config"]
    assert configs[0]["meta"]["validation_ids"] == configs[1]["meta"]["validation_ids"]
    assert configs[0]["meta"]["codebook_hash"] != configs[1]["meta"]["codebook_hash"]


def test_train_vocoders_cli_needs_units_for_each_encoder(toy, tmp_path, capsys):
    _, units, _ = toy
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train-vocoders", "--units", f"a={units.path}", "--encoders", "a,b", "--preset", "tiny",
                  "--workspace", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no --units given for encoder(s) b" in capsys.readouterr().err


def test_second_training_on_the_same_folder_is_refused(toy, tmp_path):
    import os

    _, units, corpus = toy
    out = tmp_path / "voc"
    out.mkdir()
    (out / ".train.lock").write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(BadInputError, match="another training"):
        train_vocoder(units, out, preset("tiny"), corpus=corpus, steps=1, progress=False)
    (out / ".train.lock").write_text("999999999")  # a dead one: its lock is stale
    assert train_vocoder(units, out, preset("tiny"), corpus=corpus, steps=1, progress=False).step == 1
    assert not (out / ".train.lock").exists()
