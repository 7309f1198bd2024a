"""CLI commands of experiments: `obt-eval experiment run|status|report|list|cancel|resume`.

`experiment run` writes the plan, makes sure a worker serves the workspace (a local one on the default
SQLite queue), and follows the stages until the decision report is written; `--detach` returns at once
(the workers carry the experiment on by themselves).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from obt_eval.errors import BadInputError
from obt_eval_cli.common import JsonOpt, WorkspaceOpt, report, workspace

POLL_SECONDS = 1.0
DetachOpt = Annotated[bool, typer.Option("--detach", help="Return at once; the workers carry the experiment on.")]
NoWorkerOpt = Annotated[bool, typer.Option("--no-worker", help="Start no local worker (others serve the queue).")]
SlotsOpt = Annotated[int | None, typer.Option(
    "--slots", help="Job slots of the local worker started here (default: the GPUs, or 1 CPU slot).")]
NameArg = Annotated[str, typer.Argument(help="Experiment name.")]


def ensure_worker(ws, slots: int | None, no_worker: bool) -> int | None:  # noqa: ANN001 — a Workspace
    """Start a local worker for the workspace's SQLite queue unless one runs; returns its pid if started here."""
    from pipelines.queue import ENV_QUEUE_URL
    from pipelines.worker import start_local_worker

    if no_worker:
        return None
    if os.environ.get(ENV_QUEUE_URL, "").strip():
        typer.echo(f"jobs go to the shared queue {os.environ[ENV_QUEUE_URL]}: workers there run them", err=True)
        return None
    pid = start_local_worker(ws, slots)
    if pid is not None:
        typer.echo(f"started a local worker (pid {pid}; log {Path(ws.root) / 'jobs' / 'worker.log'})", err=True)
    return pid


def stop_worker(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _line(row: dict) -> str:
    mark = {"done": "✓", "failed": "✗", "running": "▶", "cancelled": "■"}.get(row["state"], "·")
    took = f" ({row['elapsed']:.0f} s)" if row.get("elapsed") else ""
    return f"{time.strftime('%H:%M:%S')} {mark} {row['id']}: {row['state']}{took}"


def follow(ws, name: str) -> dict[str, Any]:  # noqa: ANN001 — a Workspace
    """Advance and watch the experiment until it ends; stage changes on stderr, an overall bar."""
    from tqdm import tqdm

    from pipelines.experiments import api

    seen: dict[str, str] = {}
    state = api.status(ws, name)
    bar = tqdm(total=state["total"], desc=name, unit="stage", file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} stages [{elapsed}] {postfix}")
    try:
        while True:
            state = api.advance(ws, name)
            for row in state["stages"]:
                if seen.get(row["id"]) != row["state"] and row["state"] in ("running", "done", "failed", "cancelled"):
                    bar.write(_line(row), file=sys.stderr)
                seen[row["id"]] = row["state"]
            running = [r for r in state["stages"] if r["state"] == "running"]
            bar.n = round(state["fraction"] * state["total"], 2)
            bar.set_postfix_str("; ".join(f"{r['id']} {100 * r['progress']:.0f}%"
                                          + (f" eta {r['eta']:.0f} s" if r.get("eta") else "") for r in running))
            bar.refresh()
            if state["state"] in ("done", "failed", "cancelled"):
                return state
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()


def finish(ws, name: str, state: dict, as_json: bool, started: float, worker_pid: int | None) -> None:  # noqa: ANN001
    """Report how the experiment ended (and stop the worker this command started)."""
    stop_worker(worker_pid)
    summary = {"experiment": name, "state": state["state"], "seconds": round(time.monotonic() - started, 1),
               "report": state.get("report"), "study": state.get("study"), "error": state.get("error"),
               "stages": {r["id"]: r["state"] for r in state["stages"]}}
    if state["state"] == "failed":
        failed = [r for r in state["stages"] if r["state"] == "failed"]
        for row in failed:
            typer.echo(f"\n{row['id']} failed: {row['error']}\n{row['log_tail']}", err=True)
        if as_json:
            report(summary, True)
        raise BadInputError(f"experiment {name!r} stopped: {state.get('error')}",
                            f"fix the cause, then run `obt-eval experiment resume {name}` (finished stages are kept)")
    human = (f"experiment {name!r} {state['state']} in {summary['seconds']:.0f} s\n"
             f"decision report: {state.get('report') or 'not written (' + str(state.get('report_error')) + ')'}\n"
             + (f"listening study: {state['study']} (invite raters: obt-eval study invite {state['study']} -n 5)"
                if state.get("study") else ""))
    report(summary, as_json, human)


def run_and_follow(ws, options, detach: bool, no_worker: bool, slots: int | None, as_json: bool) -> None:  # noqa: ANN001
    from pipelines.experiments import api

    started = time.monotonic()
    pid = ensure_worker(ws, slots, no_worker)
    name = api.start(ws, options)
    _after_start(ws, name, detach, as_json, started, pid)


def _after_start(ws, name: str, detach: bool, as_json: bool, started: float, pid: int | None) -> None:  # noqa: ANN001
    from pipelines.experiments import api

    if detach:
        state = api.status(ws, name)
        report({"experiment": name, "state": state["state"], "stages": state["total"], "folder": state["folder"]},
               as_json, f"experiment {name!r} started ({state['total']} stages); follow it with "
                        f"`obt-eval experiment status {name}`")
        return
    try:
        state = follow(ws, name)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped watching: the experiment goes on in the worker. `obt-eval experiment status {name}` "
                   f"shows it, `obt-eval experiment cancel {name}` stops it.", err=True)
        raise typer.Exit(130) from None
    finish(ws, name, state, as_json, started, pid)


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise BadInputError(f"--k {text!r} is not a list of integers", "write e.g. --k 100,150,200") from exc


