"""CLI commands of the app area: `serve`, `worker`, `jobs list|show|submit|cancel|resume|kinds`, `backup`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from obt_eval_cli.common import JsonOpt, WorkspaceOpt, report, workspace

JobIdArg = Annotated[int, typer.Argument(help="Job id (see `obt-eval jobs list`).")]


def _job_line(job) -> str:  # noqa: ANN001 — pipelines.jobs.JobView, imported lazily
    started = job.started_at.strftime("%Y-%m-%d %H:%M:%S") if job.started_at else "-"
    return f"{job.id:>5}  {job.kind:<15} {job.state:<10} {100 * job.progress:5.1f}%  {started}  {job.message}"


def register(app: typer.Typer) -> None:
    """Adds this area's commands to `app`."""

    @app.command("serve")
    def serve(
        host: Annotated[str | None, typer.Option("--host", help="Interface (0.0.0.0 to serve the network).")] = None,
        port: Annotated[int | None, typer.Option("--port", help="Port (default 7860).")] = None,
        no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not start a local job worker.")] = False,
        ws: WorkspaceOpt = None,
    ) -> None:
        """Serve the web app (Rate, Admin, Results tabs) and start a local job worker.

        Example: obt-eval serve --port 7860
        """
        from webapp.server import main

        main(str(ws) if ws else None, host, port, False if no_worker else None)

    @app.command("worker")
    def worker(
        slots: Annotated[int | None, typer.Option("--slots", help="GPU slots (default: GPUs here, or 1 CPU slot).")]
        = None,
        ws: WorkspaceOpt = None,
    ) -> None:
        """Run queued jobs (one per GPU at a time) until stopped; several machines can share a Redis queue.

        Example: OBT_EVAL_QUEUE_URL=redis://queue-host:6379/0 obt-eval worker
        """
        from pipelines.worker import run_worker

        run_worker(workspace(ws), slots)

    jobs_app = typer.Typer(help="Background jobs: list, submit, cancel, resume.", no_args_is_help=True)
    app.add_typer(jobs_app, name="jobs")

    @jobs_app.command("list")
    def list_(
        limit: Annotated[int, typer.Option("--limit", help="How many of the newest jobs.")] = 30,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List the newest jobs with state and progress. Example: obt-eval jobs list"""
        from pipelines import jobs

        views = jobs.list_jobs(workspace(ws), limit=limit)
        human = "\n".join(["   id  kind            state      progress  started              message",
                           *(_job_line(v) for v in views)]) if views else "no jobs yet"
        report({"jobs": [v.to_dict() for v in views]}, as_json, human)

    @jobs_app.command("show")
    def show(job_id: JobIdArg, lines: Annotated[int, typer.Option("--lines", help="Log lines to show.")] = 30,
             ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """One job: parameters, artifacts, error and the end of its log. Example: obt-eval jobs show 3"""
        from pipelines import jobs

        view = jobs.get(job_id, workspace(ws))
        tail = jobs.log_tail(view.log_path, max_lines=lines)
        human = (f"{_job_line(view)}\nparams: {json.dumps(view.params)}\nartifacts: {json.dumps(view.artifacts)}"
                 + (f"\nerror: {view.error}" if view.error else "") + f"\n--- log ---\n{tail}")
        report(view.to_dict() | {"log_tail": tail}, as_json, human)

    @jobs_app.command("kinds")
    def kinds_(as_json: JsonOpt = False) -> None:
        """The job kinds and their parameters (with defaults). Example: obt-eval jobs kinds"""
        from pipelines.params import defaults
        from pipelines.steps import get_step, kinds

        data = {k: {"help": get_step(k).help, "gpu": get_step(k).gpu, "params": defaults(get_step(k).params)}
                for k in kinds()}
        human = "\n".join(f"{k:<15} {v['help']}\n{'':<15} {json.dumps(v['params'])}" for k, v in data.items())
        report({"kinds": data}, as_json, human)

    @jobs_app.command("submit")
    def submit(
        kind: Annotated[str, typer.Argument(help="Job kind (see `obt-eval jobs kinds`).")],
        params: Annotated[str, typer.Option("--params", help="Parameters as a JSON object.")] = "{}",
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Queue a job for the workers.

        Example: obt-eval jobs submit extract --params '{"corpus": "demo", "encoder": "mfcc"}'
        """
        from obt_eval.errors import BadInputError
        from pipelines import jobs

        try:
            data = json.loads(params)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"--params is not valid JSON: {exc.msg}", "quote it: --params '{\"k\": 100}'") from exc
        view = jobs.submit(kind, data, workspace(ws))
        report(view.to_dict(), as_json, f"job {view.id} ({view.kind}) queued")

    @jobs_app.command("cancel")
    def cancel(job_id: JobIdArg, ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Cancel a queued or running job (its process group is killed). Example: obt-eval jobs cancel 3"""
        from pipelines import jobs

        view = jobs.cancel(job_id, workspace(ws))
        report(view.to_dict(), as_json, f"job {view.id} {view.state}")

    @jobs_app.command("resume")
    def resume(job_id: JobIdArg, ws: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """Queue a failed or cancelled job again; it continues from its artifacts. Example: obt-eval jobs resume 3"""
        from pipelines import jobs

        view = jobs.resume(job_id, workspace(ws))
        report(view.to_dict(), as_json, f"job {view.id} queued again")

    @app.command("backup")
    def backup(
        out: Annotated[Path | None, typer.Option("--out", help="Folder for the snapshot (default WORKSPACE/backups).")]
        = None,
        repo: Annotated[str | None, typer.Option("--repo", help="Private Hub dataset to upload to (needs HF_TOKEN; "
                                                               "default $OBT_EVAL_BACKUP_REPO).")] = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Snapshot the SQLite database consistently (backup API), optionally upload it to a private Hub dataset.

        Example: obt-eval backup --repo my-org/obt-eval-db
        """
        import os

        from pipelines.backup import backup_once
        from pipelines.jobs import database_url_for

        wsp = workspace(ws)
        summary = backup_once(database_url_for(wsp), out or Path(wsp.root) / "backups",
                              repo or os.environ.get("OBT_EVAL_BACKUP_REPO") or None, os.environ.get("HF_TOKEN"))
        report(summary, as_json, f"snapshot {summary['snapshot']} ({summary['bytes']} bytes)"
               + (f", uploaded to {summary['uploaded']}" if summary["uploaded"] else ""))
