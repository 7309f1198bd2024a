"""The one-click demo end to end on a tiny setting: corpus → features → units → vocoders → stimuli → study."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from pipelines.progress import ProgressFile
from pipelines.steps import StepContext, parse


@pytest.mark.slow
def test_the_demo_ends_in_a_study_raters_can_open(workspace, tmp_path):
    from db.models import Rater, Study, System
    from pipelines.demo import run_demo
    from pipelines.jobs import database

    params = parse("demo", {"speakers_per_language": 1, "sentences_per_language": 3, "k": 8, "vocoder_steps": 2,
                            "study_utterances": 3, "raters": 2})
    ctx = StepContext(workspace=workspace, job_dir=tmp_path, progress=ProgressFile(tmp_path))
    out = run_demo(params, ctx)
    assert out["study"] == "demo" and out["systems"] == ["mfcc", "logmel"] and len(out["invites"]) == 2
    for folder in out["stimuli"].values():
        assert len(list((workspace.root / "stimuli" / folder.rsplit("/", 1)[-1]).glob("*.wav"))) == 3
    with database(workspace).session() as s:
        study = s.scalar(select(Study).where(Study.name == "demo"))
        assert study.status == "open"
        assert {x.name for x in s.scalars(select(System))} == {"mfcc", "logmel", "natural", "anchor"}
        assert len(s.scalars(select(Rater)).all()) == 2
    assert ctx.progress.stage_index == ctx.progress.stage_count - 1
    again = run_demo(params, ctx)  # a resumed demo reuses every artifact and only adds invitations
    assert again["systems"] == out["systems"] and again["invites"] != out["invites"]
