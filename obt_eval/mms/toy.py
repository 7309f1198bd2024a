"""Tiny random-weight MMS-style checkpoints (LID, CTC ASR with language adapters, VITS TTS) for offline tries.

They are written with `save_pretrained` in the layout of the real ones (`facebook/mms-lid-256`,
`facebook/mms-1b-all` with `adapter.<lang>.safetensors` files and a nested per-language vocabulary,
`facebook/mms-tts-<iso>`), so loading them by path runs the same code as the Hub ids. Their outputs are
noise: they test plumbing, never languages. The TTS toy speaks at 22.05 kHz so resampling is exercised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyzáâãàçéêíóôõúñỹẽĩũ'"


def _tiny_wav2vec2_config(**overrides):
    from transformers import Wav2Vec2Config

    params = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, do_stable_layer_norm=True, feat_extract_norm="layer",
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, layerdrop=0.0)
    params.update(overrides)
    return Wav2Vec2Config(**params)


def _feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True)


def make_lid(out: str | os.PathLike, labels: list[str], seed: int = 0) -> Path:
    """A `Wav2Vec2ForSequenceClassification` with ISO 639-3 labels, like facebook/mms-lid-*."""
    from transformers import Wav2Vec2ForSequenceClassification

    out = Path(out)
    torch.manual_seed(seed)
    config = _tiny_wav2vec2_config(num_labels=len(labels), id2label=dict(enumerate(labels)),
                                   label2id={lab: i for i, lab in enumerate(labels)}, classifier_proj_size=16)
    Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(out)
    _feature_extractor().save_pretrained(out)
    return out


def make_ctc(out: str | os.PathLike, languages: list[str], seed: int = 0) -> Path:
    """A `Wav2Vec2ForCTC` with attention adapters and one `adapter.<lang>.safetensors` per language (own
    vocabulary size each), plus a nested per-language `vocab.json`, like facebook/mms-1b-all."""
    from safetensors.torch import save_file
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>", "<unk>", "|"]
    vocab = {}
    for i, lang in enumerate(languages):
        letters = LETTERS[: 20 + 3 * i]  # a different vocabulary size per language, as in mms-1b-all
        vocab[lang] = {tok: j for j, tok in enumerate(specials + list(letters))}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), target_lang=languages[0])
    Wav2Vec2Processor(feature_extractor=_feature_extractor(), tokenizer=tokenizer).save_pretrained(out)
    torch.manual_seed(seed)
    config = _tiny_wav2vec2_config(adapter_attn_dim=8, vocab_size=len(vocab[languages[0]]), pad_token_id=0)
    model = Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(out)
    for lang in languages:
        weights = {}
        for name, param in model._get_adapters().items():
            shape = list(param.shape)
            if name.startswith("lm_head"):
                shape[0] = len(vocab[lang])
            weights[name] = torch.randn(shape) * (0.5 if name.startswith("lm_head") else 0.05)
        save_file(weights, str(out / f"adapter.{lang}.safetensors"))
    return out


def make_plain_ctc(out: str | os.PathLike, seed: int = 0) -> Path:
    """A one-language `Wav2Vec2ForCTC` without adapters (any fine-tuned wav2vec2 CTC checkpoint)."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {tok: j for j, tok in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS[:26]])}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"))
    Wav2Vec2Processor(feature_extractor=_feature_extractor(), tokenizer=tokenizer).save_pretrained(out)
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(_tiny_wav2vec2_config(vocab_size=len(vocab), pad_token_id=0)).eval().save_pretrained(out)
    return out


def make_tts(out: str | os.PathLike, language: str = "por", sampling_rate: int = 22050, seed: int = 0) -> Path:
    """A `VitsModel` + `VitsTokenizer` (characters, blanks between them, no phonemizer) like facebook/mms-tts-*."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(" " + LETTERS)}}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    VitsTokenizer(str(out / "vocab.json"), language=language, add_blank=True, normalize=True,
                  phonemize=False).save_pretrained(out)
    config = VitsConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
                        flow_size=8, spectrogram_bins=33, upsample_initial_channel=16, resblock_kernel_sizes=(3,),
                        resblock_dilation_sizes=((1,),), duration_predictor_filter_channels=16,
                        duration_predictor_num_flows=1, prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
                        posterior_encoder_num_wavenet_layers=1, depth_separable_num_layers=1,
                        sampling_rate=sampling_rate)
    torch.manual_seed(seed)
    VitsModel(config).eval().save_pretrained(out)
    return out


def make_toy_models(out: str | os.PathLike, languages: tuple[str, ...] = ("por", "grn", "eng")) -> dict[str, Path]:
    """All three toys under `out`: `lid/`, `asr/` (adapters for `languages`), `tts-<first language>/`."""
    from obt_eval.mms.hub import quiet_transformers

    out = Path(out)
    with quiet_transformers():
        return {"lid": make_lid(out / "lid", list(languages)), "asr": make_ctc(out / "asr", list(languages)),
                "tts": make_tts(out / f"tts-{languages[0]}", languages[0])}
