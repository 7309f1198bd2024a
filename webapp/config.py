"""How the app is configured: environment variables, with defaults that work on a fresh clone.

| variable | meaning | default |
|---|---|---|
| `OBT_EVAL_HOME` | workspace folder | `./workspace` (`/data/workspace` in the Docker image) |
| `OBT_EVAL_DB` | SQLAlchemy URL of the database | SQLite `<workspace>/obt_eval.db` |
| `OBT_EVAL_ADMIN_PASSWORD` | researchers' password for the Admin and Results tabs | generated, printed at start |
| `OBT_EVAL_ADMINS` | Hugging Face usernames allowed in (Spaces OAuth), comma-separated | none |
| `OBT_EVAL_START_WORKER` | start a local job worker with the app (`0` to not) | `1` |
| `OBT_EVAL_PUBLIC_URL` | base URL put in invite links | `https://$SPACE_HOST` on Spaces, else the local URL |
| `OBT_EVAL_BACKUP_REPO` + `HF_TOKEN` | private Hub dataset that receives SQLite snapshots | off |
| `OBT_EVAL_BACKUP_MINUTES` | minutes between snapshots | 30 |
| `OBT_EVAL_TRUSTED_PROXIES` | proxies (IPs, CIDRs) whose `X-Forwarded-For` names the client | private nets on Spaces |
| `OBT_EVAL_UPLOAD_MAX_MB` | largest upload request (and file) a researcher may send | 2048 |
| `OBT_EVAL_UPLOAD_MAX_FILES` | most files in one upload request | 200 |
| `OBT_EVAL_UPLOAD_TTL_MINUTES` | uploaded files not ingested by then are deleted | 60 |
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from obt_eval.workspace import Workspace

DEFAULT_PORT = 7860  # Hugging Face Spaces' app_port default
# A Space is reachable only through Hugging Face's proxies, which connect from private addresses.
SPACES_PROXIES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


def on_spaces() -> bool:
    return bool(os.environ.get("SPACE_ID"))


@dataclass
class AppConfig:
    workspace: Workspace
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    admin_password: str = ""
    password_generated: bool = False
    admin_users: tuple[str, ...] = ()
    start_worker: bool = True
    worker_slots: int | None = None
    public_url: str | None = None
    backup_repo: str | None = None
    backup_minutes: float = 30.0
    secret: bytes = b""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    upload_max_bytes: int = 2048 * 2**20
    upload_max_files: int = 200
    upload_ttl_seconds: float = 3600.0

    @property
    def oauth(self) -> bool:
        """Hugging Face sign-in counts only on Spaces: elsewhere Gradio mocks it, so anyone could "sign in"."""
        return on_spaces() and os.environ.get("SYSTEM") == "spaces" and bool(self.admin_users)

    def invite_url(self, token: str) -> str:
        base = (self.public_url or f"http://{self.host if self.host != '0.0.0.0' else 'localhost'}:{self.port}")
        return f"{base.rstrip('/')}/rate?invite={token}"


def _persistent_secret(workspace: Workspace, name: str, nbytes: int) -> str:
    """A random value kept in the workspace (mode 600) so it survives restarts."""
    path = Path(workspace.root) / ".secrets" / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def load_config(workspace: str | os.PathLike | None = None, host: str | None = None, port: int | None = None,
                start_worker: bool | None = None) -> AppConfig:
    ws = Workspace.at(workspace)
    Path(ws.root).mkdir(parents=True, exist_ok=True)
    password = os.environ.get("OBT_EVAL_ADMIN_PASSWORD", "")
    generated = False
    if not password:
        password, generated = _persistent_secret(ws, "admin_password", 12), True
    public = os.environ.get("OBT_EVAL_PUBLIC_URL") or (
        f"https://{os.environ['SPACE_HOST']}" if os.environ.get("SPACE_HOST") else None)
    env_worker = os.environ.get("OBT_EVAL_START_WORKER", "1").lower() not in ("0", "false", "no")
    return AppConfig(
        workspace=ws,
        host=host or os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces() else "127.0.0.1"),
        port=int(port or os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        admin_password=password,
        password_generated=generated,
        admin_users=tuple(u.strip() for u in os.environ.get("OBT_EVAL_ADMINS", "").split(",") if u.strip()),
        start_worker=env_worker if start_worker is None else start_worker,
        worker_slots=int(os.environ["OBT_EVAL_GPUS"]) if os.environ.get("OBT_EVAL_GPUS") else None,
        public_url=public,
        backup_repo=os.environ.get("OBT_EVAL_BACKUP_REPO") or None,
        backup_minutes=float(os.environ.get("OBT_EVAL_BACKUP_MINUTES", "30")),
        secret=_persistent_secret(ws, "app_secret", 32).encode(),
        trusted_proxies=_proxies(),
        upload_max_bytes=int(float(os.environ.get("OBT_EVAL_UPLOAD_MAX_MB", "2048")) * 2**20),
        upload_max_files=int(os.environ.get("OBT_EVAL_UPLOAD_MAX_FILES", "200")),
        upload_ttl_seconds=60 * float(os.environ.get("OBT_EVAL_UPLOAD_TTL_MINUTES", "60")),
    )


def _proxies() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    from webapp.auth import parse_proxies

    text = os.environ.get("OBT_EVAL_TRUSTED_PROXIES")
    if text is None:
        text = SPACES_PROXIES if on_spaces() else ""
    try:
        return parse_proxies(text)
    except ValueError as exc:
        from obt_eval.errors import BadInputError

        raise BadInputError(f"OBT_EVAL_TRUSTED_PROXIES: {exc}",
                            "give IP addresses or networks, comma-separated, e.g. 10.0.0.0/8,127.0.0.1") from exc
