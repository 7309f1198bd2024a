"""Encoder plugins: a lab's own distribution registers an encoder through the `obt_eval.encoders` entry-point
group, and obt-eval lists it, resolves it and extracts with it, without any edit to obt-eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obt_eval.encoders import registry

PLUGIN_MODULE = '''
import torch

from obt_eval.encoders import Encoder, EncoderSpec


class EnergyEncoder(Encoder):
    """Frame log-energy on the wav2vec2 grid; layer 1 adds its negative as a second channel."""

    name = encoder_id = "lab-energy"
    licence = "MIT"

    @property
    def dim(self):
        return 2

    @property
    def layers(self):
        return [0, 1]

    def encode(self, waves, lengths, layers, stats=None):
        energy = waves.unfold(-1, 400, 320).pow(2).mean(-1).clamp_min(1e-10).log()
        out = {0: torch.stack([energy, energy], -1), 1: torch.stack([energy, -energy], -1)}
        return {k: out[k] for k in layers}


def make(spec, layers, device=None, dtype=None, revision=None):
    return EnergyEncoder()


SPEC = EncoderSpec("lab-energy", "lab-energy", "plugin", 1, 2, "MIT", "frame log-energy (a lab's own encoder)",
                   family="energy", num_layers=1, factory=make)
'''


def _install_distribution(site, name, entry_points, module_source=None):
    """A real installed distribution: a package plus <name>-0.1.dist-info with METADATA and entry_points.txt."""
    if module_source is not None:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(module_source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[obt_eval.encoders]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points))


@pytest.fixture
def lab_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_distribution(site, "labenc", [("energy", "labenc:SPEC")], PLUGIN_MODULE)
    # a second, broken plugin must be reported without hiding the good one
    _install_distribution(site, "brokenenc", [("broken", "brokenenc_missing:SPEC")])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_plugin_cache", None)
    yield site
    registry._plugin_cache = None


def test_a_plugin_distribution_registers_an_encoder(lab_plugin):
    specs, problems = registry.plugin_encoders(refresh=True)
    assert set(specs) == {"lab-energy"}
    spec = registry.resolve_encoder("lab-energy")
    assert spec.kind == "plugin" and spec.provider == "labenc" and spec.licence == "MIT"
    assert len(problems) == 1 and "brokenenc_missing" in problems[0]
    assert "lab-energy" in registry.registered_encoders() and "xlsr53" in registry.registered_encoders()


def test_plugin_encoder_extracts_like_a_builtin(lab_plugin, tone_corpus, workspace):
    from obt_eval.audio import load_16k
    from obt_eval.features.extract import extract_features

    stores = extract_features(tone_corpus, "lab-energy", None, workspace, progress=False)
    assert list(stores) == [1]  # the plugin's default layer
    store = stores[1]
    assert store.dim == 2 and store.meta["encoder"] == "lab-energy" and store.meta["licence"] == "MIT"
    for uid, path in zip(tone_corpus.ids, tone_corpus.manifest["audio_path"], strict=True):
        wave = load_16k(path).astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(wave, 400)[::320]
        energy = np.log(np.maximum((frames ** 2).mean(1), 1e-10))
        np.testing.assert_allclose(store.get(uid)[:, 0], energy, atol=2e-2, rtol=2e-3)
        np.testing.assert_allclose(store.get(uid)[:, 1], -store.get(uid)[:, 0])


def test_cli_lists_builtin_and_plugin_encoders_with_their_facts(lab_plugin, capsys):
    from obt_eval_cli.main import run

    assert run(["encoders", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["name"]: r for r in summary["encoders"]}
    for name in ("xlsr53", "mms-300m", "mms-1b", "w2v-bert-2.0", "mhubert-147", "xeus", "lab-energy"):
        assert {"checkpoint", "family", "default_layer", "num_layers", "dim", "frame_rate", "params_millions",
                "licence"} <= set(rows[name])
    assert rows["w2v-bert-2.0"]["licence"] == "MIT" and rows["w2v-bert-2.0"]["family"] == "wav2vec2-bert"
    assert rows["mhubert-147"]["licence"] == "CC-BY-NC-SA-4.0" and rows["mhubert-147"]["default_layer"] == 9
    assert rows["xeus"]["kind"] == "xeus" and rows["xeus"]["num_layers"] == 19
    assert rows["lab-energy"]["provider"] == "labenc"
    assert any("brokenenc" in p for p in summary["plugin_problems"])
    assert run(["encoders"]) == 0
    human = capsys.readouterr().out
    assert "w2v-bert-2.0" in human and "(plugin: labenc)" in human and "skipped plugin" in human
