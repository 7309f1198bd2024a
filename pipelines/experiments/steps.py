"""The job kinds an experiment adds to the queue (each also usable on its own from `obt-eval jobs submit`).

`experiment-corpus` (the demo corpus, generated and ingested), `experiment-search` (a layer/k search
whose results and units are the experiment's own), `experiment-vocoder` (train on every utterance but
the held-out ones), `resynthesis-metrics`, `import-system` (an outside system's WAVs, resampled, as a
contender) and `experiment-study` (the draft listening study with the natural recordings as reference).
Like every step, each resumes from its own artifacts when run again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

from pydantic import Field

from obt_eval.errors import BadInputError
from pipelines.params import CorpusRef, DataPath, Fraction, Layers, Name, OutPath, Seed, StimuliSpecs, UnitsRef
from pipelines.steps import Preset, StepContext, resolve, step


def read_ids(path: str) -> list[str]:
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# --- the demo corpus --------------------------------------------------------------------------------------


@dataclass
class CorpusParams:
    name: Name = "demo"
    speakers_per_language: Annotated[int, Field(ge=1, le=6)] = 2
    sentences_per_language: Annotated[int, Field(ge=2, le=24)] = 6


def is_demo_corpus(corpus) -> bool:  # noqa: ANN001 — an obt_eval Corpus
    """Was this corpus ingested from a folder `obt-eval demo-corpus` wrote (it leaves demo.item beside wavs/)?"""
    source = corpus.info.get("source")
    return bool(source) and (Path(source).parent / "demo.item").exists()


@step("experiment-corpus", CorpusParams, gpu=False)
def run_corpus(p: CorpusParams, ctx: StepContext) -> dict:
    """Generate the espeak-ng demo corpus (Portuguese + Guarani) and ingest it, unless the workspace has it."""
    from obt_eval.corpus.ingest import ingest
    from obt_eval.corpus.manifest import Corpus
    from obt_eval.demo_corpus import make_demo_corpus

    ws = ctx.workspace
    ctx.stage(0, 2, f"demo corpus {p.name}")
    if (ws.corpus_dir(p.name) / "manifest.parquet").exists():
        corpus = Corpus.open(p.name, ws)
        if not is_demo_corpus(corpus):
            raise BadInputError(
                f"this workspace already has a corpus named {p.name!r} that was not made by `obt-eval demo-corpus` "
                f"(ingested from {corpus.info.get('source')})",
                f"run the demo in another workspace (--workspace DIR), or compare encoders on that corpus with "
                f"`obt-eval experiment run --name NAME --corpus {p.name} --encoders mfcc,logmel`",
            )
        ctx.log(f"using the demo corpus already in the workspace ({len(corpus.ids)} utterances)")
        return {"corpus": p.name, "path": str(corpus.root), "reused": True}
    source = Path(ws.root) / "demo_source"
    make_demo_corpus(source, speakers_per_language=p.speakers_per_language,
                     sentences_per_language=p.sentences_per_language, progress=True)
    ctx.stage(1, 2, "ingest")
    report = ingest(source / "wavs", p.name, ws, metadata=source / "metadata.csv", alignments=source / "textgrids")
    return {"corpus": p.name, "path": str(ws.corpus_dir(p.name)), "reused": False, "report": report.summary()}


# --- search -----------------------------------------------------------------------------------------------


@dataclass
class SearchParams:
    corpus: CorpusRef
    encoder: Annotated[str, Field(max_length=500)]  # a registered name, a Hub id or a local checkpoint folder
    out: OutPath  # folder of results.json / results.csv
    units_prefix: Name  # units go to units/<prefix>_L<layer>_k<k>
    layers: Layers = None
    ks: list[Annotated[int, Field(ge=2, le=65_536)]] | None = None
    seed: Seed = 0
    sample_frac: Fraction = 0.1
    n_init: Annotated[int, Field(ge=1, le=20)] = 3


@step("experiment-search", SearchParams)
def run_search(p: SearchParams, ctx: StepContext) -> dict:
    """Score each candidate layer and k of one encoder (ABX, PNMI, silhouette, bitrate) into the experiment's folder."""
    from obt_eval.search import SearchConfig, search_layers
    from obt_eval_cli.common import parse_int_list

    ctx.stage(0, 1, f"search {p.encoder} on {p.corpus}")
    cfg = SearchConfig(ks=list(p.ks or [100]), seed=p.seed, sample_frac=p.sample_frac, n_init=p.n_init,
                       device=ctx.device)
    result = search_layers(p.corpus, p.encoder, parse_int_list(p.layers), ctx.workspace, cfg, out_dir=p.out,
                           units_prefix=p.units_prefix)
    return {"results": str(Path(result.path) / "results.json"), "best_layer": result.best_layer,
            "best_metric": result.best_metric, "rows": len(result.rows)}


