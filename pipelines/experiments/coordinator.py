"""The coordinator: keeps an experiment folder (``plan.json``) in step with the jobs that carry out its stages.

`advance` is idempotent and quick: it polls the stages' jobs, computes the cheap local stages, submits
every stage whose dependencies are done and cancels runs made stale by an option change. It holds no
worker slot and never waits: the `experiment run` CLI calls it in its polling loop, the app when it
looks, and every worker after each job (the runner's finish hook calls `job_finished`), so a detached
experiment finishes with nobody watching, and one CPU slot is enough for the whole chain.

An experiment folder, ``<workspace>/experiments/<name>/``: ``plan.json`` (options, the facts they
resolved to, every stage's key, job ids, state and outputs, the history), ``provenance.json`` (code
version and, per stage, its job parameters and the checksums of the artifacts' sidecars), the held-out
id lists, ``search/`` (the layer/k searches), ``natural/`` (the study's reference clips) and ``report/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from obt_eval.atomic import read_json, write_json, write_text
from obt_eval.errors import NotFoundError, ObtEvalError
from obt_eval.workspace import Workspace
from pipelines.experiments import plan as P
from pipelines.experiments.options import (
    EncoderFacts,
    ExperimentOptions,
    SystemFacts,
    resolve_encoder_facts,
    resolve_system_facts,
    validate_options,
)

EXPERIMENTS = "experiments"
PLAN_FILE = "plan.json"
PROVENANCE_FILE = "provenance.json"
LOCK_FILE = ".lock"
FINAL = ("done", "failed", "cancelled")
SIDECARS = ("sidecar.json", "config.json", "stimuli.json", "results.json", "metrics.json")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def experiments_root(workspace: Workspace) -> Path:
    return Path(workspace.root) / EXPERIMENTS


def experiment_dir(workspace: Workspace, name: str) -> Path:
    return experiments_root(workspace) / name


@contextlib.contextmanager
def locked(workspace: Workspace, name: str) -> Iterator[None]:
    """One coordinator at a time per experiment (CLI loop, app and worker hooks may all call `advance`)."""
    folder = experiment_dir(workspace, name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_plan(workspace: Workspace, name: str) -> dict[str, Any]:
    path = experiment_dir(workspace, name) / PLAN_FILE
    if not path.exists():
        raise NotFoundError(f"no experiment {name!r} in {workspace.root}",
                            "list them with `obt-eval experiment list`, or start one with `obt-eval experiment run`")
    return read_json(path)


def _save(workspace: Workspace, plan: dict[str, Any]) -> None:
    plan["updated_at"] = now()
    write_json(experiment_dir(workspace, plan["name"]) / PLAN_FILE, plan)


def plan_input(plan: dict[str, Any]) -> P.PlanInput:
    options = validate_options(plan["options"])
    encoders = tuple(EncoderFacts(**{**e, "candidates": tuple(e["candidates"])}) for e in plan["facts"]["encoders"])
    systems = tuple(SystemFacts(**s) for s in plan["facts"]["systems"])
    return P.PlanInput(options, encoders, systems)


_fingerprints: dict[tuple, str] = {}


def corpus_fingerprint(workspace: Workspace, corpus: str) -> str | None:
    """Hash of the corpus's manifest and alignments (None while the corpus does not exist yet)."""
    root = workspace.corpus_dir(corpus)
    files = [root / n for n in ("manifest.parquet", "alignments.parquet", "corpus.item") if (root / n).exists()]
    if not files or files[0].name != "manifest.parquet":
        return None
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _fingerprints:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
        _fingerprints[stamp] = digest.hexdigest()[:16]
    return _fingerprints[stamp]


def naming(workspace: Workspace, name: str) -> P.Naming:
    root = str(Path(workspace.root).resolve())
    return P.Naming(name, root, f"{root}/{EXPERIMENTS}/{name}")


# --- starting, resuming, cancelling -----------------------------------------------------------------------


