"""Experiments on the real job queue: the demo preset end to end, re-runs, option changes, parallel stages, crashes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from app_helpers import alive, stop_workers
from sqlalchemy import select

from pipelines import jobs
from pipelines.experiments import api
from pipelines.worker import start_local_worker, worker_running

DEADLINE = 1500.0  # seconds; a shared 2-core machine under load is slow, a correct run never gets near it


def wait_for(condition, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stage_jobs(workspace, name: str) -> dict[str, int | None]:
    return {r["id"]: r["job_id"] for r in api.status(workspace, name)["stages"]}


def finished(workspace, name: str) -> dict:
    state = api.advance(workspace, name)
    return state if state["state"] in ("done", "failed", "cancelled") else None


@pytest.fixture
def own_slots(tmp_path, monkeypatch):
    """Worker slot locks in this test's temp folder: other processes on the machine cannot hold them."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


@pytest.mark.slow
def test_the_demo_job_runs_the_demo_preset_and_option_changes_rerun_only_what_they_affect(workspace, own_slots):
    from db.models import Rater, Study, System
    from pipelines.jobs import database

    pid = start_local_worker(workspace, slots=0)
    assert pid
    try:
        # what the app's one-click demo does: a `demo` job, which starts the experiment and returns
        demo = jobs.submit("demo", {"speakers_per_language": 2, "sentences_per_language": 2, "k": 8,
                                    "vocoder_steps": 2, "study_utterances": 2, "raters": 2}, workspace)
        assert wait_for(lambda: jobs.get(demo.id, workspace).state in ("done", "failed"), "the demo job")
        assert jobs.get(demo.id, workspace).artifacts["experiment"] == "demo"
        state = wait_for(lambda: finished(workspace, "demo"), "the demo experiment")
        assert state["state"] == "done", [(r["id"], r["error"], r["log_tail"]) for r in state["stages"]]
        kinds = {r["id"].split(":")[0]: r["kind"] for r in state["stages"]}
        assert kinds["corpus-source"] == "experiment-corpus" and kinds["extract"] == "extract"
        assert kinds["vocoder"] == "experiment-vocoder" and kinds["study"] == "experiment-study"
        with database(workspace).session() as s:
            study = s.scalar(select(Study).where(Study.name == "demo"))
            assert study is not None and study.status == "open"
            assert {x.name for x in s.scalars(select(System).where(System.study_id == study.id))} == {
                "mfcc", "logmel", "natural", "anchor"}
            assert len(s.scalars(select(Rater).where(Rater.study_id == study.id)).all()) == 2
        heldout = next(r for r in state["stages"] if r["id"] == "heldout")["outputs"]["ids"]
        for enc in ("mfcc", "logmel"):  # every contender speaks exactly the held-out utterances
            out = next(r for r in state["stages"] if r["id"] == f"synthesize:{enc}")["outputs"]["out"]
            assert sorted(p.stem for p in Path(out).glob("*.wav")) == sorted(heldout)
        page = (workspace.root / "experiments" / "demo" / "report" / "index.html").read_text()
        assert "Which encoder? — demo" in page and "listening test: 0 of" in page
        provenance = json.loads((workspace.root / "experiments" / "demo" / "provenance.json").read_text())
        assert provenance["stages"]["vocoder:mfcc"]["artifacts"]  # sidecar checksums of what it made
        invited = api.create_study(workspace, "demo", raters=1)  # what the app's "invite" button calls
        assert invited["study"] == "demo" and len(invited["invites"]) == 1
        crowd = api.create_study(workspace, "demo", raters=40)  # more raters than the design has blocks
        short = crowd["waiting_raters"] - crowd["free_blocks"]
        assert short > 0 and "--grow" in crowd["warnings"][0]
        grown = api.create_study(workspace, "demo", grow=True)  # the researcher chose to grow the design
        assert grown["added_blocks"] == short and grown["warnings"] == []

        before = stage_jobs(workspace, "demo")
        count = len(jobs.list_jobs(workspace, limit=500))
        options = api.status(workspace, "demo")["options"]
        api.start(workspace, options)  # the same options again: nothing to do
        assert api.status(workspace, "demo")["state"] == "done"
        assert len(jobs.list_jobs(workspace, limit=500)) == count and stage_jobs(workspace, "demo") == before

        api.start(workspace, {**options, "vocoder_steps": 3})  # a vocoder option: extraction, search, units stay
        after = stage_jobs(workspace, "demo")
        pending = {r["id"] for r in api.status(workspace, "demo")["stages"] if r["state"] != "done"}
        assert pending == {f"{t}:{e}" for t in ("vocoder", "synthesize", "resynthesis") for e in ("mfcc", "logmel")} \
            | {"study"}
        resubmitted = {sid for sid in before if after[sid] is not None and after[sid] != before[sid]}
        assert resubmitted == {"vocoder:mfcc", "vocoder:logmel"}  # submitted now; the others wait on them
        assert all(after[sid] == before[sid] for sid in before if sid not in pending)  # the rest is kept
        api.cancel(workspace, "demo")

        api.start(workspace, {**options, "ks": [6]})  # a codebook option: only extraction is kept
        pending = {r["id"] for r in api.status(workspace, "demo")["stages"] if r["state"] != "done"}
        assert pending == {f"{t}:{e}" for t in ("search", "choose", "unit-metrics", "vocoder", "synthesize",
                                                "resynthesis") for e in ("mfcc", "logmel")} | {"study"}
        assert all(stage_jobs(workspace, "demo")[f"extract:{e}"] == before[f"extract:{e}"] for e in ("mfcc", "logmel"))
        api.cancel(workspace, "demo")
    finally:
        stop_workers(workspace.root)


