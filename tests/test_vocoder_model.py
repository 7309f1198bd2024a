"""Vocoder building blocks: output length, heads, discriminators, config, post-processing, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obt_eval.errors import BadInputError
from obt_eval.vocoder.config import GeneratorConfig, VocoderConfig, preset
from obt_eval.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from obt_eval.vocoder.generator import UnitGenerator
from obt_eval.vocoder.losses import mel_spectrogram
from obt_eval.vocoder.metrics import MCEP_ALPHA, f0_metrics, freqt, mcd, sp2mc
from obt_eval.vocoder.postprocess import OutputPolicy, apply_policy, integrated_loudness

# tiny convolutions are dominated by OpenMP start-up on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_generator(**changes) -> UnitGenerator:
    cfg = preset("tiny").generator
    for key, value in changes.items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    return UnitGenerator(cfg).eval()


@pytest.mark.parametrize("frames", [1, 7, 28])
def test_output_is_320_samples_per_unit(frames):
    gen = tiny_generator(num_units=10, num_speakers=3, f0_bins=4)
    units = torch.randint(0, 10, (2, frames))
    with torch.no_grad():
        wave = gen(units, torch.tensor([0, 2]), torch.randint(0, 5, (2, frames)))
    assert wave.shape == (2, 1, frames * 320)
    assert wave.abs().max() <= 1.0


def test_reference_generator_shape_and_size():
    cfg = GeneratorConfig(num_units=100)
    gen = UnitGenerator(cfg).eval()
    with torch.no_grad():
        assert gen(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 1, 960)
    # speech-resynthesis' CodeGenerator (128-d LUT, 512 channels) has about 13.6M parameters
    assert 13e6 < sum(p.numel() for p in gen.parameters()) < 14.5e6


def test_weight_norm_removal_keeps_output():
    gen = tiny_generator(num_units=10)
    units = torch.randint(0, 10, (1, 5))
    with torch.no_grad():
        before = gen(units)
        gen.remove_weight_norm()
        after = gen(units)
    assert torch.allclose(before, after, atol=1e-5)


def test_conditioned_generator_needs_its_inputs():
    gen = tiny_generator(num_units=10, num_speakers=2, f0_bins=3)
    with pytest.raises(ValueError, match="speaker"):
        gen(torch.zeros(1, 3, dtype=torch.long), None, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="F0"):
        gen(torch.zeros(1, 3, dtype=torch.long), torch.tensor([0]))


def test_duration_predictor_gives_at_least_one_frame():
    gen = tiny_generator(num_units=10, duration_predictor=True)
    dur = gen.predict_durations(torch.randint(0, 10, (2, 6)))
    assert dur.shape == (2, 6) and dur.dtype == torch.long and int(dur.min()) >= 1


def test_upsampling_must_make_320():
    with pytest.raises(BadInputError, match="320"):
        UnitGenerator(GeneratorConfig(upsample_rates=(5, 4, 4, 2), upsample_kernel_sizes=(11, 8, 8, 4)))


def test_discriminators_take_odd_lengths():
    cfg = preset("tiny").discriminator
    x = torch.randn(3, 1, 1001)
    for disc in (MultiPeriodDiscriminator(cfg), MultiScaleDiscriminator(cfg)):
        scores, fmaps = disc(x)
        assert len(scores) == len(fmaps) and all(s.shape[0] == 3 for s in scores)


def test_config_round_trips_through_json_types():
    cfg = preset("tiny")
    data = cfg.to_dict()
    data["generator"]["resblock_dilation_sizes"] = [[1, 3]]  # what JSON gives back
    assert VocoderConfig.from_dict(data) == cfg
    with pytest.raises(BadInputError, match="unknown"):
        VocoderConfig.from_dict({"train": {"stepz": 1}})


def test_mel_frames():
    cfg = preset("reference").mel
    mel = mel_spectrogram(torch.randn(2, 1, 8960), cfg)
    assert mel.shape == (2, 80, 8960 // 256)


def test_policy_gives_one_loudness_and_one_silence_margin():
    rng = np.random.default_rng(0)
    speech = (0.5 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) * rng.uniform(0.5, 1, 16000))
    loud = np.concatenate([np.zeros(4000), speech, np.zeros(800)]).astype(np.float32)
    quiet = np.concatenate([np.zeros(1600), 0.05 * speech, np.zeros(6000)]).astype(np.float32)
    policy = OutputPolicy()
    a, ia = apply_policy(loud, policy)
    b, ib = apply_policy(quiet, policy)
    core = slice(ia["pad"], -ia["pad"])
    assert abs(integrated_loudness(a[core]) - policy.loudness_lufs) < 0.5
    assert abs(integrated_loudness(b[core]) - policy.loudness_lufs) < 0.5
    assert abs(len(a) - len(b)) <= 256  # the different silences were trimmed alike
    assert ia["trim_start"] > 3000 and ib["trim_end"] > 5000
    assert np.all(a[: ia["pad"]] == 0) and np.all(b[-ib["pad"]:] == 0)


def test_freqt_identity_and_mcd():
    c = np.random.default_rng(0).standard_normal((4, 30))
    assert np.allclose(freqt(c, 29, 0.0), c)  # alpha 0 is no warping
    warped = freqt(c, 300, MCEP_ALPHA)  # the all-pass warp is undone by the opposite alpha (long enough order)
    assert not np.allclose(warped[:, :30], c) and np.allclose(freqt(warped, 29, -MCEP_ALPHA), c, atol=1e-9)
    assert np.allclose(freqt(c[:1], 24, MCEP_ALPHA), freqt(c, 24, MCEP_ALPHA)[:1])  # frames are independent
    sp = np.abs(np.random.default_rng(1).standard_normal((10, 513))) + 0.1
    mc = sp2mc(sp)
    path = np.stack([np.arange(10), np.arange(10)], axis=1)
    assert mcd(mc, mc, path) == 0.0
    assert mcd(mc, sp2mc(sp * 4.0), path) < 1e-6  # a gain changes c0 only, which MCD excludes
    assert mcd(mc, sp2mc(sp[::-1].copy()), path) > 0.1


def test_f0_metrics_count_gross_and_voicing_errors():
    ref = np.array([0, 100, 100, 100, 100, 0], float)
    syn = np.array([0, 100, 150, 100, 0, 100], float)  # one octave-ish error, two voicing flips
    m = f0_metrics(ref, syn)
    assert m["gpe"] == pytest.approx(1 / 3)
    assert m["vde"] == pytest.approx(2 / 6)
    assert m["ffe"] == pytest.approx(3 / 6)
    assert m["f0_rmse_hz"] == pytest.approx(np.sqrt(50**2 / 3))