def start(workspace: Workspace, options: ExperimentOptions | dict[str, Any]) -> dict[str, Any]:
    """Create the experiment (or apply new options to it) and take its first steps; returns the plan."""
    opts = validate_options(options)
    if opts.demo_corpus is None and corpus_fingerprint(workspace, opts.corpus) is None:
        raise NotFoundError(f"no corpus {opts.corpus!r} in {workspace.root}",
                            f"ingest it first: obt-eval ingest AUDIO_DIR --name {opts.corpus}")
    facts = {"encoders": [dataclasses.asdict(resolve_encoder_facts(e, opts.layers)) for e in opts.encoders],
             "systems": [dataclasses.asdict(s) for s in resolve_system_facts(opts.systems, workspace)]}
    with locked(workspace, opts.name):
        path = experiment_dir(workspace, opts.name) / PLAN_FILE
        plan = read_json(path) if path.exists() else {"name": opts.name, "created_at": now(), "stages": {},
                                                      "history": [], "studies": {}}
        old = plan.get("options")
        if old is None:
            event = "created"
        elif old != opts.to_dict():
            changed = sorted(k for k in opts.to_dict() if old.get(k) != opts.to_dict()[k])
            event = f"options changed: {', '.join(changed)}"
        else:
            event = "resumed" if plan.get("state") != "running" else "run again"
        plan.update(options=opts.to_dict(), facts=facts, state="running")
        plan["history"].append({"at": now(), "event": event})
        _refresh(workspace, plan["stages"])
        _resume_failed(workspace, plan)
        _save(workspace, plan)
    return advance(workspace, opts.name)


def resume(workspace: Workspace, name: str) -> dict[str, Any]:
    """Run a failed, cancelled or interrupted experiment on: failed stages continue from their artifacts."""
    with locked(workspace, name):
        plan = load_plan(workspace, name)
        plan["state"] = "running"
        plan["history"].append({"at": now(), "event": "resumed"})
        _refresh(workspace, plan["stages"])
        _resume_failed(workspace, plan)
        _save(workspace, plan)
    return advance(workspace, name)


def current_keys(workspace: Workspace, plan: dict[str, Any]) -> dict[str, str | None]:
    pi = plan_input(plan)
    return P.compute_keys(P.build_stages(pi), {"corpus": corpus_fingerprint(workspace, pi.options.corpus)})


def _resume_failed(workspace: Workspace, plan: dict[str, Any]) -> None:
    """Failed or cancelled stages of the current plan go again: a job is resumed (it continues from its
    artifacts), a local stage is recomputed; failures of outdated keys are simply superseded."""
    from pipelines import jobs

    keys = current_keys(workspace, plan)
    for sid, rec in list(plan["stages"].items()):
        if rec.get("state") not in ("failed", "cancelled"):
            continue
        if rec.get("job_id") is not None and rec.get("key") == keys.get(sid):
            try:
                jobs.resume(rec["job_id"], workspace)
                rec.update(state="queued", error=None)
                continue
            except ObtEvalError:
                pass  # the job row is gone or was resumed elsewhere: submit the stage afresh
        rec["state"] = "superseded"


def cancel(workspace: Workspace, name: str) -> dict[str, Any]:
    """Stop an experiment: its queued and running stage jobs are cancelled; `resume` takes it up again."""
    from pipelines import jobs

    with locked(workspace, name):
        plan = load_plan(workspace, name)
        _refresh(workspace, plan["stages"])
        for rec in plan["stages"].values():
            if rec.get("state") in P.ACTIVE and rec.get("job_id") is not None:
                with contextlib.suppress(ObtEvalError):
                    jobs.cancel(rec["job_id"], workspace)
                rec.update(state="cancelled", error="cancelled with the experiment")
        plan["state"] = "cancelled"
        plan["history"].append({"at": now(), "event": "cancelled"})
        _save(workspace, plan)
        return plan


# --- advancing --------------------------------------------------------------------------------------------


