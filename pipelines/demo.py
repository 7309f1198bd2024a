"""The one-click demo as a job kind: it starts the experiment preset `demo` and returns at once.

The demo is an experiment like any other (`pipelines.experiments.presets.demo`): demo corpus → ingest →
mfcc and logmel features → search → units → tiny vocoders → stimuli → resynthesis metrics → a study
with the natural recordings as reference → the decision report. Its stages are jobs of their own, so
this job does not hold a worker slot while they run; follow it with `obt-eval experiment status demo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from pipelines.steps import StepContext, step


@dataclass
class DemoParams:
    encoders: list[str] = field(default_factory=lambda: ["mfcc", "logmel"])  # hub ids work when online
    speakers_per_language: Annotated[int, Field(ge=1, le=6)] = 2
    sentences_per_language: Annotated[int, Field(ge=2, le=24)] = 6
    k: Annotated[int, Field(ge=2, le=10_000)] = 50
    vocoder_steps: Annotated[int, Field(ge=1)] = 300  # the `tiny` preset: shows training, does not sound good
    study_utterances: Annotated[int, Field(ge=2, le=100)] = 6
    raters: Annotated[int, Field(ge=0, le=100)] = 3


def demo_overrides(p: DemoParams) -> dict:
    """The preset's options that these job parameters replace."""
    return {"encoders": list(p.encoders), "speakers_per_language": p.speakers_per_language,
            "sentences_per_language": p.sentences_per_language, "ks": [p.k], "vocoder_steps": p.vocoder_steps,
            "vocoder_validate_every": p.vocoder_steps, "study_utterances": p.study_utterances, "raters": p.raters}


@step("demo", DemoParams, gpu=False)
def run_demo(p: DemoParams, ctx: StepContext) -> dict:
    """Start the demo experiment (synthetic Portuguese + Guarani corpus → … → study and decision report)."""
    from pipelines.experiments import api

    ctx.stage(0, 1, "start the demo experiment")
    name = api.start_preset(ctx.workspace, "demo", **demo_overrides(p))
    state = api.status(ctx.workspace, name)
    ctx.log(f"experiment {name!r}: {state['total']} stages; follow it with `obt-eval experiment status {name}`")
    return {"experiment": name, "stages": state["total"], "state": state["state"], "folder": state["folder"]}
