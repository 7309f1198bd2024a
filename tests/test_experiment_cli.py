"""The `obt-eval experiment` commands as a user types them (no worker: the stages wait in the queue)."""

from __future__ import annotations

import json

import pytest
from conftest import write_tone_wavs

from obt_eval_cli.main import run


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_run_detached_then_status_list_and_cancel(workspace, tone_corpus, tmp_path, capsys):
    prod = tmp_path / "prod"
    prod.mkdir()
    (prod / "utt00.wav").write_bytes(tone_corpus.audio_path("utt00").read_bytes())
    assert run(["experiment", "run", "--name", "t1", "--corpus", "tones", "--encoders", "mfcc,logmel", "--k", "4,8",
                "--study-utterances", "2", "--system", f"prod={prod}", "--detach", "--no-worker", "--json"]) == 0
    started = last_json(capsys)
    assert started["experiment"] == "t1" and started["state"] == "running"
    plan = json.loads((workspace.root / "experiments" / "t1" / "plan.json").read_text())
    assert plan["options"]["ks"] == [4, 8] and plan["options"]["systems"] == {"prod": str(prod)}
    assert run(["experiment", "status", "t1", "--json"]) == 0
    status = last_json(capsys)
    states = {r["id"]: r["state"] for r in status["stages"]}
    assert states["corpus"] == states["heldout"] == "done"  # computed on the spot
    assert states["extract:mfcc"] == states["extract:logmel"] == states["import:prod"] == "queued"
    assert states["search:mfcc"] == "pending" and states["study"] == "pending"
    assert run(["experiment", "list", "--json"]) == 0
    assert [e["name"] for e in last_json(capsys)["experiments"]] == ["t1"]
    # run again with one option changed and the rest kept from the stored plan
    assert run(["experiment", "run", "--name", "t1", "--k", "4", "--detach", "--no-worker", "--json"]) == 0
    plan = json.loads((workspace.root / "experiments" / "t1" / "plan.json").read_text())
    assert plan["options"]["ks"] == [4] and plan["options"]["encoders"] == ["mfcc", "logmel"]
    assert plan["history"][-1]["event"] == "options changed: ks"
    # a stage that failed goes again with `experiment resume`: the same job, queued again
    from pipelines import jobs

    extract = next(r for r in status["stages"] if r["id"] == "extract:mfcc")["job_id"]
    jobs._finish(extract, workspace, "failed", error="out of memory")
    assert run(["experiment", "status", "t1", "--json"]) == 0
    assert next(r for r in last_json(capsys)["stages"] if r["id"] == "extract:mfcc")["state"] == "failed"
    assert run(["experiment", "resume", "t1", "--detach", "--no-worker", "--json"]) == 0
    capsys.readouterr()
    assert jobs.get(extract, workspace).state == "queued"
    assert run(["experiment", "cancel", "t1", "--json"]) == 0
    assert last_json(capsys)["state"] == "cancelled"

    assert {j.state for j in jobs.list_jobs(workspace)} == {"cancelled"}


def test_user_errors_say_what_to_do(workspace, tone_corpus, capsys):
    assert run(["experiment", "run", "--name", "t2", "--encoders", "mfcc", "--no-worker"]) == 2
    assert "needs --corpus" in capsys.readouterr().err
    assert run(["experiment", "run", "--name", "t2", "--corpus", "nope", "--encoders", "mfcc", "--no-worker"]) == 2
    assert "ingest it first" in capsys.readouterr().err
    assert run(["experiment", "run", "--name", "t2", "--corpus", "tones", "--encoders", "mfcc", "--system", "x",
                "--no-worker"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    assert run(["experiment", "run", "--name", "t2", "--corpus", "tones", "--encoders", "mfcc", "--layers", "top",
                "--no-worker"]) == 2
    assert "--layers" in capsys.readouterr().err
    assert run(["experiment", "status", "missing"]) == 2
    assert "obt-eval experiment list" in capsys.readouterr().err
    assert run(["experiment", "run", "--help"]) == 0


def test_an_outside_system_with_no_held_out_clip_fails_its_stage_with_the_list_to_synthesize(workspace, tone_corpus,
                                                                                            tmp_path):
    from pipelines.experiments import api
    from pipelines.experiments.steps import ImportSystemParams, run_import_system
    from pipelines.progress import ProgressFile
    from pipelines.steps import StepContext

    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "someone_else.wav").write_bytes(tone_corpus.audio_path("utt01").read_bytes())
    ids = tmp_path / "ids.txt"
    ids.write_text("utt00\nutt02\n")
    ctx = StepContext(workspace=workspace, job_dir=tmp_path, progress=ProgressFile(tmp_path))
    params = ImportSystemParams(name="other", folder=str(folder), corpus="tones", out=str(tmp_path / "out"),
                                ids_file=str(ids))
    try:
        run_import_system(params, ctx)
    except Exception as exc:  # noqa: BLE001 — the assertion is on the message
        assert "none of the 2 utterances" in str(exc) and "1 of its 1 files are named after no utterance" in str(exc)
        assert str(ids) in exc.hint
    else:
        raise AssertionError("an unusable folder was accepted")
    (folder / "utt02.wav").write_bytes(tone_corpus.audio_path("utt02").read_bytes())
    out = run_import_system(params, ctx)
    assert out["imported"] == 1 and out["unknown_ids"] == ["someone_else"] and out["missing_ids"] == ["utt00"]
    side = json.loads((tmp_path / "out" / "stimuli.json").read_text())
    assert side["external"] is True and "utt02.wav" in side["checksums"]
    assert api.list_experiments(workspace) == []


def test_the_demo_refuses_a_foreign_corpus_named_demo_and_uses_a_demo_corpus(workspace, tmp_path):
    """Issue 11.9: a workspace that already has a corpus `demo` (the README's quick start makes one)."""
    from obt_eval.corpus.ingest import ingest
    from obt_eval.demo_corpus import make_demo_corpus
    from obt_eval.errors import BadInputError
    from pipelines.experiments.steps import CorpusParams, run_corpus
    from pipelines.progress import ProgressFile
    from pipelines.steps import StepContext

    ctx = StepContext(workspace=workspace, job_dir=tmp_path, progress=ProgressFile(tmp_path))
    write_tone_wavs(tmp_path / "mine")
    ingest(tmp_path / "mine", "demo", workspace, progress=False)
    with pytest.raises(BadInputError, match="not made by `obt-eval demo-corpus`") as err:
        run_corpus(CorpusParams(), ctx)
    assert "--workspace" in err.value.hint and "experiment run" in err.value.hint
    other = workspace.__class__.at(tmp_path / "ws2")
    made = make_demo_corpus(tmp_path / "readme_demo", speakers_per_language=1, sentences_per_language=2)
    ingest(made.wav_dir, "demo", other, metadata=made.metadata_path, progress=False)
    ctx2 = StepContext(workspace=other, job_dir=tmp_path, progress=ProgressFile(tmp_path))
    out = run_corpus(CorpusParams(), ctx2)
    assert out["reused"] is True and not (other.root / "demo_source").exists()