def _refresh(workspace: Workspace, records: dict[str, dict]) -> None:
    """Copy the state of every active stage's job from the jobs table."""
    from pipelines import jobs

    for rec in records.values():
        if rec.get("state") not in P.ACTIVE or rec.get("job_id") is None:
            continue
        try:
            view = jobs.get(rec["job_id"], workspace)
        except NotFoundError:
            rec.update(state="failed", error=f"job {rec['job_id']} no longer exists")
            continue
        rec["state"] = view.state
        rec["started_at"] = view.started_at.isoformat(timespec="seconds") if view.started_at else None
        rec["finished_at"] = view.finished_at.isoformat(timespec="seconds") if view.finished_at else None
        rec["seconds"] = round(view.seconds, 1) if view.seconds is not None else None
        if view.state == "done":
            rec["outputs"] = view.artifacts
            rec["artifacts"] = artifact_checksums(view.artifacts)
        elif view.state in ("failed", "cancelled"):
            rec["error"] = view.error


def artifact_checksums(outputs: dict[str, Any]) -> dict[str, str]:
    """sha256 of the sidecar of every artifact folder (or file) a stage's outputs name: what it was made from."""
    out = {}
    for value in outputs.values():
        if not isinstance(value, str) or not value.startswith("/"):
            continue
        path = Path(value)
        if path.is_dir():
            path = next((path / n for n in SIDECARS if (path / n).exists()), None)
        if path is not None and path.is_file():
            out[str(path)] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def advance(workspace: Workspace, name: str) -> dict[str, Any]:
    """One coordination pass (see the module docstring); returns the updated plan."""
    with locked(workspace, name):
        plan = load_plan(workspace, name)
        if plan.get("state") == "cancelled":
            return plan
        loaded = json.dumps(plan, sort_keys=True, default=str)
        was = plan.get("state")
        pi = plan_input(plan)
        stages = P.build_stages(pi)
        by_id = {s.id: s for s in stages}
        records: dict[str, dict] = plan["stages"]
        _refresh(workspace, records)
        keys = P.compute_keys(stages, {"corpus": corpus_fingerprint(workspace, pi.options.corpus)})
        _resume_crashed(workspace, plan, keys)
        decisions: list[P.Decision] = []
        for _ in range(len(stages) + 2):
            decisions = P.decide(stages, keys, records)
            moved = False
            for d in decisions:
                stage = by_id[d.stage]
                if d.action == "cancel-stale":
                    _cancel_stale(workspace, records, stage.id)
                    moved = True
                elif d.action == "local":
                    _run_local(workspace, plan, pi, stage, keys, records)
                    moved = True
                elif d.action == "submit":
                    _submit(workspace, plan, pi, stage, keys, records)
                    moved = True
            if not moved:
                break
        plan["keys"] = keys
        plan["state"] = overall_state(decisions)
        if plan["state"] == "failed":
            failed = [d for d in decisions if d.action == "failed"]
            plan["error"] = f"{failed[0].stage}: {failed[0].reason}" if failed else "the plan cannot go on"
        else:
            plan.pop("error", None)
        if plan["state"] != was and plan["state"] in FINAL:
            plan["history"].append({"at": now(), "event": plan["state"]})
        if json.dumps(plan, sort_keys=True, default=str) != loaded:  # polling loops call this every second
            _save(workspace, plan)
            _write_provenance(workspace, plan, stages)
        if plan["state"] == "done" and (was != "done" or not plan.get("report")):
            _render_report(workspace, plan)
            _save(workspace, plan)
        return plan


MAX_CRASH_RESUMES = 3


