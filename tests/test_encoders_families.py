"""w2v-BERT 2.0, mHuBERT-147-shaped HuBERT and XEUS: tiny random checkpoints saved by path, checked against
their full models' hidden states, directly and through `extract_features` (chunks, batches, the frame grid).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obt_eval.encoders import load_encoder
from obt_eval.encoders.huggingface import FBANK_GRID
from obt_eval.features.extract import ExtractOptions, extract_features

FP16_STD = 0.005  # stores are fp16: allowed error as a fraction of the features' standard deviation


def _save_w2v_bert(path):
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    torch.manual_seed(0)
    # the real checkpoint's architecture (relative_key positions, causal depthwise conv), scaled down
    config = Wav2Vec2BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                output_hidden_size=32, conv_depthwise_kernel_size=5, layerdrop=0.1)
    model = Wav2Vec2BertModel(config).eval()
    model.save_pretrained(path)
    SeamlessM4TFeatureExtractor().save_pretrained(path)
    return model


def _save_mhubert_like(path):
    """HuBERT base shape of utter-project/mHuBERT-147: group-norm CNN, post-LN, no conv bias, do_normalize."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                          feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False, layerdrop=0.1)
    model = HubertModel(config).eval()
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return model


def _reference(family, path, wave: np.ndarray) -> tuple:
    """The full model's hidden_states on the whole file, prepared by its own Hugging Face feature extractor."""
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(path).eval()
    extractor = AutoFeatureExtractor.from_pretrained(path)
    inputs = extractor(wave.astype(np.float32), sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        if family == "w2v-bert":
            out = model(inputs["input_features"], attention_mask=inputs["attention_mask"], output_hidden_states=True)
            valid = int(inputs["attention_mask"].sum())
            return tuple(h[0, :valid].numpy() for h in out.hidden_states)
        out = model(inputs["input_values"], output_hidden_states=True)  # group norm: no attention mask
        return tuple(h[0].numpy() for h in out.hidden_states)


SAVERS = {"w2v-bert": _save_w2v_bert, "mhubert": _save_mhubert_like}


@pytest.mark.parametrize("family", ["w2v-bert", "mhubert"])
def test_layer_k_is_the_full_models_hidden_states(tmp_path, family):
    SAVERS[family](tmp_path)
    rng = np.random.default_rng(3)
    for n in (16_000 + 1234, 9_000 + 77):  # lengths off both frame grids
        wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
        reference = _reference(family, tmp_path, wave)
        for layers in ([0], [2], [4], [1, 3]):
            encoder, _ = load_encoder(str(tmp_path), layers, device="cpu")
            assert len(encoder.model.encoder.layers) == max(layers)  # only the needed blocks are built
            out = encoder.encode(torch.from_numpy(wave)[None], torch.tensor([n]), layers)
            for k in layers:
                assert out[k].shape[1] == encoder.grid.frames(n) == reference[k].shape[0]
                np.testing.assert_allclose(out[k][0].numpy(), reference[k], atol=1e-4, rtol=1e-3)


def test_w2v_bert_frame_grid_is_the_feature_extractors():
    """Stacked fbank frames: frame i needs samples [320 i, 320 i + 560), so 1 s -> 49 frames, centred 17.5 ms."""
    from transformers import SeamlessM4TFeatureExtractor

    extractor = SeamlessM4TFeatureExtractor()
    for n in (560, 879, 880, 16_000, 16_160, 16_161, 48_000 + 555):
        mask = extractor(np.zeros(n, np.float32), sampling_rate=16_000, return_tensors="np")["attention_mask"]
        assert FBANK_GRID.frames(n) == int(mask.sum())
    assert FBANK_GRID.frames(16_000) == 49 and FBANK_GRID.rate == 50.0
    assert FBANK_GRID.offset_seconds == pytest.approx(0.0175)


def _tone_corpus(tmp_path, workspace, durations=(2.3, 0.7, 1.31)):
    from conftest import write_tone_wavs

    from obt_eval.corpus import Corpus
    from obt_eval.corpus.ingest import ingest

    write_tone_wavs(tmp_path / "wavs", durations=durations)
    ingest(tmp_path / "wavs", "fam", workspace, progress=False)
    return Corpus.open("fam", workspace)


@pytest.mark.parametrize("family", ["w2v-bert", "mhubert"])
def test_extracted_stores_match_the_full_model(tmp_path, workspace, family):
    """Through `extract`: padded batches (w2v-BERT) or one at a time (group norm), fp16, frame grid, metadata."""
    from obt_eval.audio import load_16k

    model_dir = tmp_path / "model"
    SAVERS[family](model_dir)
    corpus = _tone_corpus(tmp_path, workspace)
    stores = extract_features(corpus, str(model_dir), [2, 4], workspace, progress=False,
                              options=ExtractOptions(batch_seconds=100))
    offset = 0.0175 if family == "w2v-bert" else 0.0125
    assert stores[4].meta["frame_offset"] == pytest.approx(offset) and stores[4].meta["frame_rate"] == 50.0
    for uid, path in zip(corpus.ids, corpus.manifest["audio_path"], strict=True):
        reference = _reference(family, model_dir, load_16k(path))
        for k in (2, 4):
            stored = stores[k].get(uid).astype(np.float32)
            assert stored.shape == reference[k].shape
            assert np.abs(stored - reference[k]).max() / reference[k].std() < FP16_STD


def test_w2v_bert_padded_batches_and_chunks_do_not_leak(tmp_path, workspace):
    """One batch of different lengths equals one utterance at a time; 1 s chunks equal the whole file before
    attention (layer 0) away from the seams: the fbank statistics are the whole file's, not the chunk's."""
    from obt_eval.workspace import Workspace

    model_dir = tmp_path / "model"
    _save_w2v_bert(model_dir)
    corpus = _tone_corpus(tmp_path, workspace, durations=(3.1, 0.9, 1.7, 2.25))
    batched = extract_features(corpus, str(model_dir), [0, 3], workspace, progress=False,
                               options=ExtractOptions(batch_seconds=100, chunk_seconds=60))
    alone = extract_features(corpus, str(model_dir), [0, 3], Workspace.at(tmp_path / "ws2"), progress=False,
                             options=ExtractOptions(max_batch=1, chunk_seconds=60))
    chunked = extract_features(corpus, str(model_dir), [0], Workspace.at(tmp_path / "ws3"), progress=False,
                               options=ExtractOptions(chunk_seconds=1.0))
    for uid in corpus.ids:
        for k in (0, 3):
            np.testing.assert_allclose(batched[k].get(uid), alone[k].get(uid), atol=2e-2, rtol=1e-2)
        whole, cut = batched[0].get(uid), chunked[0].get(uid)
        assert whole.shape == cut.shape
        np.testing.assert_allclose(whole, cut, atol=1e-2, rtol=1e-2)  # layer 0 is frame-local for w2v-BERT


# ------------------------------------------------------------------------------------------------ XEUS


def _tiny_xeus_config() -> dict:
    """XEUS's architecture (wav2vec2 CNN front end, linear pre-encoder, conv positions, macaron
    E-Branchformer, HuBERT loss, masking util) at toy width, as an ESPnet SSL training config."""
    conv = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2
    return {
        "token_list": [str(i) for i in range(8)],
        "frontend": "wav2vec_cnn",
        "frontend_conf": {"norm_mode": "layer_norm", "conv_mode": "standard", "bias": True, "normalize_audio": True,
                          "normalize_output": True, "shapes": conv},
        "normalize": None,
        "preencoder": "linear", "preencoder_conf": {"input_size": 16, "output_size": 32},
        "encoder": "e_branchformer",
        "encoder_conf": {"output_size": 32, "attention_heads": 2, "attention_layer_type": "selfattn",
                         "pos_enc_layer_type": "conv", "rel_pos_type": "latest", "cgmlp_linear_units": 64,
                         "cgmlp_conv_kernel": 7, "use_linear_after_conv": False, "gate_activation": "identity",
                         "num_blocks": 4, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                         "attention_dropout_rate": 0.1, "input_layer": None, "layer_drop_rate": 0.1,
                         "linear_units": 64, "positionwise_layer_type": "linear", "use_ffn": True,
                         "macaron_ffn": True, "merge_conv_kernel": 7, "use_flash_attn": False},
        "loss": [{"name": "hubert", "conf": {"num_classes": 8, "final_dim": 16}}],
        "util": [{"name": "mask", "conf": {"mask_prob": 0.5}}],
    }


def _save_tiny_xeus(root):
    """The Hub snapshot layout: <root>/model/config.yaml + <root>/model/xeus_checkpoint.pth, built by SSLTask."""
    import yaml

    from obt_eval.encoders.xeus import _namespace, import_ssl_task

    config = _tiny_xeus_config()
    torch.manual_seed(0)
    model = import_ssl_task().build_model(_namespace(config)).eval()
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), root / "model" / "xeus_checkpoint.pth")
    return model


