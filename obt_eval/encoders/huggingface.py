"""Hugging Face speech encoders (wav2vec2, HuBERT, WavLM, data2vec-audio, w2v-BERT 2.0) from the Hub or a folder.

Layer convention: layer k is Hugging Face's ``hidden_states[k]``: 0 is the input to the first
transformer block, k the raw output of block k. In fairseq terms that is wav2vec2 ``layer=k-1``
(0-based) and HuBERT ``output_layer=k`` (1-based). Only blocks 1..max(layers) are built and run,
and features are read with forward hooks on the blocks, so the final encoder LayerNorm never touches
them (transformers 4.x applied it to the last ``hidden_states`` entry; 5.x does not).

Waveform models get the waveform normalised per utterance when their feature extractor says
``do_normalize``; w2v-BERT 2.0 gets its own fbank front end (``obt_eval.encoders.fbank``), computed in
torch on the encoder's device. Either way the statistics can come from the whole utterance
(``utterance_stats``), so chunks and the frame-grid cut of a file's tail are normalised like the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from obt_eval.encoders.base import Encoder, FrameGrid, normalise_waves, wave_mean_var
from obt_eval.encoders.fingerprint import directory_fingerprint
from obt_eval.errors import BadInputError, NotFoundError

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "wav2vec2-bert")
# w2v-BERT 2.0: two stacked 25 ms / 10 ms fbank frames per 20 ms frame -> frame i needs samples [320 i, 320 i + 560)
FBANK_GRID = FrameGrid(window=560, hop=320)
WAVE_EPS = 1e-7  # transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
log = logging.getLogger(__name__)


def load_config(source: str, revision: str | None = None):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, revision=revision)
    except OSError as exc:
        local = Path(source).exists()
        raise NotFoundError(
            f"cannot load the encoder config of {source!r}: {str(exc).splitlines()[0]}",
            "check the local folder holds config.json" if local else
            "check the model id, or download it where the Hub is reachable and pass the local folder",
        ) from exc
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise BadInputError(
            f"{source!r} is a {config.model_type!r} model, not a wav2vec2-family speech encoder",
            f"use one of the registered encoders or a {', '.join(SUPPORTED_MODEL_TYPES)} checkpoint",
        )
    return config


class HuggingFaceEncoder(Encoder):
    def __init__(
        self,
        source: str,
        layers: list[int],
        *,
        name: str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        licence: str = "",
    ):
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        self._set_identity(source, name, licence, device, dtype)
        config = load_config(source, revision)
        self.total_layers = int(config.num_hidden_layers)
        bad = [k for k in layers if not 0 <= k <= self.total_layers]
        if bad:
            raise BadInputError(
                f"{self.name} has layers 0..{self.total_layers}; asked for {bad}",
                "layer k is hidden_states[k]: 0 = input of the first block, k = output of block k",
            )
        self.max_layer = max(layers)
        # Build only the blocks we need: the rest of the checkpoint's weights are skipped at load.
        config.num_hidden_layers = self.max_layer
        config.layerdrop = 0.0
        self.fbank = config.model_type == "wav2vec2-bert"
        if self.fbank:
            self.grid = FBANK_GRID
            self.group_norm = False
            self.do_normalize = True  # per-bin fbank normalisation is part of the model's input
        else:
            self.group_norm = getattr(config, "feat_extract_norm", "layer") == "group"
            self.do_normalize = self._reads_do_normalize(source, revision)
        # Group-norm front ends (wav2vec2-base, HuBERT-base) normalise over time, so padding changes
        # every frame: such models run one utterance at a time.
        self.pads_exactly = not self.group_norm
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "unused weights" of the dropped blocks are expected
        hf_logging.disable_progress_bar()
        try:
            kwargs = {"config": config, "revision": revision, "dtype": self.dtype}
            try:
                model = AutoModel.from_pretrained(source, attn_implementation="sdpa", **kwargs)
            except (ValueError, ImportError):  # model type without SDPA support
                model = AutoModel.from_pretrained(source, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.eval().to(self._device)
        if self._device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # batch shapes repeat (padded to 0.5 s steps)
        if getattr(config, "do_stable_layer_norm", False):
            model.encoder.layer_norm = torch.nn.Identity()  # never applied to the features we read
        self.model = model
        self._dim = int(config.hidden_size)
        self.revision = revision or getattr(config, "_commit_hash", None)
        if self.revision is None and Path(source).is_dir():
            self.revision = directory_fingerprint(Path(source))

    def _reads_do_normalize(self, source: str, revision: str | None) -> bool:
        from transformers import Wav2Vec2FeatureExtractor

        try:
            return bool(Wav2Vec2FeatureExtractor.from_pretrained(source, revision=revision).do_normalize)
        except OSError:  # no preprocessor_config.json: layer-norm checkpoints were trained on normalised audio
            return not self.group_norm

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def layers(self) -> list[int | None]:
        return list(range(self.max_layer + 1))

    @property
    def device(self) -> torch.device:
        return self._device

    def utterance_stats(self, wave: np.ndarray) -> np.ndarray | None:
        if self.fbank:
            from obt_eval.encoders.fbank import fbank_stats

            return fbank_stats(wave)
        return wave_mean_var(wave) if self.do_normalize else None

    def normalise(self, waves: torch.Tensor, mask: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """Zero-mean unit-variance per utterance (whole-utterance `stats`, or the real samples); padding stays 0."""
        if not self.do_normalize:
            return waves * mask
        return normalise_waves(waves, mask, stats, WAVE_EPS)

    def _inputs(self, waves: torch.Tensor, lengths: torch.Tensor, stats) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model input and attention mask (None for group-norm models, which were trained without one)."""
        if self.fbank:
            from obt_eval.encoders.fbank import stacked_features

            features, mask = stacked_features(waves, lengths, stats)
            return features.to(self.dtype), mask.long()
        mask = (torch.arange(waves.shape[1], device=self._device)[None, :] < lengths[:, None]).to(waves.dtype)
        inputs = self.normalise(waves, mask, stats).to(self.dtype)
        return inputs, None if self.group_norm else mask.long()

    @torch.inference_mode()
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor, layers: list[int | None], stats=None) -> dict:
        waves = waves.to(self._device, torch.float32, non_blocking=True)
        lengths = lengths.to(self._device)
        if stats is not None:
            stats = torch.as_tensor(np.asarray(stats)) if not isinstance(stats, torch.Tensor) else stats
        inputs, attention_mask = self._inputs(waves, lengths, stats)
        captured: dict[int, torch.Tensor] = {}
        handles = []
        blocks = self.model.encoder.layers
        for k in set(layers):
            if k is None:
                raise BadInputError(f"{self.name} needs a layer number", "pass --layer K or --layers A-B")
            if k == 0 and len(blocks):
                handles.append(blocks[0].register_forward_pre_hook(
                    lambda _m, args, kwargs=None: captured.__setitem__(0, args[0]) if args else None))
            elif k > 0:
                handles.append(blocks[k - 1].register_forward_hook(
                    lambda _m, _a, out, k=k: captured.__setitem__(k, out[0] if isinstance(out, tuple) else out)))
        try:
            out = self.model(inputs, attention_mask=attention_mask)
        finally:
            for handle in handles:
                handle.remove()
        if 0 in layers and not len(blocks):
            captured[0] = out.last_hidden_state
        return {k: captured[k] for k in layers}