def _resume_crashed(workspace: Workspace, plan: dict, keys: dict[str, str | None]) -> None:
    """A stage whose worker died under it (crash, reboot, kill) goes on by itself: that was not its fault.

    Its job is resumed (it continues from its artifacts), at most MAX_CRASH_RESUMES times, so a job that
    brings its worker down every time ends as failed instead of looping.
    """
    from pipelines import jobs
    from pipelines.runner import CRASH_MESSAGE

    for sid, rec in plan["stages"].items():
        if (rec.get("state") != "failed" or rec.get("error") != CRASH_MESSAGE or rec.get("key") != keys.get(sid)
                or rec.get("crash_resumes", 0) >= MAX_CRASH_RESUMES):
            continue
        try:
            jobs.resume(rec["job_id"], workspace)
        except ObtEvalError:
            continue
        rec.update(state="queued", error=None, crash_resumes=rec.get("crash_resumes", 0) + 1)
        plan["history"].append({"at": now(), "event": f"{sid}: its worker stopped; resumed job {rec['job_id']}"})


def overall_state(decisions: list[P.Decision]) -> str:
    actions = {d.action for d in decisions}
    if actions == {"done"}:
        return "done"
    if actions & {"active", "submit", "local", "cancel-stale"}:
        return "running"
    return "failed"  # something failed (or waits on what failed) and nothing runs any more


def _cancel_stale(workspace: Workspace, records: dict[str, dict], sid: str) -> None:
    from pipelines import jobs

    rec = records[sid]
    with contextlib.suppress(ObtEvalError):
        jobs.cancel(rec["job_id"], workspace)
    rec["state"] = "superseded"  # keeps its job history; `decide` sees a stage to run again


def _run_local(workspace: Workspace, plan: dict, pi: P.PlanInput, stage: P.StageSpec, keys: dict,
               records: dict[str, dict]) -> None:
    key = keys[stage.id]
    try:
        outputs = LOCAL_STAGES[stage.type](workspace, plan, pi, stage, key, records)
    except (ObtEvalError, ValueError, OSError) as exc:
        records[stage.id] = {"key": key, "state": "failed", "error": str(exc), "finished_at": now()}
        return
    records[stage.id] = {"key": key, "state": "done", "outputs": outputs, "finished_at": now(), "local": True,
                         "artifacts": artifact_checksums(outputs)}


def _local_corpus(workspace: Workspace, plan: dict, pi: P.PlanInput, stage: P.StageSpec, key: str,
                  records: dict) -> dict:
    from obt_eval.corpus.manifest import Corpus

    corpus = Corpus.open(pi.options.corpus, workspace)
    return {"corpus": corpus.name, "path": str(Path(corpus.root).resolve()),
            "fingerprint": corpus_fingerprint(workspace, pi.options.corpus), "utterances": len(corpus.ids),
            "seconds": round(corpus.total_seconds, 1), "speakers": int(corpus.manifest["speaker"].nunique()),
            "alignments": corpus.alignments_path.exists(), "item_file": corpus.item_path is not None}


def _local_heldout(workspace: Workspace, plan: dict, pi: P.PlanInput, stage: P.StageSpec, key: str,
                   records: dict) -> dict:
    from obt_eval.corpus.manifest import Corpus

    manifest = Corpus.open(pi.options.corpus, workspace).manifest
    rows = manifest[[c for c in ("id", "split", "speaker") if c in manifest]].to_dict(orient="records")
    picked = P.pick_heldout(rows, pi.options.study_utterances, pi.options.seed)
    folder = experiment_dir(workspace, plan["name"])
    ids_file, exclude_file = folder / f"heldout-{key[:6]}.txt", folder / f"exclude-{key[:6]}.txt"
    write_text(ids_file, "\n".join(picked["ids"]) + "\n")
    write_text(exclude_file, "\n".join(picked["exclude"]) + "\n")
    return {"ids": picked["ids"], "excluded": len(picked["exclude"]), "rule": picked["rule"],
            "ids_file": str(ids_file.resolve()), "exclude_file": str(exclude_file.resolve())}


