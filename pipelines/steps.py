"""The job kinds: each is one pipeline step that composes `obt_eval` library calls and returns its artifacts.

A step runs inside the job's child process (see `pipelines.child`); it reports progress through the
library's tqdm bars and `ctx.stage`, prints its log to stdout, and returns a JSON-able dict of what
it wrote. Every library call it makes resumes from its own artifacts, so re-running a failed or
killed job with the same parameters continues where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from obt_eval.errors import BadInputError
from obt_eval.workspace import Workspace
from pipelines import params as P
from pipelines.progress import ProgressFile


@dataclass
class StepContext:
    """What a step may use: the workspace, its own folder, progress reporting and the device to run on."""

    workspace: Workspace
    job_dir: Path
    progress: ProgressFile
    device: str | None = None
    job_id: int | None = None

    def stage(self, index: int, count: int, name: str) -> None:
        self.progress.stage(index, count, name)
        self.log(f"== [{index + 1}/{count}] {name}")

    def log(self, message: str) -> None:
        print(message, flush=True)


@dataclass(frozen=True)
class Step:
    kind: str
    params: type
    run: Callable[[Any, StepContext], dict]
    gpu: bool
    help: str


STEPS: dict[str, Step] = {}


def step(kind: str, params: type, *, gpu: bool = True, help: str = "") -> Callable:
    """Register a job kind; `gpu=False` steps do not wait for a GPU slot."""

    def wrap(fn: Callable[[Any, StepContext], dict]) -> Callable[[Any, StepContext], dict]:
        STEPS[kind] = Step(kind, params, fn, gpu, help or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return wrap


def get_step(kind: str) -> Step:
    _load_optional_steps()
    if kind not in STEPS:
        raise BadInputError(f"unknown job kind {kind!r}", f"use one of: {', '.join(sorted(STEPS))}")
    return STEPS[kind]


def kinds() -> list[str]:
    _load_optional_steps()
    return sorted(STEPS)


def parse(kind: str, data: dict[str, Any] | None, workspace: Workspace | None = None) -> Any:
    """Validate a job's parameters for `workspace` (raises BadInputError naming the bad field)."""
    return P.build(get_step(kind).params, data, kind, workspace)


