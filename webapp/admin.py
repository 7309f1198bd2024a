"""What researchers do from the Admin tab, as plain functions: jobs, corpora, studies, invites.

Each function starts with `require_admin`, whatever the page showed: the tab's events can be called
by any script (reference listening-tests.md §0.2). None of them runs heavy work in the request: work is
a job for the worker.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select, update

from db.models import Rater, Study
from db.studies import get_study, invite_raters, list_studies
from obt_eval.archive import ArchiveLimits, extract_zip, merge_into
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.workspace import check_name
from pipelines import jobs
from pipelines.params import defaults
from pipelines.steps import get_step, kinds
from webapp.auth import AdminSession, require_admin
from webapp.context import AppContext
from webapp.rating import completion_code
from webapp.uploads import discard

JOB_COLUMNS = ["id", "kind", "state", "progress", "message", "started", "seconds"]
MAX_PARAMS_CHARS = 64 * 1024
MAX_FIELD_CHARS = 4096  # a path, a name, a list of systems


def bounded_text(value: object, what: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A text field as sent by the page (or by a script): a string of bounded length, else a clear refusal."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInputError(f"the {what} must be text")
    if len(value) > limit:
        raise BadInputError(f"the {what} is longer than {limit} characters", "shorten it")
    return value


def job_kinds(session: AdminSession) -> list[str]:
    require_admin(session)
    return kinds()


DEFAULT_KIND = "selftest"  # what the console shows first: a job that is valid as it stands and harmless


def job_template(session: AdminSession, kind: str, corpus: str | None = None) -> tuple[str, str]:
    """The parameter JSON to start from (required names filled with a corpus of the workspace and the
    weightless mfcc encoder where the kind takes them), and a line of help, for a job kind."""
    require_admin(session)
    step = get_step(bounded_text(kind, "job kind", 100))
    params = defaults(step.params)
    examples = {"corpus": corpus or "", "encoder": "mfcc"}
    for key, value in examples.items():
        if params.get(key) == "" and value:
            params[key] = value
    return json.dumps(params, indent=2), f"**{kind}** — {step.help}" + (
        " (waits for a GPU slot)" if step.gpu else "")


def launch(ctx: AppContext, session: AdminSession, kind: str, params_json: str) -> jobs.JobView:
    require_admin(session)
    kind = bounded_text(kind, "job kind", 100)
    params_json = bounded_text(params_json, "parameter JSON", MAX_PARAMS_CHARS)
    if not kind:
        raise BadInputError("choose a job kind first")
    try:
        params = json.loads(params_json or "{}")
    except json.JSONDecodeError as exc:
        raise BadInputError(f"the parameters are not valid JSON: {exc.msg} (line {exc.lineno})",
                            "fix the JSON, e.g. {\"corpus\": \"demo\"}") from exc
    if not isinstance(params, dict):
        raise BadInputError("the parameters must be a JSON object", "write them as {\"name\": value, ...}")
    return jobs.submit(kind, params, ctx.workspace)


def jobs_table(ctx: AppContext, session: AdminSession, limit: int = 30) -> pd.DataFrame:
    require_admin(session)
    rows = []
    for job in jobs.list_jobs(ctx.workspace, limit=limit):
        rows.append({"id": job.id, "kind": job.kind, "state": job.state, "progress": f"{100 * job.progress:.0f}%",
                     "message": job.message[:120],
                     "started": job.started_at.strftime("%Y-%m-%d %H:%M:%S") if job.started_at else "",
                     "seconds": round(job.seconds) if job.seconds is not None else ""})
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def job_detail(ctx: AppContext, session: AdminSession, job_id: int | None) -> tuple[str, str]:
    """Markdown with the job's state, parameters, artifacts and error; and the END of its log."""
    from webapp.experiments import tail_lines

    require_admin(session)
    if not job_id:
        return "No job selected: click a row of the table to see its log and artifacts.", ""
    job = jobs.get(int(job_id), ctx.workspace)
    lines = [f"### Job {job.id}: {job.kind} — {job.state} ({100 * job.progress:.0f}%)"]
    if job.message:
        lines.append(f"{job.message}")
    lines.append(f"**Parameters**\n```json\n{json.dumps(job.params, indent=2)}\n```")
    if job.artifacts:
        lines.append(f"**Artifacts**\n```json\n{json.dumps(job.artifacts, indent=2, default=str)[:4000]}\n```")
    if job.error:
        lines.append(f"**Error**\n```\n{job.error[:2000]}\n```")
    return "\n\n".join(lines), tail_lines(jobs.log_tail(job.log_path, max_lines=60), 60)


def job_actions(ctx: AppContext, session: AdminSession, job_id: int | None) -> tuple[bool, bool]:
    """(cancel applies, resume applies) to the selected job: nothing applies when none is selected."""
    require_admin(session)
    if not job_id:
        return False, False
    try:
        job = jobs.get(int(job_id), ctx.workspace)
    except ObtEvalError:
        return False, False
    return job.state in jobs.ACTIVE_STATES, job.state in ("failed", "cancelled")