def _local_choose(workspace: Workspace, plan: dict, pi: P.PlanInput, stage: P.StageSpec, key: str,
                  records: dict) -> dict:
    results = records[f"search:{stage.group}"]["outputs"]["results"]
    rows = read_json(results)["rows"]
    choice = P.choose_layer_k(rows, stage.options["rule"], stage.options["default_layer"], stage.options["default_k"])
    return {**choice, "search_results": results}


LOCAL_STAGES = {"corpus": _local_corpus, "heldout": _local_heldout, "choose": _local_choose}


def _submit(workspace: Workspace, plan: dict, pi: P.PlanInput, stage: P.StageSpec, keys: dict,
            records: dict[str, dict]) -> None:
    from pipelines import jobs

    key = keys[stage.id]
    outputs = {sid: rec.get("outputs", {}) for sid, rec in records.items()
               if rec.get("state") == "done" and rec.get("key") == keys.get(sid)}
    try:
        params = P.job_params(stage, pi, keys, outputs, naming(workspace, plan["name"]))
        if stage.type == "study":
            params["name"] = study_name(workspace, plan, key)
        view = jobs.submit(stage.kind, params, workspace)
    except ObtEvalError as exc:
        records[stage.id] = {"key": key, "state": "failed", "error": str(exc), "finished_at": now()}
        return
    old = records.get(stage.id, {})
    records[stage.id] = {"key": key, "state": "queued", "job_id": view.id, "params": view.params,
                         "submitted_at": now(), "jobs": [*old.get("jobs", []), view.id]}


def study_name(workspace: Workspace, plan: dict, key: str) -> str:
    """The experiment's name for its first study; later studies (other contenders or settings) get the key."""
    from db.studies import get_study
    from pipelines.jobs import database

    studies = plan.setdefault("studies", {})
    if key in studies:
        return studies[key]
    name = plan["name"]
    with database(workspace).session() as s:
        try:
            get_study(s, name)
            name = f"{plan['name']}-{key[:6]}"
        except NotFoundError:
            pass
    studies[key] = name
    return name


def _write_provenance(workspace: Workspace, plan: dict, stages: list[P.StageSpec]) -> None:
    from obt_eval.provenance import provenance

    keys = plan.get("keys", {})
    entry = {}
    for stage in stages:
        rec = plan["stages"].get(stage.id)
        if not rec or rec.get("key") != keys.get(stage.id) or rec.get("state") != "done":
            continue
        entry[stage.id] = {"kind": stage.kind or "local", "key": rec["key"], "job_id": rec.get("job_id"),
                           "options": stage.options, "depends_on": {d: keys.get(d) for d in stage.deps},
                           "params": rec.get("params"), "outputs": rec.get("outputs"),
                           "artifacts": rec.get("artifacts", {}), "finished_at": rec.get("finished_at")}
    write_json(experiment_dir(workspace, plan["name"]) / PROVENANCE_FILE,
               {"experiment": plan["name"], "options": plan["options"], "code": provenance(), "stages": entry})


def _render_report(workspace: Workspace, plan: dict) -> None:
    from pipelines.experiments.report import write_report

    try:
        files = write_report(workspace, plan)
        plan["report"] = files["html"]
        plan.pop("report_error", None)
    except Exception as exc:  # noqa: BLE001 — a report problem must not undo a finished experiment
        plan["report_error"] = f"{type(exc).__name__}: {exc}"


# --- the worker's hook ------------------------------------------------------------------------------------


def job_finished(job_id: int, workspace: Workspace) -> None:
    """Runner hook: advance every running experiment that waited on job `job_id`."""
    root = experiments_root(workspace)
    if not root.is_dir():
        return
    for path in sorted(root.glob(f"*/{PLAN_FILE}")):
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if plan.get("state") != "running":
            continue
        if any(rec.get("job_id") == job_id for rec in plan.get("stages", {}).values()):
            advance(workspace, plan["name"])


def list_names(workspace: Workspace) -> list[str]:
    root = experiments_root(workspace)
    return sorted(p.parent.name for p in root.glob(f"*/{PLAN_FILE}")) if root.is_dir() else []