def _xeus_reference(model, wave: np.ndarray) -> list[np.ndarray]:
    """The full ESPnet model's per-layer outputs: [layer 0 (input of block 1), block 1 output, ...]."""
    x = torch.from_numpy(wave.astype(np.float32))[None]
    lengths = torch.tensor([wave.size])
    with torch.no_grad():
        _, all_hs, _ = model.inference_encode(x, lengths, use_mask=False)
        feats, flens = model.frontend(x, lengths)
        feats, flens = model.preencoder(feats, flens)
        layer0 = model.encoder.embed(feats)
    return [layer0[0].numpy()] + [h[0].numpy() for h in all_hs]


def test_xeus_layers_are_the_full_espnet_models(tmp_path):
    pytest.importorskip("espnet2", reason="XEUS needs the optional xeus extra (ESPnet)")
    full = _save_tiny_xeus(tmp_path)
    rng = np.random.default_rng(5)
    wave = (0.1 * rng.standard_normal(16_000 + 4321)).astype(np.float32)
    reference = _xeus_reference(full, wave)
    assert len(reference) == 5
    for layers in ([0], [2], [4], [1, 3]):
        encoder, _ = load_encoder(str(tmp_path), layers, device="cpu")
        assert len(encoder.model.encoder.encoders) == max(max(layers), 1)
        assert not encoder.model.training and encoder.pads_exactly is False
        out = encoder.encode(torch.from_numpy(wave)[None], torch.tensor([wave.size]), layers)
        for k in layers:
            assert out[k].shape == (1, encoder.grid.frames(wave.size), 32)
            np.testing.assert_allclose(out[k][0].numpy(), reference[k], atol=1e-4, rtol=1e-3)
    assert encoder.revision.startswith("sha256:")