# --- vocoder ----------------------------------------------------------------------------------------------


@dataclass
class VocoderParams:
    units: UnitsRef
    out: OutPath
    preset: Preset = "reference"
    steps: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    speakers: bool = False
    f0: bool = False
    checkpoint_every: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    validate_every: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    exclude_file: DataPath | None = None  # utterance ids the vocoder must not train on (the listening test's)


@step("experiment-vocoder", VocoderParams)
def run_vocoder(p: VocoderParams, ctx: StepContext) -> dict:
    """Train (or resume) a unit vocoder on every utterance except the held-out ones."""
    from obt_eval.units.store import UnitsStore
    from obt_eval.vocoder.config import preset
    from obt_eval.vocoder.train import train_vocoder

    ctx.stage(0, 1, f"train vocoder {Path(p.out).name}")
    units = UnitsStore.open(resolve(ctx.workspace, p.units, "units"))
    held = set(read_ids(p.exclude_file)) if p.exclude_file else set()
    ids = [u for u in units.ids if u not in held]
    cfg = preset(p.preset)
    changes = {k: v for k, v in {"checkpoint_every": p.checkpoint_every, "validate_every": p.validate_every}.items()
               if v is not None}
    cfg = replace(cfg, train=replace(cfg.train, **changes))
    result = train_vocoder(units, p.out, cfg, workspace=ctx.workspace, speakers=p.speakers, f0=p.f0, steps=p.steps,
                           ids=ids, device=ctx.device)
    return {**result.summary(), "trained_on": len(ids), "held_out": len(held)}


# --- resynthesis metrics ----------------------------------------------------------------------------------


@dataclass
class ResynthesisParams:
    stimuli: DataPath  # obt-eval stimuli folder, or any folder of <utterance id>.wav
    corpus: CorpusRef | None = None
    system: Name | None = None


@step("resynthesis-metrics", ResynthesisParams, gpu=False)
def run_resynthesis(p: ResynthesisParams, ctx: StepContext) -> dict:
    """MCD, F0 errors and STOI of one system's clips against the corpus recordings."""
    from obt_eval.vocoder.metrics import METRIC_COLUMNS, resynthesis_metrics

    ctx.stage(0, 1, f"resynthesis metrics {p.system or Path(p.stimuli).name}")
    folder = resolve(ctx.workspace, p.stimuli, "stimuli")
    table = resynthesis_metrics(folder, corpus=p.corpus, workspace=ctx.workspace, system=p.system)
    means = {c: float(table[c].mean()) for c in METRIC_COLUMNS if c in table and table[c].notna().any()}
    return {"metrics": str(folder / "metrics.csv"), "utterances": int(len(table)), "means": means,
            "unknown_ids": table.attrs.get("unknown_ids", [])}


# --- outside systems --------------------------------------------------------------------------------------


@dataclass
class ImportSystemParams:
    name: Name
    folder: DataPath  # any folder of <utterance id>.wav, any sample rate
    corpus: CorpusRef
    out: OutPath
    ids_file: DataPath | None = None  # only these utterances (the experiment's held-out ones); default: all matched