def cancel(ctx: AppContext, session: AdminSession, job_id: int | None) -> jobs.JobView:
    require_admin(session)
    if not job_id:
        raise BadInputError("select a job first")
    return jobs.cancel(int(job_id), ctx.workspace)


def resume(ctx: AppContext, session: AdminSession, job_id: int | None) -> jobs.JobView:
    require_admin(session)
    if not job_id:
        raise BadInputError("select a job first")
    return jobs.resume(int(job_id), ctx.workspace)


def corpora_table(ctx: AppContext, session: AdminSession) -> pd.DataFrame:
    require_admin(session)
    rows = []
    root = Path(ctx.workspace.root) / "corpora"
    for folder in sorted(root.iterdir()) if root.exists() else []:
        info_path = folder / "corpus.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        summary = info.get("summary", info)
        rows.append({"corpus": folder.name, "utterances": summary.get("ingested", ""),
                     "hours": summary.get("hours", ""), "speakers": summary.get("speakers", "")})
    return pd.DataFrame(rows, columns=["corpus", "utterances", "hours", "speakers"])


def data_roots_text(ctx: AppContext, session: AdminSession) -> str:
    """Where the server may read recordings from (shown under the folder field, to researchers only)."""
    from pipelines.params import ENV_DATA_ROOTS, data_roots

    require_admin(session)
    roots = data_roots(ctx.workspace)
    extra = ", ".join(f"`{r}`" for r in roots[1:]) or "none"
    return (f"The server reads recordings from the workspace (`{roots[0]}`) and from the folders in "
            f"`{ENV_DATA_ROOTS}` (now: {extra}). Upload the recordings instead if they are elsewhere.")


def _readable_folder(ctx: AppContext, folder: str) -> Path:
    """The folder of recordings, if the app's jobs may read it; else a refusal naming OBT_EVAL_DATA_ROOTS."""
    from pipelines.params import ENV_DATA_ROOTS, confined

    path = Path(folder).expanduser()
    try:
        confined(ctx.workspace, str(path))
    except BadInputError as exc:
        raise BadInputError(
            f"the folder {folder} is outside the folders this app may read",
            f"start the app and its workers with {ENV_DATA_ROOTS}={path} (several folders separated by "
            f"'{os.pathsep}'), or upload the recordings instead") from exc
    if not path.is_dir():
        raise BadInputError(f"no folder {folder!r} on the server", "give the full path of a folder of recordings")
    return path


def register_corpus(ctx: AppContext, session: AdminSession, folder: str, name: str, metadata: str,
                    alignments: str, segment: bool = False, segment_min: float | None = None,
                    segment_max: float | None = None, vad: str | None = None) -> jobs.JobView:
    """Ingest a folder that already is on the server (or on the shared disk of the workers).

    `segment` cuts long recordings (whole chapters) at pauses into `segment_min`..`segment_max` second
    pieces, as `obt-eval ingest --segment` does; the job checks the bounds.
    """
    require_admin(session)
    folder, name, metadata, alignments = (bounded_text(v, w).strip() for v, w in (
        (folder, "folder"), (name, "corpus name"), (metadata, "metadata path"), (alignments, "alignments path")))
    check_name(name, "corpus name")
    if not folder:
        raise BadInputError("give the folder of recordings", "the full path of a folder on the server")
    params: dict[str, Any] = {"audio_dir": str(_readable_folder(ctx, folder)), "name": name}
    if metadata:
        params["metadata"] = metadata
    if alignments:
        params["alignments"] = alignments
    params.update(_segmenting(segment, segment_min, segment_max, vad))
    return jobs.submit("ingest", params, ctx.workspace)


def _segmenting(segment: bool, segment_min: float | None, segment_max: float | None, vad: str | None) -> dict:
    if not segment:
        return {}
    out: dict[str, Any] = {"segment": True}
    if segment_min is not None:
        out["segment_min"] = segment_min
    if segment_max is not None:
        out["segment_max"] = segment_max
    if vad:
        out["vad"] = bounded_text(vad, "voice detector", 20)
    return out


