"""The one-click demo: the whole product on a synthetic corpus in a few minutes on a CPU.

demo corpus (espeak-ng) → ingest → features for each encoder (the weightless `mfcc` and `logmel` by
default: no download) → units → a tiny vocoder per encoder → stimuli → a blinded study with the natural
recordings as reference → rater invitations. Every step resumes from its artifacts, so a killed demo
resumed continues where it stopped. The tiny vocoders sound rough: the demo shows the workflow, not results.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pipelines.steps import StepContext, step

DEMO_CORPUS = "demo"
DEMO_STUDY = "demo"


@dataclass
class DemoParams:
    encoders: list[str] = field(default_factory=lambda: ["mfcc", "logmel"])  # hub ids work when online
    speakers_per_language: int = 2
    sentences_per_language: int = 6
    k: int = 50
    vocoder_steps: int = 300  # the `tiny` preset: ~20-60 s on a CPU; exercises training, does not sound good
    study_utterances: int = 6
    raters: int = 3


def _ids_for_study(units, vocoder_dir: Path, count: int) -> list[str]:
    """The vocoder's held-out utterances first (unseen in training), topped up to `count`."""
    from obt_eval.atomic import read_json

    config = read_json(vocoder_dir / "config.json")
    held = [u for u in config["meta"].get("validation_ids", []) if u in units]
    rest = [u for u in units.ids if u not in held]
    return (held + rest)[:count]


@step("demo", DemoParams)
def run_demo(p: DemoParams, ctx: StepContext) -> dict:
    """The whole pipeline on a synthetic Portuguese + Guarani corpus, ending in a study raters can open."""
    from db.studies import get_study, invite_raters
    from obt_eval.corpus.ingest import ingest
    from obt_eval.corpus.manifest import Corpus
    from obt_eval.demo_corpus import make_demo_corpus
    from obt_eval.errors import NotFoundError
    from obt_eval.features.extract import extract_features
    from obt_eval.units.kmeans import KMeansConfig
    from obt_eval.units.learn import learn_units
    from obt_eval.vocoder.config import preset
    from obt_eval.vocoder.synthesis import synthesize_units
    from obt_eval.vocoder.train import train_vocoder
    from obt_eval.workspace import safe_name
    from pipelines.jobs import database
    from pipelines.studies import create_study_from_dirs

    ws = ctx.workspace
    encoders = list(dict.fromkeys(p.encoders))
    total = 3 + 3 * len(encoders) + 1
    stage = iter(range(total))
    source = Path(ws.root) / "demo_source"

    ctx.stage(next(stage), total, "demo corpus (espeak-ng)")
    if not (source / "metadata.csv").exists():
        make_demo_corpus(source, speakers_per_language=p.speakers_per_language,
                         sentences_per_language=p.sentences_per_language, progress=True)
    ctx.stage(next(stage), total, "ingest")
    if not (ws.corpus_dir(DEMO_CORPUS) / "manifest.parquet").exists():
        ingest(source / "wavs", DEMO_CORPUS, ws, metadata=source / "metadata.csv", alignments=source / "textgrids")
    corpus = Corpus.open(DEMO_CORPUS, ws)

    ctx.stage(next(stage), total, f"features: {', '.join(encoders)}")
    stores = {}
    for encoder in encoders:
        stores[encoder] = next(iter(extract_features(corpus, encoder, None, ws, device=ctx.device).values()))

    tiny = preset("tiny")
    # one validation pass and checkpoints that a resumed demo can continue from, not one every 10 steps
    tiny = replace(tiny, train=replace(tiny.train, validate_every=p.vocoder_steps, checkpoint_every=20,
                                       log_every=10))
    systems: list[tuple[str, str]] = []
    for encoder in encoders:
        name = safe_name(encoder)
        ctx.stage(next(stage), total, f"units {name} (k={p.k})")
        units = learn_units(stores[encoder], KMeansConfig(k=p.k, n_init=3, sample_frac=1.0, device=ctx.device),
                            out_dir=ws.units_dir(f"demo-{name}"), workspace=ws).units
        ctx.stage(next(stage), total, f"vocoder {name} ({p.vocoder_steps} steps)")
        vocoder_dir = ws.vocoder_dir(f"demo-{name}")
        train_vocoder(units, vocoder_dir, tiny, workspace=ws, steps=p.vocoder_steps, device=ctx.device)
        ctx.stage(next(stage), total, f"synthesize {name}")
        ids = _ids_for_study(units, vocoder_dir, p.study_utterances)
        synthesize_units(vocoder_dir, units, ws.stimuli_dir(f"demo-{name}"), ids=ids, workspace=ws,
                         system=name, device=ctx.device)
        systems.append((name, str(ws.stimuli_dir(f"demo-{name}"))))

    ctx.stage(next(stage), total, "listening study")
    db = database(ws)
    with db.session() as s:
        try:
            get_study(s, DEMO_STUDY)
            exists = True
        except NotFoundError:
            exists = False
    summary = {}
    if not exists:
        summary = create_study_from_dirs(DEMO_STUDY, systems, ws, reference=("natural", str(source / "wavs")),
                                         target_ratings=2, trials_per_block=6, max_blocks_per_rater=1,
                                         allow_partial=True)
    with db.session() as s:
        invites = invite_raters(s, get_study(s, DEMO_STUDY), p.raters)
    ctx.log(f"demo study {DEMO_STUDY!r} ready with {len(invites)} invitations")
    return {"corpus": DEMO_CORPUS, "study": DEMO_STUDY, "systems": [n for n, _ in systems],
            "stimuli": {n: d for n, d in systems}, "trials": summary.get("trials"),
            "invites": [i["invite_token"] for i in invites]}