def test_xeus_extracts_through_the_feature_store(tmp_path, workspace):
    pytest.importorskip("espnet2", reason="XEUS needs the optional xeus extra (ESPnet)")
    from obt_eval.audio import load_16k

    full = _save_tiny_xeus(tmp_path / "xeus")
    corpus = _tone_corpus(tmp_path, workspace)
    stores = extract_features(corpus, str(tmp_path / "xeus"), [3], workspace, progress=False)
    for uid, path in zip(corpus.ids, corpus.manifest["audio_path"], strict=True):
        reference = _xeus_reference(full, load_16k(path))[3]
        stored = stores[3].get(uid).astype(np.float32)
        assert stored.shape == reference.shape
        assert np.abs(stored - reference).max() / reference.std() < FP16_STD


def test_xeus_checkpoint_that_does_not_fit_its_config_is_refused(tmp_path):
    pytest.importorskip("espnet2", reason="XEUS needs the optional xeus extra (ESPnet)")
    import yaml

    from obt_eval.errors import BadInputError

    _save_tiny_xeus(tmp_path)
    config = _tiny_xeus_config()
    config["encoder_conf"]["num_blocks"] = 5  # one block more than the weights hold
    (tmp_path / "model" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(BadInputError, match="encoder weights missing"):
        load_encoder(str(tmp_path), [2], device="cpu")


def test_xeus_without_espnet_names_the_install_command(tmp_path, monkeypatch):
    """An ESPnet checkpoint folder resolves to the XEUS loader; without ESPnet the error says how to install it."""
    import sys

    import yaml

    from obt_eval.encoders import resolve_encoder
    from obt_eval.errors import BadInputError

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.yaml").write_text(yaml.safe_dump(_tiny_xeus_config()))
    (tmp_path / "model" / "xeus_checkpoint.pth").write_bytes(b"not read")
    assert resolve_encoder(str(tmp_path)).kind == "xeus"
    monkeypatch.setitem(sys.modules, "espnet2", None)  # as if ESPnet were not installed
    monkeypatch.setitem(sys.modules, "espnet2.tasks", None)
    monkeypatch.setitem(sys.modules, "espnet2.tasks.ssl", None)
    with pytest.raises(BadInputError, match="needs ESPnet") as err:
        load_encoder(str(tmp_path), [2], device="cpu")
    assert "--no-deps espnet==202511" in err.value.hint