def upload_corpus(ctx: AppContext, session: AdminSession, files: list[str] | None, name: str,
                  uploaded: set[str] | None = None, segment: bool = False, segment_min: float | None = None,
                  segment_max: float | None = None, vad: str | None = None) -> jobs.JobView:
    """Move uploaded recordings (or zip archives of them) into ``workspace/uploads/<name>/`` and ingest them.

    Everything is staged in a temporary folder first (archives extracted with limits by
    `obt_eval.archive`), and moved into place only when every file and archive was valid. The uploads
    themselves are deleted from Gradio's folder once used (`uploaded`: Gradio's set of them).
    """
    require_admin(session)
    name = bounded_text(name, "corpus name").strip()
    check_name(name, "corpus name")
    if not files:
        raise BadInputError("no files uploaded", "choose audio files or a zip archive of them")
    if len(files) > ctx.config.upload_max_files:
        raise BadInputError(f"more than {ctx.config.upload_max_files} files", "put the recordings in a zip archive")
    paths = [Path(item if isinstance(item, str) else getattr(item, "name", str(item))) for item in files]
    for path in paths:
        if not path.is_file():
            raise BadInputError(f"the upload {path.name!r} is gone", "upload the files again")
    root = Path(ctx.workspace.root) / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    budget = 4 * ctx.config.upload_max_bytes  # what all archives of one upload may expand to
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.upload-", dir=root))
    try:
        for path in paths:
            if path.suffix.lower() == ".zip":
                extracted = extract_zip(path, staging, ArchiveLimits(max_total_bytes=budget))
                budget -= sum(p.stat().st_size for p in extracted)
            else:
                if path.name.startswith(".") or "/" in path.name or "\\" in path.name:
                    raise BadInputError(f"the file name {path.name!r} is not allowed", "rename the file")
                shutil.copy2(path, staging / path.name)
        moved = merge_into(staging, root / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    discard(paths, uploaded)
    dest = root / name
    metadata = next((p for p in moved if p.name.lower() == "metadata.csv"), None)
    if metadata is None and (dest / "metadata.csv").exists():
        metadata = dest / "metadata.csv"
    params: dict[str, Any] = {"audio_dir": str(dest), "name": name}
    if metadata:
        params["metadata"] = str(metadata)
    params.update(_segmenting(segment, segment_min, segment_max, vad))
    return jobs.submit("ingest", params, ctx.workspace)


def studies_table(ctx: AppContext, session: AdminSession) -> pd.DataFrame:
    require_admin(session)
    with ctx.db.session() as s:
        rows = list_studies(s)
    cols = ["name", "status", "systems", "raters", "trials_rated", "trials", "created_at"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["systems"] = df["systems"].map(lambda x: ", ".join(x))
    return df[[c for c in cols if c in df.columns]]


def study_names(ctx: AppContext, session: AdminSession) -> list[str]:
    require_admin(session)
    with ctx.db.session() as s:
        return [r["name"] for r in list_studies(s)]


def create_study_job(ctx: AppContext, session: AdminSession, name: str, systems: str, reference: str,
                     target_ratings: float | None, trials_per_block: float | None) -> jobs.JobView:
    require_admin(session)
    name, systems, reference = (bounded_text(v, w) for v, w in ((name, "study name"), (systems, "systems"),
                                                            (reference, "reference")))
    params: dict[str, Any] = {"name": name.strip(), "systems": systems}
    if reference and reference.strip():
        params["reference"] = reference.strip()
    if target_ratings:
        params["target_ratings"] = int(target_ratings)
    if trials_per_block:
        params["trials_per_block"] = int(trials_per_block)
    check_name(params["name"], "study name")
    return jobs.submit("study", params, ctx.workspace)


def set_study_status(ctx: AppContext, session: AdminSession, name: str, status: str) -> None:
    require_admin(session)
    if status not in ("open", "closed"):
        raise BadInputError(f"unknown study status {status!r}")
    with ctx.db.session() as s:
        study = get_study(s, name)
        s.execute(update(Study).where(Study.id == study.id).values(status=status))


def make_invites(ctx: AppContext, session: AdminSession, name: str, count: int) -> pd.DataFrame:
    """New raters for a study: pseudonym, invite link, and the completion code they will be shown."""
    require_admin(session)
    if not name:
        raise BadInputError("choose a study first")
    count = int(count or 1)
    if not 1 <= count <= 500:
        raise BadInputError("invite between 1 and 500 raters at a time")
    with ctx.db.session() as s:
        made = invite_raters(s, get_study(s, name), count)
    return pd.DataFrame([{"rater": m["pseudonym"], "link": ctx.config.invite_url(m["invite_token"]),
                          "completion_code": completion_code(ctx.config.secret, m["invite_token"])} for m in made])


def invites_table(ctx: AppContext, session: AdminSession, name: str) -> pd.DataFrame:
    require_admin(session)
    cols = ["rater", "link", "completion_code", "consented"]
    if not name:
        return pd.DataFrame(columns=cols)
    with ctx.db.session() as s:
        study = get_study(s, name)
        raters = s.scalars(select(Rater).where(Rater.study_id == study.id).order_by(Rater.id)).all()
        rows = [{"rater": r.pseudonym, "link": ctx.config.invite_url(r.invite_token),
                 "completion_code": completion_code(ctx.config.secret, r.invite_token),
                 "consented": r.consent_at is not None} for r in raters]
    return pd.DataFrame(rows, columns=cols)
