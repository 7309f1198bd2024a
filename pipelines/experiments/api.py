"""What the CLI and the app call to run experiments: start, status, cancel, resume, list, report, study.

Every function takes the workspace and returns plain data (dicts, strings), so a form, a command line
and a test drive experiments the same way. Nothing here waits: jobs run on the workers, and
`coordinator.advance` (called here, by the CLI's polling loop and by the workers after each job)
moves the experiment on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.workspace import Workspace
from pipelines.experiments import coordinator as C
from pipelines.experiments import plan as P
from pipelines.experiments.options import ExperimentOptions, validate_options
from pipelines.experiments.presets import preset

LOG_LINES = 4


def start(workspace: Workspace, options: ExperimentOptions | dict[str, Any]) -> str:
    """Start an experiment (or re-run it: finished stages are kept, changed options re-run what they affect)."""
    return C.start(workspace, validate_options(options))["name"]


def start_preset(workspace: Workspace, preset_name: str = "demo", /, **overrides: Any) -> str:
    """Start a named preset (``demo``); `overrides` replace its options (e.g. ``vocoder_steps=50``, ``name=``)."""
    return start(workspace, preset(preset_name, **overrides))


def resume(workspace: Workspace, name: str) -> dict[str, Any]:
    C.resume(workspace, name)
    return status(workspace, name)


def cancel(workspace: Workspace, name: str) -> dict[str, Any]:
    C.cancel(workspace, name)
    return status(workspace, name)


def advance(workspace: Workspace, name: str) -> dict[str, Any]:
    """One coordination pass (submits what became ready); cheap, for polling loops."""
    C.advance(workspace, name)
    return status(workspace, name)


def _seconds_since(iso: str | None) -> float | None:
    if not iso:
        return None
    start = dt.datetime.fromisoformat(iso)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return max(0.0, (dt.datetime.now(dt.UTC) - start).total_seconds())


def status(workspace: Workspace, name: str) -> dict[str, Any]:
    """The experiment and each stage: state, progress, elapsed seconds, ETA, the end of its log."""
    from pipelines import jobs

    plan = C.load_plan(workspace, name)
    pi = C.plan_input(plan)
    stages = P.build_stages(pi)
    keys = plan.get("keys", {})
    rows = []
    for stage in stages:
        rec = plan["stages"].get(stage.id, {})
        current = rec.get("key") is not None and rec.get("key") == keys.get(stage.id)
        state = rec.get("state", "pending") if current else "pending"
        row: dict[str, Any] = {"id": stage.id, "title": stage.title, "type": stage.type, "group": stage.group,
                               "kind": stage.kind or "local", "state": state, "key": keys.get(stage.id),
                               "job_id": rec.get("job_id") if current else None, "progress": 1.0 if state == "done"
                               else 0.0, "elapsed": rec.get("seconds") if current else None, "eta": None,
                               "message": "", "log_tail": "", "error": rec.get("error") if current else None,
                               "outputs": rec.get("outputs", {}) if state == "done" else {}}
        if current and state in P.ACTIVE and rec.get("job_id") is not None:
            try:
                view = jobs.get(rec["job_id"], workspace)
            except NotFoundError:
                view = None
            if view is not None:
                row.update(state=view.state, progress=view.progress, message=view.message,
                           elapsed=round(view.seconds, 1) if view.seconds is not None else None,
                           log_tail=jobs.log_tail(view.log_path, max_lines=LOG_LINES))
                if view.state == "running" and row["elapsed"] and 0.02 <= view.progress < 1:
                    row["eta"] = round(row["elapsed"] * (1 - view.progress) / view.progress, 1)
        elif current and state in ("failed", "cancelled") and rec.get("job_id") is not None:
            try:
                row["log_tail"] = jobs.log_tail(jobs.get(rec["job_id"], workspace).log_path, max_lines=LOG_LINES)
            except NotFoundError:
                pass
        rows.append(row)
    done = sum(r["state"] == "done" for r in rows)
    fraction = sum(r["progress"] for r in rows) / len(rows) if rows else 0.0
    study = next((r["outputs"].get("study") for r in rows if r["id"] == "study"), None)
    report = C.experiment_dir(workspace, name) / "report" / "index.html"
    return {"name": name, "state": plan.get("state"), "error": plan.get("error"), "options": plan["options"],
            "created_at": plan.get("created_at"), "updated_at": plan.get("updated_at"),
            "elapsed": _seconds_since(plan.get("created_at")) if plan.get("state") == "running" else None,
            "stages": rows, "done": done, "total": len(rows), "fraction": round(fraction, 4), "study": study,
            "report": str(report) if report.exists() else None, "report_error": plan.get("report_error"),
            "history": plan.get("history", [])[-10:], "folder": str(C.experiment_dir(workspace, name))}


def list_experiments(workspace: Workspace) -> list[dict[str, Any]]:
    """Every experiment of the workspace with its state and progress (newest first)."""
    out = []
    for name in C.list_names(workspace):
        try:
            plan = C.load_plan(workspace, name)
        except (OSError, ValueError, NotFoundError):
            continue
        stages = plan.get("stages", {})
        keys = plan.get("keys", {})
        done = sum(1 for sid, rec in stages.items() if rec.get("state") == "done" and rec.get("key") == keys.get(sid))
        out.append({"name": name, "state": plan.get("state"), "corpus": plan["options"]["corpus"],
                    "encoders": plan["options"]["encoders"], "systems": sorted(plan["options"].get("systems", {})),
                    "preset": plan["options"].get("preset"), "stages_done": done, "stages": len(keys),
                    "created_at": plan.get("created_at"), "updated_at": plan.get("updated_at"),
                    "report": plan.get("report")})
    return sorted(out, key=lambda e: e.get("updated_at") or "", reverse=True)


def report_dir(workspace: Workspace, name: str) -> Path:
    return C.experiment_dir(workspace, name) / "report"


def write_report(workspace: Workspace, name: str, out_dir: str | Path | None = None) -> dict[str, str]:
    """(Re-)render the decision report with the ratings collected so far; returns its files."""
    from pipelines.experiments.report import write_report as render

    return render(workspace, C.load_plan(workspace, name), out_dir)


def report_html(workspace: Workspace, name: str) -> str:
    """The decision report as one self-contained HTML page (images inline), freshly rendered."""
    return Path(write_report(workspace, name)["html"]).read_text(encoding="utf-8")


def create_study(workspace: Workspace, name: str, raters: int = 0, grow: bool = False) -> dict[str, Any]:
    """The experiment's listening study, with `raters` new invitations (tokens shown once, never stored here).

    More raters than the design has free blocks: a warning with the numbers, or (`grow`) new blocks so that every
    invited rater gets trials (`db.capacity`)."""
    from db.capacity import invite
    from db.studies import get_study
    from pipelines.jobs import database

    state = status(workspace, name)
    study = state["study"]
    if not study:
        raise BadInputError(f"experiment {name!r} has no study yet (it is {state['state']})",
                            "the study is created when every contender is synthesized; watch "
                            f"`obt-eval experiment status {name}`")
    if raters <= 0 and not grow:
        return {"study": study, "invites": [], "warnings": []}
    with database(workspace).session() as s:
        made = invite(s, get_study(s, study), max(raters, 0), grow=grow)
    return {"study": study, **made.as_dict()}