@step("import-system", ImportSystemParams, gpu=False)
def run_import_system(p: ImportSystemParams, ctx: StepContext) -> dict:
    """Take an outside system's WAVs as a contender: match them to the corpus, resample to 16 kHz mono."""
    from tqdm import tqdm

    from obt_eval.atomic import write_json
    from obt_eval.audio import load_16k, write_wav
    from obt_eval.corpus.manifest import Corpus
    from obt_eval.integrity import checksums
    from obt_eval.provenance import provenance

    ctx.stage(0, 1, f"import {p.name}")
    corpus = Corpus.open(p.corpus, ctx.workspace)
    known = set(corpus.ids)
    wanted = read_ids(p.ids_file) if p.ids_file else sorted(known)
    files = {path.stem: path for path in sorted(Path(p.folder).glob("*.wav"))}
    unknown = sorted(u for u in files if u not in known)
    present = [u for u in wanted if u in files]
    missing = [u for u in wanted if u not in files]
    if not present:
        raise BadInputError(
            f"{p.folder} has none of the {len(wanted)} utterances this experiment compares "
            f"(e.g. {', '.join(wanted[:3])}); {len(unknown)} of its {len(files)} files are named after no utterance "
            f"of corpus {p.corpus!r}",
            f"synthesize the utterances listed in {p.ids_file or 'the corpus manifest'} with that system, "
            "one <utterance id>.wav each",
        )
    out = Path(p.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = []
    written = []
    for uid in tqdm(present, desc=f"import {p.name}", unit="wav"):
        target = out / f"{uid}.wav"
        if not target.exists():
            try:
                write_wav(target, load_16k(files[uid]))
            except Exception as exc:  # noqa: BLE001 — one unreadable file is reported, the rest go on
                problems.append({"id": uid, "problem": f"{type(exc).__name__}: {exc}"})
                continue
        written.append(uid)
    if unknown:
        ctx.log(f"{len(unknown)} file(s) named after no utterance of {p.corpus}: {', '.join(unknown[:10])}")
    if missing:
        ctx.log(f"{len(missing)} of the {len(wanted)} held-out utterances are missing from {p.folder}")
    write_json(out / "stimuli.json", {
        "system": p.name, "external": True, "source": str(Path(p.folder).resolve()), "corpus": corpus.name,
        "corpus_path": str(Path(corpus.root).resolve()), "count": len(written), "unknown_ids": unknown,
        "missing_ids": missing, "problems": problems, "sample_rate": 16000,
        "checksums": checksums(out, [f"{u}.wav" for u in written]), "provenance": provenance(),
    })
    return {"out": str(out), "system": p.name, "imported": len(written), "unknown_ids": unknown,
            "missing_ids": missing, "problems": problems}


# --- the listening study ----------------------------------------------------------------------------------


@dataclass
class StudyParams:
    name: Name
    systems: StimuliSpecs  # "a=dir, b=dir"
    corpus: CorpusRef
    natural_out: OutPath  # where the natural recordings of the held-out utterances are written (the reference)
    ids_file: DataPath
    target_ratings: Annotated[int, Field(ge=1, le=100)] = 10
    trials_per_block: Annotated[int, Field(ge=2, le=200)] = 10
    max_blocks_per_rater: Annotated[int, Field(ge=1, le=10_000)] | None = None
    raters: Annotated[int, Field(ge=0, le=500)] = 0
    seed: Seed | None = None


@step("experiment-study", StudyParams, gpu=False)
def run_study(p: StudyParams, ctx: StepContext) -> dict:
    """The draft blinded A/B study of every contender on the held-out utterances, natural speech as reference."""
    from sqlalchemy import func, select

    from db.capacity import invite
    from db.models import Rater
    from db.studies import get_study
    from obt_eval.audio import write_wav
    from obt_eval.corpus.manifest import Corpus
    from obt_eval.errors import NotFoundError
    from pipelines.jobs import database
    from pipelines.studies import create_study_from_dirs, parse_specs

    ctx.stage(0, 2, "natural reference")
    corpus = Corpus.open(p.corpus, ctx.workspace)
    natural = Path(p.natural_out)
    natural.mkdir(parents=True, exist_ok=True)
    ids = read_ids(p.ids_file)
    for old in natural.glob("*.wav"):  # an earlier held-out choice (its studies keep their own copies)
        if old.stem not in set(ids):
            old.unlink()
    for uid in ids:
        if not (natural / f"{uid}.wav").exists():
            write_wav(natural / f"{uid}.wav", corpus.wave(uid))
    systems = parse_specs(p.systems)
    ctx.stage(1, 2, f"study {p.name}")
    db = database(ctx.workspace)
    with db.session() as s:
        try:
            study = get_study(s, p.name)
            existing = sorted(x.name for x in study.systems if x.role == "test")
        except NotFoundError:
            existing = None
    summary: dict = {}
    if existing is None:
        summary = create_study_from_dirs(p.name, systems, ctx.workspace, reference=("natural", str(natural)),
                                         target_ratings=p.target_ratings, trials_per_block=p.trials_per_block,
                                         max_blocks_per_rater=p.max_blocks_per_rater, seed=p.seed,
                                         allow_partial=True)
    elif existing != sorted(n for n, _ in systems):
        raise BadInputError(f"a study named {p.name!r} already exists with other systems ({', '.join(existing)})",
                            "delete it or give the experiment another name")
    with db.session() as s:
        study = get_study(s, p.name)
        have = s.scalar(select(func.count(Rater.id)).where(Rater.study_id == study.id)) or 0
        # the raters asked for all get trials: the design grows if they outnumber its blocks
        made = invite(s, study, p.raters - have, grow=True) if p.raters > have else None
    invites = made.invites if made else []
    if made and made.added_blocks:
        ctx.log(f"{made.added_blocks} block(s) added so that each of the {p.raters} raters gets trials")
    ctx.log(f"study {p.name!r} ready ({len(invites)} new invitation(s))")
    return {"study": p.name, "systems": [n for n, _ in systems], "natural": str(natural),
            "trials": summary.get("trials"), "blocks": summary.get("blocks"), "warnings": summary.get("warnings", []),
            "invitations": int(have) + len(invites), "created": existing is None}
