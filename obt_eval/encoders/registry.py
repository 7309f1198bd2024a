"""The encoder registry: one entry per encoder holds every fact about it (weights, layers, grid, size, licence).

Adding an encoder is one entry in ``ENCODERS``, or, without editing obt-eval, an entry point in the
``obt_eval.encoders`` group of any installed distribution (see ``plugin_encoders``). Any Hugging Face
wav2vec2 / HuBERT / WavLM / data2vec-audio / w2v-BERT id or local checkpoint folder works too, without
an entry. ``obt-eval encoders`` and the app list ``registered_encoders()``.

Layer numbers are Hugging Face ``hidden_states`` indices for every family: 0 = input of the first
transformer block, k = output of block k.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from obt_eval.encoders.base import Encoder
from obt_eval.errors import BadInputError, NotFoundError

PLUGIN_GROUP = "obt_eval.encoders"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything obt-eval knows about one encoder before loading it.

    ``kind`` says how it loads: ``huggingface`` (transformers), ``spectral`` (weightless baselines),
    ``xeus`` (ESPnet, optional extra) or ``plugin`` (``factory(spec, layers, device=, dtype=, revision=)``
    returns an ``Encoder``).
    """

    name: str
    source: str  # Hub id, local folder, or the baseline's kind
    kind: str
    default_layer: int | None
    dim: int | None
    licence: str
    description: str = ""
    family: str = ""  # architecture: wav2vec2, hubert, wav2vec2-bert, xeus (E-Branchformer), spectral ...
    num_layers: int | None = None  # transformer blocks (layers 0..num_layers)
    frame_rate: float = 50.0  # frames per second
    params_millions: float | None = None
    weights_size: str = ""  # download size of the weights
    factory: Callable[..., Encoder] | None = field(default=None, compare=False, repr=False)
    provider: str = "obt-eval"  # the distribution that registered it

    def facts(self) -> dict:
        """The JSON-able facts the CLI and the app show."""
        return {
            "name": self.name, "checkpoint": self.source, "family": self.family, "kind": self.kind,
            "default_layer": self.default_layer, "num_layers": self.num_layers, "dim": self.dim,
            "frame_rate": self.frame_rate, "params_millions": self.params_millions, "weights_size": self.weights_size,
            "licence": self.licence, "description": self.description, "provider": self.provider,
        }


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in [
        # Seed defaults: XLSR-53 and MMS-300M layer 14 (of 24), MMS-1B layer 24 (of 48); HF hidden_states index.
        # Licences from the model cards; sizes from the Hub file listings (see shared/reference/unit-pipeline.md §3).
        EncoderSpec("xlsr53", "facebook/wav2vec2-large-xlsr-53", "huggingface", 14, 1024, "Apache-2.0",
                    "wav2vec 2.0 XLSR-53 (Conneau et al. 2020), 53 languages", "wav2vec2", 24, 50.0, 315,
                    "1.26 GB"),
        EncoderSpec("mms-300m", "facebook/mms-300m", "huggingface", 14, 1024, "CC-BY-NC-4.0",
                    "MMS pre-trained 300M (Pratap et al. 2023), ~1,400 languages; non-commercial licence",
                    "wav2vec2", 24, 50.0, 315, "1.27 GB"),
        EncoderSpec("mms-1b", "facebook/mms-1b", "huggingface", 24, 1280, "CC-BY-NC-4.0",
                    "MMS pre-trained 1B, 48 layers; non-commercial licence", "wav2vec2", 48, 50.0, 965, "3.86 GB"),
        # Model card: licence MIT, 600M parameters, conformer encoder on 80-bin fbank stacked to 50 Hz. No
        # published unit layer: 12 is the middle of the stack (run `obt-eval search` to choose per language).
        EncoderSpec("w2v-bert-2.0", "facebook/w2v-bert-2.0", "huggingface", 12, 1024, "MIT",
                    "w2v-BERT 2.0 (Seamless, 2023), 4.5M h in 143+ languages; fbank front end, frames centred "
                    "5 ms later than wav2vec2's", "wav2vec2-bert", 24, 50.0, 580, "2.32 GB"),
        # Model card: CC-BY-NC-SA-4.0, HuBERT base (95M, 12 layers, 768-d, group-norm CNN -> batch size 1).
        # Layer 9: the layer its authors cluster (the released faiss index is layer 9 of the 2nd iteration).
        EncoderSpec("mhubert-147", "utter-project/mHuBERT-147", "huggingface", 9, 768, "CC-BY-NC-SA-4.0",
                    "mHuBERT-147 (Zanon Boito et al. 2024), 90k h in 147 languages; non-commercial, share-alike",
                    "hubert", 12, 50.0, 95, "378 MB"),
        # Model card: CC-BY-NC-SA-4.0 (was MIT until Aug 2024); 577M, 19 E-Branchformer blocks, 1024-d, wav2vec2
        # CNN front end. Layer 15 = the in-house pipeline's `encode(...)[0][14]`, whose list holds block outputs
        # only (0-based), i.e. the output of block 15. Loads through ESPnet: pip install "obt-eval[xeus]".
        EncoderSpec("xeus", "espnet/xeus", "xeus", 15, 1024, "CC-BY-NC-SA-4.0",
                    "XEUS (Chen et al. 2024), 1M h in 4,057 languages; the research team's current default; "
                    "needs the xeus extra (ESPnet)", "xeus", 19, 50.0, 577, ""),
        EncoderSpec("mfcc", "mfcc", "spectral", None, 39, "none (no weights)",
                    "13 MFCC + deltas + delta-deltas on the 50 Hz grid (weightless baseline)", "spectral", None,
                    50.0, 0, ""),
        EncoderSpec("logmel", "logmel", "spectral", None, 80, "none (no weights)",
                    "80-band log-mel on the 50 Hz grid (weightless baseline)", "spectral", None, 50.0, 0, ""),
    ]
}