def build_options(ws, name: str, given: dict[str, Any], preset_name: str | None):  # noqa: ANN001, ANN201 — Workspace
    """Options from (in order) the experiment's stored options or a preset, then what the command line gave."""
    from pipelines.experiments.coordinator import experiment_dir, load_plan
    from pipelines.experiments.options import validate_options
    from pipelines.experiments.presets import preset

    given = {k: v for k, v in given.items() if v is not None}
    if preset_name:
        base = preset(preset_name, name=name).to_dict()
    elif (experiment_dir(ws, name) / "plan.json").exists():
        base = load_plan(ws, name)["options"]
    else:
        missing = [f"--{k}" for k in ("corpus", "encoders") if k not in given]
        if missing:
            raise BadInputError(f"a new experiment needs {' and '.join(missing)}",
                                "e.g. obt-eval experiment run --name first --corpus demo --encoders mfcc,logmel")
        base = {"name": name, "corpus": given["corpus"], "encoders": given["encoders"]}
    merged = {**base, **given, "name": name}
    if "systems" in given and "systems" in base:
        merged["systems"] = {**base["systems"], **given["systems"]}
    return validate_options(merged)


def _declare_system_folders(w, systems: dict[str, str]) -> None:
    """Outside systems named on the command line may be read by this workspace's jobs (see data_roots)."""
    from pipelines.params import DECLARED_ROOTS_FILE, declare_data_root

    for folder in systems.values():
        if declare_data_root(w, folder):
            typer.echo(f"note: jobs of this workspace may now read {folder} "
                       f"(listed in {w.root / DECLARED_ROOTS_FILE})", err=True)