def _load_optional_steps() -> None:
    # Steps over areas that may be absent register themselves on import; a missing area just means fewer kinds.
    import importlib

    for name in ("pipelines.studies", "pipelines.steps_analysis", "pipelines.demo", "pipelines.experiments.steps"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


# --- selftest -------------------------------------------------------------------------------------------


@dataclass
class SelftestParams:
    seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 3.0
    fail: bool = False


@step("selftest", SelftestParams, gpu=False)
def run_selftest(p: SelftestParams, ctx: StepContext) -> dict:
    """Count for a few seconds with a progress bar (checks that a worker runs jobs; used by the tests)."""
    from tqdm import tqdm

    ctx.stage(0, 1, "selftest")
    ticks = max(1, int(p.seconds * 10))
    for i in tqdm(range(ticks), desc="selftest", unit="tick"):
        time.sleep(0.1)
        if p.fail and i == ticks // 2:
            raise BadInputError("selftest asked to fail", "run it with fail=false")
    out = ctx.job_dir / "selftest.txt"
    out.write_text(f"counted {ticks} ticks\n", encoding="utf-8")
    # what the job process was given: on a GPU machine, the slot's GPU (the process sees it as cuda:0)
    return {"file": str(out), "ticks": ticks, "device": ctx.device,
            "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


# --- ingest ---------------------------------------------------------------------------------------------


@dataclass
class IngestParams:
    audio_dir: P.DataPath  # in the workspace (e.g. uploads/<name>) or under $OBT_EVAL_DATA_ROOTS
    name: P.Name
    metadata: P.DataPath | None = None
    alignments: P.DataPath | None = None
    segment: bool = False  # cut files longer than segment_threshold at pauses (see `obt-eval ingest --segment`)
    segment_min: Annotated[float, Field(gt=0.0, le=3600.0)] = 2.0
    segment_max: Annotated[float, Field(gt=0.0, le=3600.0)] = 15.0
    segment_threshold: Annotated[float, Field(gt=0.0, le=86_400.0)] | None = None  # None: segment_max
    vad: Literal["silero", "energy"] = "silero"
    cut_long_speech: bool = False
    phones_at_cuts: Literal["drop", "clip"] = "drop"


@step("ingest", IngestParams, gpu=False)
def run_ingest(p: IngestParams, ctx: StepContext) -> dict:
    """Ingest a folder of recordings as a corpus (16 kHz mono manifest, per-file rejections)."""
    from obt_eval.corpus.ingest import IngestOptions, ingest
    from obt_eval.corpus.segment import SegmentOptions

    ctx.stage(0, 1, f"ingest {p.name}")
    segmenting = SegmentOptions(min_seconds=p.segment_min, max_seconds=p.segment_max,
                                threshold_seconds=p.segment_threshold, vad=p.vad,
                                cut_long_speech=p.cut_long_speech) if p.segment else None
    options = IngestOptions(segmenting=segmenting, phones_at_cuts=p.phones_at_cuts)
    ws = ctx.workspace
    report = ingest(resolve(ws, p.audio_dir), p.name, ws, metadata=p.metadata and resolve(ws, p.metadata),
                    alignments=p.alignments and resolve(ws, p.alignments), options=options)
    summary = report.summary()
    ctx.log(f"ingested corpus {p.name}: {summary['ingested']} of {summary['found']} files")
    return {"corpus": p.name, "path": str(ctx.workspace.corpus_dir(p.name)), "report": summary}


# --- extract --------------------------------------------------------------------------------------------


@dataclass
class ExtractParams:
    corpus: P.CorpusRef
    encoder: Annotated[str, Field(max_length=500)]  # a registered name, a Hub id or a local checkpoint folder
    layers: P.Layers = None  # "14", "12-18" or "6,9"; empty: the encoder's default layer
    batch_seconds: Annotated[float, Field(gt=0.0, le=3600.0)] | None = None


@step("extract", ExtractParams)
def run_extract(p: ExtractParams, ctx: StepContext) -> dict:
    """Extract one or more layers of an encoder for a corpus (one forward pass, one store per layer)."""
    from dataclasses import replace

    from obt_eval.corpus.manifest import Corpus
    from obt_eval.features.extract import ExtractOptions, extract_features
    from obt_eval_cli.common import parse_int_list

    ctx.stage(0, 1, f"extract {p.encoder} on {p.corpus}")
    corpus = Corpus.open(resolve(ctx.workspace, p.corpus, "corpora"), ctx.workspace)
    options = ExtractOptions()
    if p.batch_seconds:
        options = replace(options, batch_seconds=p.batch_seconds)
    stores = extract_features(corpus, p.encoder, parse_int_list(p.layers), ctx.workspace, device=ctx.device,
                              options=options)
    return {"stores": {str(layer): str(store.path) for layer, store in stores.items()}}


# --- units ----------------------------------------------------------------------------------------------


@dataclass
class UnitsParams:
    # Defaults are KMeansConfig's (and `obt-eval units`'): the same fit from the CLI, a job or the README.
    features: P.FeaturesRef  # a feature store folder (workspace-relative paths work too)
    k: Annotated[int, Field(ge=2, le=65_536)] = 100
    seed: P.Seed = 0
    sample_frac: P.Fraction = 0.1  # fairseq simple_kmeans --percent 0.1
    n_init: Annotated[int, Field(ge=1, le=1_000)] = 3
    name: P.Name | None = None


@step("units", UnitsParams)
def run_units(p: UnitsParams, ctx: StepContext) -> dict:
    """Fit a k-means codebook on a feature store and assign units to every utterance."""
    from obt_eval.units.kmeans import KMeansConfig
    from obt_eval.units.learn import learn_units

    ctx.stage(0, 1, f"units k={p.k}")
    config = KMeansConfig(k=p.k, seed=p.seed, sample_frac=p.sample_frac, n_init=p.n_init, device=ctx.device)
    out_dir = ctx.workspace.units_dir(p.name) if p.name else None
    result = learn_units(resolve(ctx.workspace, p.features), config, out_dir=out_dir, workspace=ctx.workspace)
    return {"units": str(result.units.path), "reused": result.reused, "skipped": len(result.skipped)}


# --- vocoder --------------------------------------------------------------------------------------------


Preset = Literal["reference", "small", "tiny"]  # obt_eval.vocoder.config.PRESETS (not imported: it pulls torch)
Steps = Annotated[int, Field(ge=1, le=10_000_000)]


@dataclass
class TrainVocoderParams:
    units: P.UnitsRef
    name: P.Name
    preset: Preset = "reference"  # speech-resynthesis unit HiFi-GAN; "tiny" for smoke runs on a CPU
    steps: Steps | None = None
    speakers: bool = False
    f0: bool = False


@step("train-vocoder", TrainVocoderParams)
def run_train_vocoder(p: TrainVocoderParams, ctx: StepContext) -> dict:
    """Train (or resume) a unit vocoder on a units store."""
    from obt_eval.vocoder.config import preset
    from obt_eval.vocoder.train import train_vocoder

    ctx.stage(0, 1, f"train vocoder {p.name}")
    result = train_vocoder(resolve(ctx.workspace, p.units, "units"), ctx.workspace.vocoder_dir(p.name),
                           preset(p.preset), workspace=ctx.workspace, speakers=p.speakers, f0=p.f0, steps=p.steps,
                           device=ctx.device)
    return result.summary()


@dataclass
class TrainVocodersParams:
    units: P.UnitsSpecs  # "xlsr53=units_dir_a, mms-300m=units_dir_b": one units store per encoder
    prefix: P.Name = "vocoder"  # vocoders are named PREFIX-ENCODER
    preset: Preset = "reference"
    steps: Steps | None = None
    speakers: bool = False
    f0: bool = False


@step("train-vocoders", TrainVocodersParams)
def run_train_vocoders(p: TrainVocodersParams, ctx: StepContext) -> dict:
    """One vocoder per encoder with identical settings, seed and utterances (the A/B protocol), one after another."""
    from obt_eval.units.store import UnitsStore
    from obt_eval.vocoder.config import preset
    from obt_eval.vocoder.train import train_vocoder
    stores = {enc: UnitsStore.open(resolve(ctx.workspace, d, "units")) for enc, d in P.parse_specs(p.units)}
    shared = sorted(set.intersection(*(set(s.ids) for s in stores.values())))
    out = {}
    for i, (enc, store) in enumerate(stores.items()):
        ctx.stage(i, len(stores), f"train vocoder {p.prefix}-{enc}")
        result = train_vocoder(store, ctx.workspace.vocoder_dir(f"{p.prefix}-{enc}"), preset(p.preset),
                               workspace=ctx.workspace, speakers=p.speakers, f0=p.f0, steps=p.steps, ids=shared,
                               device=ctx.device)
        out[enc] = result.summary()
    return {"vocoders": out, "utterances": len(shared)}


@dataclass
class SynthesizeParams:
    vocoder: P.VocoderRef
    units: P.UnitsRef
    name: P.Name  # stimuli folder name under workspace/stimuli/
    ids: str = "held-out"  # "held-out", "all" or a comma-separated list of utterance ids
    system: P.Name | None = None


@step("synthesize", SynthesizeParams)
def run_synthesize(p: SynthesizeParams, ctx: StepContext) -> dict:
    """Synthesize stimuli from units with a trained vocoder (loudness-normalised WAVs)."""
    from obt_eval.vocoder.synthesis import synthesize_units

    ctx.stage(0, 1, f"synthesize {p.name}")
    ids: list[str] | str = p.ids if p.ids in ("held-out", "all") else [x.strip() for x in p.ids.split(",")]
    vocoder = resolve(ctx.workspace, p.vocoder, "vocoders")
    report = synthesize_units(vocoder, resolve(ctx.workspace, p.units, "units"), ctx.workspace.stimuli_dir(p.name),
                              ids=ids, workspace=ctx.workspace, system=p.system or p.name, device=ctx.device)
    return report.summary()


def resolve(workspace: Workspace, ref: str, kind: str | None = None) -> Path:
    """An absolute path, else a path relative to the workspace, else `workspace/<kind>/<ref>` (so names work in
    forms); symlinks resolved, and never outside the workspace or $OBT_EVAL_DATA_ROOTS."""
    for candidate in P.confined(workspace, ref, kind):
        if candidate.exists():
            return candidate
    where = f"a name under {workspace.root / kind}, " if kind else ""
    raise BadInputError(f"{ref} does not exist", f"give {where}a path inside the workspace {workspace.root}, "
                        "or a path relative to it")