_plugin_cache: tuple[dict[str, EncoderSpec], list[str]] | None = None


def _specs_from(obj, provider: str) -> list[EncoderSpec]:
    """An entry point may name an EncoderSpec, a list of them, or a function returning either."""
    if callable(obj) and not isinstance(obj, EncoderSpec):
        obj = obj()
    items = [obj] if isinstance(obj, EncoderSpec) else list(obj)
    specs = []
    for item in items:
        if not isinstance(item, EncoderSpec):
            raise TypeError(f"expected an obt_eval.encoders.EncoderSpec, got {type(item).__name__}")
        if item.kind == "plugin" and item.factory is None:
            raise TypeError(f"plugin encoder {item.name!r} has no factory")
        specs.append(item if item.provider != "obt-eval" else _with_provider(item, provider))
    return specs


def _with_provider(spec: EncoderSpec, provider: str) -> EncoderSpec:
    from dataclasses import replace

    return replace(spec, provider=provider)


def plugin_encoders(refresh: bool = False) -> tuple[dict[str, EncoderSpec], list[str]]:
    """Encoders registered by other distributions through ``obt_eval.encoders`` entry points.

    A lab adds its own encoder without editing obt-eval: in its package's pyproject.toml,
    ``[project.entry-points."obt_eval.encoders"] my-encoder = "mylab.encoders:SPEC"``. Returns the specs
    and one message per entry point that failed to load (a broken plugin never hides the others).
    """
    global _plugin_cache
    if _plugin_cache is not None and not refresh:
        return _plugin_cache
    from importlib.metadata import entry_points

    found: dict[str, EncoderSpec] = {}
    problems: list[str] = []
    for ep in entry_points(group=PLUGIN_GROUP):
        provider = ep.dist.name if getattr(ep, "dist", None) is not None else ep.value
        try:
            specs = _specs_from(ep.load(), provider)
        except Exception as exc:  # a plugin's bug must not break obt-eval
            problems.append(f"entry point {ep.name} = {ep.value}: {type(exc).__name__}: {exc}")
            continue
        for spec in specs:
            if spec.name in ENCODERS or spec.name in found:
                problems.append(f"entry point {ep.name}: encoder name {spec.name!r} is already registered")
                continue
            found[spec.name] = spec
    for problem in problems:
        log.warning("obt-eval encoder plugin skipped: %s", problem)
    _plugin_cache = (found, problems)
    return _plugin_cache


def registered_encoders(refresh: bool = False) -> dict[str, EncoderSpec]:
    """Built-in encoders, then those added by plugins."""
    return {**ENCODERS, **plugin_encoders(refresh)[0]}


def resolve_encoder(name_or_path: str) -> EncoderSpec:
    """A registered name, a local checkpoint folder, or a Hub id (``owner/model``)."""
    known = registered_encoders()
    if name_or_path in known:
        return known[name_or_path]
    path = Path(name_or_path)
    if path.exists():
        from obt_eval.encoders.xeus import is_espnet_checkpoint

        if is_espnet_checkpoint(path):
            return EncoderSpec(path.name, str(path.resolve()), "xeus", None, None, "see the checkpoint",
                               family="xeus")
        if not (path / "config.json").exists():
            raise NotFoundError(
                f"{path} holds no config.json",
                "pass a folder written by save_pretrained() (config.json + weights), or an ESPnet SSL folder "
                "(config.yaml + a .pth checkpoint)",
            )
        return EncoderSpec(path.name, str(path.resolve()), "huggingface", None, None, "see the checkpoint")
    if "/" in name_or_path:
        return EncoderSpec(name_or_path, name_or_path, "huggingface", None, None, "see the model card")
    raise NotFoundError(
        f"unknown encoder {name_or_path!r}",
        f"use one of {', '.join(known)}, a Hugging Face id like facebook/mms-300m, or a local folder",
    )


def default_layers(spec: EncoderSpec) -> list[int | None]:
    if spec.kind == "spectral":
        return [None]
    if spec.default_layer is not None:
        return [spec.default_layer]
    if spec.kind == "xeus":
        from obt_eval.encoders.xeus import xeus_num_layers

        return [xeus_num_layers(spec.source) // 2]
    if spec.kind == "plugin":
        return [spec.num_layers // 2 if spec.num_layers else None]
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
    if spec.kind == "plugin":
        assert spec.factory is not None
        return spec.factory(spec, layers, device=device, dtype=dtype, revision=revision), layers
    ints = [layer for layer in layers if layer is not None]
    if len(ints) != len(layers):
        raise BadInputError(f"{spec.name} needs layer numbers", "pass --layer K or --layers A-B")
    if spec.kind == "xeus":
        from obt_eval.encoders.xeus import XeusEncoder

        return XeusEncoder(spec.source, ints, name=spec.name, device=device, dtype=dtype, revision=revision,
                           licence=spec.licence), layers
    from obt_eval.encoders.huggingface import HuggingFaceEncoder

    encoder = HuggingFaceEncoder(spec.source, ints, name=spec.name, revision=revision, device=device,
                                 dtype=dtype, licence=spec.licence)
    return encoder, layers