@pytest.mark.slow
def test_two_encoders_stages_run_at_once_on_a_worker_with_two_cpu_slots(workspace, tone_corpus, own_slots):
    from db.models import Job
    from pipelines.jobs import database

    assert start_local_worker(workspace, slots=2)
    try:
        api.start(workspace, {"name": "pair", "corpus": "tones", "encoders": ["mfcc", "logmel"], "ks": [4],
                              "study_utterances": 2, "vocoder_preset": "tiny", "vocoder_steps": 1})

        def extracted() -> dict | None:
            ids = stage_jobs(workspace, "pair")
            views = [jobs.get(ids[f"extract:{e}"], workspace) for e in ("mfcc", "logmel") if ids[f"extract:{e}"]]
            return views if len(views) == 2 and all(v.state in ("done", "failed") for v in views) else None

        a, b = wait_for(extracted, "both extractions")
        assert a.state == b.state == "done", (a.error, b.error)
        # recorded start/finish of each job: the intervals overlap, so both ran at once
        assert a.started_at < b.finished_at and b.started_at < a.finished_at, (a.started_at, a.finished_at,
                                                                                b.started_at, b.finished_at)
        with database(workspace).session() as s:
            spec = json.loads((jobs.job_dir(workspace, a.id) / "spec.json").read_text())
            assert spec["device"] is None  # a CPU slot, not a GPU
            assert s.get(Job, a.id).worker == s.get(Job, b.id).worker
        api.cancel(workspace, "pair")
    finally:
        stop_workers(workspace.root)


@pytest.mark.slow
def test_a_crashed_worker_does_not_stop_the_experiment_the_stage_continues_from_its_checkpoint(
        workspace, tone_corpus, own_slots):
    pid = start_local_worker(workspace, slots=0)
    try:
        api.start(workspace, {"name": "crash", "corpus": "tones", "encoders": ["mfcc"], "ks": [4],
                              "study_utterances": 2, "vocoder_preset": "tiny", "vocoder_steps": 30,
                              "vocoder_checkpoint_every": 5, "vocoder_validate_every": 30})

        def vocoder_job() -> int | None:
            row = next(r for r in api.advance(workspace, "crash")["stages"] if r["id"] == "vocoder:mfcc")
            return row["job_id"]

        job_id = wait_for(vocoder_job, "the vocoder stage")
        out = Path(jobs.get(job_id, workspace).params["out"])
        wait_for(lambda: (out / "latest.json").exists(), "the vocoder's first checkpoint")
        os.kill(pid, signal.SIGKILL)  # the machine "crashes": worker gone, its child gets SIGTERM
        assert jobs.get(job_id, workspace).state == "running"  # killed mid-way (30 steps, checkpoints every 5)
        done_before = {r["id"]: r["job_id"] for r in api.status(workspace, "crash")["stages"] if r["state"] == "done"}
        assert {"extract:mfcc", "search:mfcc", "choose:mfcc"} <= set(done_before)
        # a dying process loses its command line before its files: wait until its worker lock is free
        wait_for(lambda: not alive(pid) and not worker_running(workspace), "the worker to die", 120)
        pid = start_local_worker(workspace, slots=0)  # the next worker fails the orphaned job; the stage resumes

        def vocoder_done() -> dict | None:
            row = next(r for r in api.advance(workspace, "crash")["stages"] if r["id"] == "vocoder:mfcc")
            return row if row["state"] in ("done", "failed") else None

        row = wait_for(vocoder_done, "the resumed vocoder")
        assert row["state"] == "done" and row["job_id"] == job_id  # the same job, resumed, not a new one
        assert row["outputs"]["resumed_from"] > 0  # it continued from its last checkpoint
        history = [h["event"] for h in api.status(workspace, "crash")["history"]]
        assert f"vocoder:mfcc: its worker stopped; resumed job {job_id}" in history
        after = {r["id"]: r["job_id"] for r in api.status(workspace, "crash")["stages"] if r["id"] in done_before}
        assert after == done_before  # finished stages were not redone
        api.cancel(workspace, "crash")
    finally:
        stop_workers(workspace.root)
