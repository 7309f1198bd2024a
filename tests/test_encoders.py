"""Encoders: the layer convention against the full model, the registry, and the spectral baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import save_tiny_model, tiny_wav2vec2_config

from obt_eval.encoders import ENCODERS, load_encoder, resolve_encoder
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.frames import num_frames


def _normalised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


def _full_hidden_states(model, wave: np.ndarray):
    with torch.no_grad():
        mask = torch.ones(1, wave.size, dtype=torch.long)
        out = model(torch.from_numpy(_normalised(wave))[None], attention_mask=mask, output_hidden_states=True)
    return out.hidden_states


@pytest.mark.parametrize(
    "kind",
    ["wav2vec2-stable-ln", "wav2vec2-post-ln", "hubert", "wavlm"],
)
def test_layer_k_equals_untruncated_hidden_states(tmp_path, kind):
    """Layer k of the truncated encoder is the full model's hidden_states[k] (raw block output)."""
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    shape = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer")
    model_cls, config = {
        "wav2vec2-stable-ln": (None, tiny_wav2vec2_config()),
        "wav2vec2-post-ln": (None, tiny_wav2vec2_config(do_stable_layer_norm=False)),
        "hubert": (HubertModel, HubertConfig(**shape, do_stable_layer_norm=True)),
        "wavlm": (WavLMModel, WavLMConfig(**shape, do_stable_layer_norm=True, num_buckets=32, max_bucket_distance=80)),
    }[kind]
    full = save_tiny_model(tmp_path, model_cls, config)
    wave = np.random.default_rng(1).standard_normal(16_000 + 1234).astype(np.float32) * 0.1
    reference = _full_hidden_states(full, wave)
    for layers in ([0], [2], [4], [0, 1, 3]):
        encoder, _ = load_encoder(str(tmp_path), layers, device="cpu")
        assert len(encoder.model.encoder.layers) == max(layers)  # blocks past the deepest layer are not built
        out = encoder.encode(torch.from_numpy(wave)[None], torch.tensor([wave.size]), layers)
        for k in layers:
            assert out[k].shape == (1, num_frames(wave.size), 32)
            torch.testing.assert_close(out[k], reference[k], atol=1e-5, rtol=1e-4)
    # and the final LayerNorm'd output is *not* what layer 4 returns for a stable-LN model
    if config.do_stable_layer_norm:
        with torch.no_grad():
            last = full(torch.from_numpy(_normalised(wave))[None]).last_hidden_state
        assert not torch.allclose(last, reference[4], atol=1e-3)


def test_encoder_is_in_eval_mode_and_deterministic(tiny_wav2vec2):
    encoder, _ = load_encoder(str(tiny_wav2vec2), [3])
    assert not encoder.model.training
    wave = torch.randn(1, 8000)
    a = encoder.encode(wave, torch.tensor([8000]), [3])[3]
    b = encoder.encode(wave, torch.tensor([8000]), [3])[3]
    assert torch.equal(a, b)  # no dropout / LayerDrop at inference
    assert encoder.revision and encoder.revision.startswith("sha256:")


def test_registry_defaults_and_errors(tiny_wav2vec2):
    assert ENCODERS["xlsr53"].source == "facebook/wav2vec2-large-xlsr-53" and ENCODERS["xlsr53"].default_layer == 14
    assert ENCODERS["mms-300m"].default_layer == 14 and ENCODERS["mms-300m"].dim == 1024
    assert ENCODERS["mms-1b"].default_layer == 24 and ENCODERS["mms-1b"].dim == 1280
    assert "NC" in ENCODERS["mms-1b"].licence and ENCODERS["xlsr53"].licence == "Apache-2.0"
    assert resolve_encoder(str(tiny_wav2vec2)).kind == "huggingface"
    with pytest.raises(NotFoundError, match="unknown encoder"):
        resolve_encoder("no-such-encoder")
    with pytest.raises(BadInputError, match="layers 0..4"):
        load_encoder(str(tiny_wav2vec2), [5])
    with pytest.raises(BadInputError, match="no layers"):
        load_encoder("mfcc", [3])
    # an unregistered checkpoint defaults to its middle layer
    _, layers = load_encoder(str(tiny_wav2vec2))
    assert layers == [2]


@pytest.mark.parametrize("name,dim", [("mfcc", 39), ("logmel", 80)])
def test_spectral_baselines_share_the_frame_grid(name, dim):
    encoder, layers = load_encoder(name)
    lengths = torch.tensor([16_000, 9_000, 400])
    waves = torch.randn(3, 16_000) * 0.1
    for i, n in enumerate(lengths.tolist()):
        waves[i, n:] = 0
    out = encoder.encode(waves, lengths, layers)[None]
    assert out.shape[-1] == dim == encoder.dim
    for i, n in enumerate(lengths.tolist()):
        alone = encoder.encode(waves[i : i + 1, :n], lengths[i : i + 1], layers)[None]
        assert alone.shape[1] == num_frames(n)  # 1 s -> 49 frames, 400 samples -> 1 frame
        torch.testing.assert_close(out[i, : num_frames(n)], alone[0], atol=1e-4, rtol=1e-4)
