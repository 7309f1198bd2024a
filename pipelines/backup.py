"""Consistent snapshots of the SQLite database, optionally uploaded to a private Hugging Face dataset.

A live SQLite file must never be copied byte by byte while the app writes to it, nor run on a network
bucket (reference listening-tests.md §5: TTS Arena's "database disk image is malformed"). The SQLite
backup API gives a consistent copy while the app keeps running; the copy is checked
(`PRAGMA integrity_check`) before it is uploaded.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from obt_eval.errors import BadInputError

log = logging.getLogger("obt-eval.backup")
LATEST_NAME = "obt_eval-latest.db"


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise BadInputError(f"backups snapshot SQLite databases; this one is {url.split(':', 1)[0]}",
                            "back up a PostgreSQL server with pg_dump")
    return Path(url[len("sqlite:///"):])


def snapshot(db_file: str | os.PathLike, out_file: str | os.PathLike) -> Path:
    """Copy the database with the SQLite backup API (consistent under concurrent writes), then verify it."""
    src_path, out = Path(db_file), Path(out_file)
    if not src_path.exists():
        raise BadInputError(f"no database at {src_path}", "start the app or create a study first")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst, pages=1024, sleep=0.005)  # in steps, so writers are not held off for long
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file (no -wal beside it)
        ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if ok != "ok":
        tmp.unlink(missing_ok=True)
        raise BadInputError(f"the snapshot failed its integrity check: {ok}", "check the database file and disk")
    os.replace(tmp, out)
    return out


def upload(snapshot_file: Path, repo_id: str, token: str | None = None, api: Any = None) -> str:
    """Upload a snapshot to the private dataset `repo_id` as a dated file and as the latest copy."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    dated = f"snapshots/obt_eval-{stamp}.db"
    for path_in_repo in (dated, LATEST_NAME):
        api.upload_file(path_or_fileobj=str(snapshot_file), path_in_repo=path_in_repo, repo_id=repo_id,
                        repo_type="dataset", commit_message=f"obt-eval database snapshot {stamp}")
    return dated


def backup_once(db_url: str, out_dir: Path, repo_id: str | None = None, token: str | None = None,
                api: Any = None) -> dict[str, Any]:
    """Snapshot (and upload when a repo is given); returns what was done (the CLI's --json summary)."""
    out = snapshot(sqlite_path(db_url), Path(out_dir) / "obt_eval-snapshot.db")
    summary: dict[str, Any] = {"snapshot": str(out), "bytes": out.stat().st_size, "uploaded": None}
    if repo_id:
        try:
            summary["uploaded"] = f"{repo_id}:{upload(out, repo_id, token, api)}"
        except Exception as exc:  # noqa: BLE001 — no network, no token, no rights: say so, keep the snapshot
            raise BadInputError(
                f"the snapshot {out} was written, but uploading it to {repo_id} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "),
                "check the network and that HF_TOKEN may write to that dataset (HF_HUB_OFFLINE must be unset); "
                "run the command without --repo for a local snapshot only",
            ) from exc
    return summary


def restore_if_missing(config: Any) -> bool:
    """At boot on a fresh machine (e.g. a Space that slept), fetch the latest snapshot if there is no database."""
    from pipelines.jobs import database_url_for

    url = database_url_for(config.workspace)
    if not url.startswith("sqlite:///") or not config.backup_repo:
        return False
    path = sqlite_path(url)
    if path.exists():
        return False
    try:
        from huggingface_hub import hf_hub_download

        got = hf_hub_download(config.backup_repo, LATEST_NAME, repo_type="dataset", token=os.environ.get("HF_TOKEN"))
    except Exception as exc:  # noqa: BLE001 — no snapshot yet, or no network: start with an empty database
        log.warning("no database snapshot restored from %s: %s", config.backup_repo, exc)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot(got, path)
    log.info("restored the database from %s", config.backup_repo)
    return True


def backup_loop(config: Any) -> None:
    """Every `backup_minutes`, snapshot and upload (runs in a daemon thread of the app)."""
    from pipelines.jobs import database_url_for

    while True:
        time.sleep(max(60.0, config.backup_minutes * 60.0))
        try:
            summary = backup_once(database_url_for(config.workspace), Path(config.workspace.root) / "backups",
                                  config.backup_repo, os.environ.get("HF_TOKEN"))
            log.info("database backup: %s", summary)
        except Exception as exc:  # noqa: BLE001 — a failed backup must not stop the app; it retries next time
            log.warning("database backup failed: %s", exc)
