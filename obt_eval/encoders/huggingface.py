"""wav2vec2-family encoders (wav2vec2, HuBERT, WavLM, data2vec-audio) from the Hub or a local folder.

Layer convention: layer k is Hugging Face's ``hidden_states[k]``: 0 is the input to the first
transformer block, k the raw output of block k. In fairseq terms that is wav2vec2 ``layer=k-1``
(0-based) and HuBERT ``output_layer=k`` (1-based). Only blocks 1..max(layers) are built and run,
and features are read with forward hooks on the blocks, so the final encoder LayerNorm never touches
them (transformers 4.x applied it to the last ``hidden_states`` entry; 5.x does not).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from obt_eval.encoders.base import Encoder
from obt_eval.encoders.fingerprint import directory_fingerprint
from obt_eval.errors import BadInputError, NotFoundError

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer")
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
        from transformers import AutoModel, Wav2Vec2FeatureExtractor
        from transformers.utils import logging as hf_logging

        self.name = name or source
        self.encoder_id = source
        self.licence = licence
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype or (torch.bfloat16 if self._device.type == "cuda" else torch.float32)
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
        self.group_norm = getattr(config, "feat_extract_norm", "layer") == "group"
        # Group-norm front ends (wav2vec2-base, HuBERT-base) normalise over time, so padding changes
        # every frame: such models run one utterance at a time.
        self.pads_exactly = not self.group_norm
        try:
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(source, revision=revision)
            self.do_normalize = bool(extractor.do_normalize)
        except OSError:  # no preprocessor_config.json: layer-norm checkpoints were trained on normalised audio
            self.do_normalize = not self.group_norm
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

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def layers(self) -> list[int | None]:
        return list(range(self.max_layer + 1))

    @property
    def device(self) -> torch.device:
        return self._device

    def normalise(self, waves: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Zero-mean unit-variance per utterance over its real samples only (padding stays 0)."""
        if not self.do_normalize:
            return waves * mask
        n = mask.sum(dim=1, keepdim=True).clamp_min(1)
        mean = (waves * mask).sum(dim=1, keepdim=True) / n
        var = (((waves - mean) * mask) ** 2).sum(dim=1, keepdim=True) / n
        return (waves - mean) / torch.sqrt(var + 1e-7) * mask

    @torch.inference_mode()
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor, layers: list[int | None]) -> dict:
        waves = waves.to(self._device, torch.float32, non_blocking=True)
        lengths = lengths.to(self._device)
        mask = (torch.arange(waves.shape[1], device=self._device)[None, :] < lengths[:, None]).to(waves.dtype)
        inputs = self.normalise(waves, mask).to(self.dtype)
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
            attention_mask = None if self.group_norm else mask.long()
            out = self.model(inputs, attention_mask=attention_mask)
        finally:
            for handle in handles:
                handle.remove()
        if 0 in layers and not len(blocks):
            captured[0] = out.last_hidden_state
        return {k: captured[k] for k in layers}

