"""Creating a study as a job (rendering every clip takes a while on a big study) and from the demo.

Composes `obt_eval.study.prepare.prepare_study` (audio, design) with `db.studies.create_study` (rows),
the same two calls `obt-eval study create` makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.workspace import Workspace
from pipelines import params as P
from pipelines.params import parse_specs
from pipelines.steps import StepContext, resolve, step

__all__ = ["StudyParams", "create_study_from_dirs", "parse_specs", "run_study"]


def create_study_from_dirs(name: str, systems: list[tuple[str, str]], workspace: Workspace, *,
                           reference: tuple[str, str] | None = None, target_ratings: int = 10,
                           trials_per_block: int = 10, max_blocks_per_rater: int | None = None,
                           seed: int | None = None, question: str | None = None,
                           preference: bool = True, allow_partial: bool = False, progress: bool = True) -> dict:
    """Render and store a study from folders of WAVs (one per system); returns its summary."""
    from db.studies import StimulusRecord, SystemRecord, TrialRecord, create_study, get_study
    from obt_eval.study.config import DesignConfig, Protocol
    from obt_eval.study.prepare import prepare_study
    from pipelines.jobs import database

    db = database(workspace)
    with db.session() as s:  # refuse a taken name before rendering any audio
        try:
            get_study(s, name)
        except NotFoundError:
            pass
        else:
            raise BadInputError(f"a study named {name!r} already exists", "choose another name")
    protocol = Protocol(**({"question": question} if question else {}))
    if not preference:
        protocol = Protocol(question=protocol.question, preference_question=None, preference_options=())
    prepared = prepare_study(name, systems, reference, workspace=workspace, protocol=protocol,
                             design=DesignConfig(target_ratings=target_ratings, trials_per_block=trials_per_block,
                                                 max_blocks_per_rater=max_blocks_per_rater, seed=seed),
                             allow_partial=allow_partial, progress=progress)
    with db.session() as s:
        create_study(s, prepared.name, prepared.protocol, prepared.design, prepared.settings,
                     str(prepared.stimuli_dir.resolve()), prepared.sample_rate,
                     [SystemRecord(**x) for x in prepared.systems], [StimulusRecord(**x) for x in prepared.stimuli],
                     [TrialRecord(**t) for t in prepared.trials])
    return {"study": name, "stimuli": len(prepared.stimuli), "warnings": prepared.warnings} | prepared.design["summary"]


@dataclass
class StudyParams:
    name: P.Name
    systems: P.StimuliSpecs  # "name=stimuli_dir, name2=dir2" (dirs as paths or names under workspace/stimuli)
    reference: P.StimuliSpecs | None = None  # "natural=dir" of natural recordings
    target_ratings: Annotated[int, Field(ge=1, le=10_000)] = 10  # P.808 expected_votes_per_file default
    trials_per_block: Annotated[int, Field(ge=1, le=1_000)] = 10
    max_blocks_per_rater: Annotated[int, Field(ge=1, le=10_000)] | None = None  # None: a rater may go on
    seed: P.Seed | None = None
    question: Annotated[str, Field(max_length=2_000)] | None = None
    preference: bool = True
    allow_partial: bool = False


@step("study", StudyParams, gpu=False)
def run_study(p: StudyParams, ctx: StepContext) -> dict:
    """Create a blinded A/B study from each system's stimuli folder (loudness-normalised opaque copies)."""
    ctx.stage(0, 1, f"study {p.name}")
    ws = ctx.workspace
    # each folder resolved (and confined) here: the library would read a relative one from this process's cwd
    systems = [(n, str(resolve(ws, d, "stimuli"))) for n, d in parse_specs(p.systems)]
    reference = [(n, str(resolve(ws, d, "stimuli"))) for n, d in parse_specs(p.reference)][0] if p.reference else None
    return create_study_from_dirs(p.name, systems, ws, reference=reference,
                                  target_ratings=p.target_ratings, trials_per_block=p.trials_per_block,
                                  max_blocks_per_rater=p.max_blocks_per_rater, seed=p.seed,
                                  question=p.question, preference=p.preference, allow_partial=p.allow_partial)
