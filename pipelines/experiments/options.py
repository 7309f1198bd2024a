"""What an experiment is asked to do: one dataclass of options with defaults and bounds, and their checks.

`ExperimentOptions` is what the CLI, the app's form and the presets fill in; pydantic validates it
(bounds live beside each field as `Field` metadata), and `resolve` turns it into the facts a plan
needs (each encoder's candidate layers, the external systems' folders) — the only part that looks at
the disk or at model configs, so the plan itself stays a pure function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from obt_eval.errors import BadInputError
from obt_eval.workspace import Workspace, check_name

LAYER_MODES = ("default", "auto")
RESERVED_SYSTEM_NAMES = ("natural", "anchor")
# Transformer depth of the registered encoders, for `--layers auto` when their config is not cached offline.
KNOWN_DEPTH = {"xlsr53": 24, "mms-300m": 24, "mms-1b": 48}
_LAYER_SPEC = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass
class DemoCorpusOptions:
    """The synthetic espeak-ng corpus a preset generates (see `obt_eval.demo_corpus`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    speakers_per_language: Annotated[int, Field(ge=1, le=6)] = 2
    sentences_per_language: Annotated[int, Field(ge=2, le=24)] = 6


@dataclass
class ExperimentOptions:
    """One encoder comparison: the corpus, the contenders and the settings every contender shares.

    Defaults follow the team's recipe (reference/in-house-pipeline.md): each encoder's registered layer
    (14 for XLSR-53 and MMS-300M, 24 for MMS-1B), k = 100, the published unit HiFi-GAN (`reference`).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    name: str
    corpus: str
    encoders: Annotated[list[str], Field(min_length=1, max_length=12)]
    # "default": each encoder's registered layer and the first k; "auto": search every layer and pick
    # by the stated rule; "12-18" / "14": search those layers (one layer: that layer) and pick likewise
    layers: str = "default"
    ks: Annotated[list[Annotated[int, Field(ge=2, le=10_000)]], Field(min_length=1, max_length=12)] = field(
        default_factory=lambda: [100])
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    kmeans_sample_frac: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1  # fairseq simple_kmeans --percent 0.1
    kmeans_n_init: Annotated[int, Field(ge=1, le=20)] = 3
    vocoder_preset: str = "reference"
    vocoder_steps: Annotated[int | None, Field(ge=1, le=10_000_000)] = None  # None: the preset's (400k)
    vocoder_speakers: bool = False
    vocoder_f0: bool = False
    vocoder_checkpoint_every: Annotated[int | None, Field(ge=1)] = None  # None: the preset's
    vocoder_validate_every: Annotated[int | None, Field(ge=1)] = None
    study_utterances: Annotated[int, Field(ge=2, le=300)] = 50  # the ids travel in one job parameter
    study_target_ratings: Annotated[int, Field(ge=1, le=100)] = 10  # P.808 expected_votes_per_file
    study_trials_per_block: Annotated[int, Field(ge=2, le=200)] = 10
    study_max_blocks_per_rater: Annotated[int | None, Field(ge=1, le=1000)] = None
    raters: Annotated[int, Field(ge=0, le=500)] = 0  # invitations created with the study
    systems: dict[str, str] = field(default_factory=dict)  # outside contenders: name -> folder of <id>.wav
    demo_corpus: DemoCorpusOptions | None = None  # generate (and ingest) the demo corpus as the first stage
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ADAPTER = TypeAdapter(ExperimentOptions)


def validate_options(data: dict[str, Any] | ExperimentOptions) -> ExperimentOptions:
    """Typed, bounded options from a dict (CLI, form, plan.json); a bad field raises BadInputError naming it."""
    if isinstance(data, ExperimentOptions):
        data = data.to_dict()
    try:
        options = _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise BadInputError(f"bad experiment options: {problems}", "see `obt-eval experiment run --help`") from exc
    check_name(options.name, "experiment name")
    if options.layers not in LAYER_MODES and not _LAYER_SPEC.match(options.layers.replace(" ", "")):
        raise BadInputError(f"--layers {options.layers!r} is not default, auto or a layer list",
                            "write e.g. --layers auto, --layers 12-18 or --layers 14")
    from obt_eval.vocoder.config import PRESETS

    if options.vocoder_preset not in PRESETS:
        raise BadInputError(f"unknown vocoder preset {options.vocoder_preset!r}", f"use one of {', '.join(PRESETS)}")
    options.encoders = list(dict.fromkeys(e.strip() for e in options.encoders if e.strip()))
    options.ks = list(dict.fromkeys(options.ks))  # the user's order: the first k is the default rule's
    labels = [encoder_label(e) for e in options.encoders]
    if len(set(labels)) != len(labels):
        raise BadInputError(f"two encoders would share a name: {labels}", "give each checkpoint folder its own name")
    for name in options.systems:
        check_name(name, "system name")
        if name in RESERVED_SYSTEM_NAMES or name in labels:
            raise BadInputError(f"the system name {name!r} is taken (natural, anchor and the encoders' names are)",
                                "choose another NAME in --system NAME=DIR")
    return options


def encoder_label(encoder: str) -> str:
    """The name an encoder goes by in stages, folders and the study: a registry name, or the checkpoint's folder."""
    text = encoder.rstrip("/")
    return Path(text).name if ("/" in text or os.sep in text) else text


def parse_systems(specs: list[str]) -> dict[str, str]:
    """``["prod=/data/prod_out", ...]`` (CLI `--system NAME=DIR`) into {name: dir}."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise BadInputError(f"--system {spec!r} is not NAME=DIR", "write e.g. --system production=out/prod_vocoder")
        out[name.strip()] = folder.strip()
    return out


@dataclass(frozen=True)
class EncoderFacts:
    label: str
    source: str  # what the user passed: registry name, Hub id or checkpoint folder
    candidates: tuple[int | None, ...]  # layers extracted and searched
    default_layer: int | None  # the layer the `default` rule takes
    layered: bool  # False for the spectral baselines (mfcc, logmel)


@dataclass(frozen=True)
class SystemFacts:
    name: str
    folder: str
    fingerprint: str  # names, sizes and mtimes of its WAVs: a changed folder is scored again


def resolve_encoder_facts(encoder: str, layers: str) -> EncoderFacts:
    """Candidate layers of one encoder under the `layers` option (reads the model's config, no weights)."""
    from obt_eval.encoders.registry import default_layers, resolve_encoder

    spec = resolve_encoder(encoder)
    label = encoder_label(encoder)
    if spec.kind == "spectral":
        return EncoderFacts(label, encoder, (None,), None, False)
    default = default_layers(spec)[0]
    if layers == "default":
        return EncoderFacts(label, encoder, (default,), default, True)
    depth = _depth(spec)
    if layers == "auto":
        if depth is None:
            raise BadInputError(f"cannot tell how many layers {encoder} has (its config is not available offline)",
                                "give the range instead, e.g. --layers 1-24")
        return EncoderFacts(label, encoder, tuple(range(1, depth + 1)), default, True)
    from obt_eval_cli.common import parse_int_list

    chosen = parse_int_list(layers) or [default]
    if depth is not None and max(chosen) > depth:
        raise BadInputError(f"{encoder} has {depth} layers; --layers {layers} asks for {max(chosen)}",
                            f"use layers 0-{depth} (Hugging Face hidden_states index)")
    return EncoderFacts(label, encoder, tuple(chosen), default, True)


def _depth(spec) -> int | None:  # noqa: ANN001 — an EncoderSpec
    try:
        from obt_eval.encoders.huggingface import load_config

        return int(load_config(spec.source).num_hidden_layers)
    except Exception:  # noqa: BLE001 — offline without a cached config: the registry's known depth
        return KNOWN_DEPTH.get(spec.name)


def folder_fingerprint(folder: Path) -> str:
    """A short hash of the WAV names, sizes and mtimes in `folder` (cheap: no audio is read)."""
    entries = []
    for path in sorted(folder.glob("*.wav")):
        st = path.stat()
        entries.append([path.name, st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def resolve_system_facts(systems: dict[str, str], workspace: Workspace) -> list[SystemFacts]:
    out = []
    for name, folder in systems.items():
        path = Path(folder).expanduser()
        if not path.is_absolute() and not path.is_dir() and (workspace.root / path).is_dir():
            path = workspace.root / path
        if not path.is_dir():
            raise BadInputError(f"--system {name}={folder}: no such folder",
                                "point it at a folder of WAVs named <utterance id>.wav")
        if not any(path.glob("*.wav")):
            raise BadInputError(f"--system {name}={folder}: no .wav files in that folder",
                                "the folder must hold one <utterance id>.wav per utterance (any sample rate)")
        out.append(SystemFacts(name, str(path.resolve()), folder_fingerprint(path)))
    return out