def register(app: typer.Typer) -> None:
    """Adds this area's commands to `app`."""
    exp = typer.Typer(help="Compare encoders (and outside systems) end to end: one plan, one decision report.",
                      no_args_is_help=True)
    app.add_typer(exp, name="experiment")

    @exp.command("run")
    def run_cmd(
        name: Annotated[str, typer.Option("--name", help="Experiment name (its folder: experiments/NAME).")],
        corpus: Annotated[str | None, typer.Option("--corpus", help="Ingested corpus name.")] = None,
        encoders: Annotated[str | None, typer.Option(
            "--encoders", help="Comma-separated: registry names (xlsr53, mms-300m, mms-1b, mfcc…), Hub ids or "
                               "checkpoint folders.")] = None,
        layers: Annotated[str | None, typer.Option(
            "--layers", help="default (each encoder's registered layer, first k), auto (search every layer, pick "
                             "the lowest ABX, then the k with most PNMI above chance) or A-B (search those).")] = None,
        k: Annotated[str | None, typer.Option("--k", help="Codebook sizes to search, e.g. 100,150,200.")] = None,
        vocoder_preset: Annotated[str | None, typer.Option(
            "--vocoder-preset", help="reference (published recipe), small or tiny.")] = None,
        vocoder_steps: Annotated[int | None, typer.Option("--vocoder-steps", help="Steps per vocoder.")] = None,
        speakers: Annotated[bool | None, typer.Option("--speakers/--no-speakers",
                                                      help="Vocoders keep speaker voices.")] = None,
        f0: Annotated[bool | None, typer.Option("--f0/--no-f0", help="Vocoders condition on quantised F0.")] = None,
        study_utterances: Annotated[int | None, typer.Option(
            "--study-utterances", help="Held-out utterances every contender is synthesized and heard on.")] = None,
        raters: Annotated[int | None, typer.Option("--raters", help="Invitations created with the study.")] = None,
        system: Annotated[list[str] | None, typer.Option(
            "--system", help="NAME=DIR: an outside system's <utterance id>.wav files (any rate) as a contender.")
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Seed of k-means, held-out draw, study.")] = None,
        sample_frac: Annotated[float | None, typer.Option(
            "--kmeans-sample-frac", help="Share of utterances k-means fits on (0.1).")] = None,
        preset_name: Annotated[str | None, typer.Option("--preset", help="Start from a preset: demo.")] = None,
        detach: DetachOpt = False,
        no_worker: NoWorkerOpt = False,
        slots: SlotsOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Compare encoders end to end: search, units, vocoders, synthesis, metrics, study, decision report.

        Every encoder goes through the same settings; outside systems (--system) are scored beside them.
        Running it again resumes; a changed option re-runs only the stages it affects. A new experiment
        needs --corpus and --encoders; an existing one keeps its options unless given.
        Example: obt-eval experiment run --name first --corpus demo --encoders mfcc,logmel --k 50
        """
        w = workspace(ws)
        given = {"corpus": corpus, "encoders": encoders.split(",") if encoders else None, "layers": layers,
                 "ks": _ints(k), "vocoder_preset": vocoder_preset, "vocoder_steps": vocoder_steps,
                 "vocoder_speakers": speakers, "vocoder_f0": f0, "study_utterances": study_utterances,
                 "raters": raters, "seed": seed, "kmeans_sample_frac": sample_frac}
        if system:
            from pipelines.experiments.options import parse_systems

            given["systems"] = parse_systems(system)
        options = build_options(w, name, given, preset_name)
        _declare_system_folders(w, options.systems)
        run_and_follow(w, options, detach, no_worker, slots, as_json)

    @exp.command("resume")
    def resume_cmd(name: NameArg, detach: DetachOpt = False, no_worker: NoWorkerOpt = False, slots: SlotsOpt = None,
                   ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Take a failed, cancelled or interrupted experiment up again (finished stages are kept).

        A stage that was cut short continues from its artifacts.

        Example: obt-eval experiment resume first
        """
        from pipelines.experiments import api

        w = workspace(ws)
        started = time.monotonic()
        pid = ensure_worker(w, slots, no_worker)
        api.resume(w, name)
        _after_start(w, name, detach, as_json, started, pid)

    @exp.command("status")
    def status_cmd(name: NameArg, lines: Annotated[int, typer.Option("--lines", help="Log lines per stage.")] = 2,
                   ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Each stage's state, progress, elapsed time, ETA and the end of its log.

        Example: obt-eval experiment status first
        """
        from pipelines.experiments import api

        state = api.status(workspace(ws), name)
        out = []
        for r in state["stages"]:
            extra = " ".join(x for x in (
                f"{100 * r['progress']:.0f}%" if r["state"] == "running" else "",
                f"{r['elapsed']:.0f} s" if r.get("elapsed") else "",
                f"eta {r['eta']:.0f} s" if r.get("eta") else "",
                f"job {r['job_id']}" if r.get("job_id") else "") if x)
            out.append(f"  {r['state']:<9} {r['id']:<28} {extra}")
            if r["state"] in ("running", "failed") and r.get("log_tail"):
                out += [f"      | {line}" for line in r["log_tail"].splitlines()[-lines:]]
            if r["state"] == "failed" and r.get("error"):
                out.append(f"      error: {r['error'].splitlines()[0]}")
        head = (f"experiment {name!r}: {state['state']}, {state['done']}/{state['total']} stages done"
                + (f"; report: {state['report']}" if state.get("report") else ""))
        report(state, as_json, "\n".join([head, *out]))

    @exp.command("report")
    def report_cmd(name: NameArg, out: Annotated[Path | None, typer.Option(
            "--out", help="Folder for the report (default: experiments/NAME/report).")] = None,
            ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Write the decision report (HTML, JSON, CSV, figures, sources.json) with the ratings so far.

        Example: obt-eval experiment report first
        """
        from pipelines.experiments import api

        files = api.write_report(workspace(ws), name, out)
        report({"experiment": name, **files}, as_json,
               f"decision report: {files['html']}\n(also {files['json']}, {files['csv']}, {files['sources']})")

    @exp.command("list")
    def list_cmd(ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Experiments of the workspace with their state.

        Example: obt-eval experiment list
        """
        from pipelines.experiments import api

        rows = api.list_experiments(workspace(ws))
        human = "\n".join(f"{r['name']:<20} {r['state']:<9} {r['stages_done']}/{r['stages']} stages  corpus "
                          f"{r['corpus']}  encoders {','.join(r['encoders'])}"
                          + (f"  systems {','.join(r['systems'])}" if r["systems"] else "") for r in rows)
        report({"experiments": rows}, as_json, human or "no experiments yet (obt-eval experiment run --help)")

    @exp.command("cancel")
    def cancel_cmd(name: NameArg, ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Cancel an experiment's queued and running stages (`experiment resume` goes on).

        Example: obt-eval experiment cancel first
        """
        from pipelines.experiments import api

        state = api.cancel(workspace(ws), name)
        report({"experiment": name, "state": state["state"]}, as_json, f"experiment {name!r} cancelled")
