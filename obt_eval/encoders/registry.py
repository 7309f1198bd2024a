"""The encoder registry: a name resolves to where the weights are and the seed's default layer.

Adding an encoder is one entry in ``ENCODERS``. Any Hugging Face wav2vec2/HuBERT/WavLM id or local
checkpoint folder works too, without an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from obt_eval.encoders.base import Encoder
from obt_eval.errors import BadInputError, NotFoundError


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    source: str  # Hub id, local folder, or the baseline's kind
    kind: str  # "huggingface" | "spectral"
    default_layer: int | None
    dim: int | None
    licence: str
    description: str = ""


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in [
        # Seed defaults: XLSR-53 and MMS-300M layer 14 (of 24), MMS-1B layer 24 (of 48); HF hidden_states index.
        EncoderSpec("xlsr53", "facebook/wav2vec2-large-xlsr-53", "huggingface", 14, 1024, "Apache-2.0",
                    "wav2vec 2.0 XLSR-53 (Conneau et al. 2020), 53 languages, 315M parameters"),
        EncoderSpec("mms-300m", "facebook/mms-300m", "huggingface", 14, 1024, "CC-BY-NC-4.0",
                    "MMS pre-trained 300M (Pratap et al. 2023), ~1,400 languages; non-commercial licence"),
        EncoderSpec("mms-1b", "facebook/mms-1b", "huggingface", 24, 1280, "CC-BY-NC-4.0",
                    "MMS pre-trained 1B, 48 layers; non-commercial licence"),
        EncoderSpec("mfcc", "mfcc", "spectral", None, 39, "none (no weights)",
                    "13 MFCC + deltas + delta-deltas on the 50 Hz grid (weightless baseline)"),
        EncoderSpec("logmel", "logmel", "spectral", None, 80, "none (no weights)",
                    "80-band log-mel on the 50 Hz grid (weightless baseline)"),
    ]
}


def resolve_encoder(name_or_path: str) -> EncoderSpec:
    """A registered name, a local checkpoint folder, or a Hub id (``owner/model``)."""
    if name_or_path in ENCODERS:
        return ENCODERS[name_or_path]
    path = Path(name_or_path)
    if path.exists():
        if not (path / "config.json").exists():
            raise NotFoundError(
                f"{path} holds no config.json",
                "pass a folder written by save_pretrained() (config.json + weights)",
            )
        return EncoderSpec(path.name, str(path.resolve()), "huggingface", None, None, "see the checkpoint")
    if "/" in name_or_path:
        return EncoderSpec(name_or_path, name_or_path, "huggingface", None, None, "see the model card")
    raise NotFoundError(
        f"unknown encoder {name_or_path!r}",
        f"use one of {', '.join(ENCODERS)}, a Hugging Face id like facebook/mms-300m, or a local folder",
    )


def default_layers(spec: EncoderSpec) -> list[int | None]:
    if spec.kind == "spectral":
        return [None]
    if spec.default_layer is not None:
        return [spec.default_layer]
    from obt_eval.encoders.huggingface import load_config

    # Unregistered checkpoints: the middle of the stack, where phonetic information peaks.
    return [int(load_config(spec.source).num_hidden_layers) // 2]


def load_encoder(
    name_or_path: str,
    layers: list[int | None] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
) -> tuple[Encoder, list[int | None]]:
    """Load an encoder ready to return `layers` (default: its registered layer); returns it and the layers."""
    spec = resolve_encoder(name_or_path)
    layers = list(layers) if layers else default_layers(spec)
    if spec.kind == "spectral":
        from obt_eval.encoders.spectral import SpectralEncoder

        if layers != [None]:
            raise BadInputError(f"the {spec.name} baseline has no layers", "leave out --layer/--layers for it")
        return SpectralEncoder(spec.source, device or "cpu"), layers
    from obt_eval.encoders.huggingface import HuggingFaceEncoder

    ints = [layer for layer in layers if layer is not None]
    if len(ints) != len(layers):
        raise BadInputError(f"{spec.name} needs layer numbers", "pass --layer K or --layers A-B")
    encoder = HuggingFaceEncoder(spec.source, ints, name=spec.name, revision=revision, device=device,
                                 dtype=dtype, licence=spec.licence)
    return encoder, layers
