"""Shared CLI plumbing: the workspace option, the --json summary line, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from obt_eval.atomic import _json_default
from obt_eval.workspace import Workspace

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder (default: $OBT_EVAL_HOME or ./workspace)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary as the last stdout line.")]


def workspace(path: Path | None) -> Workspace:
    return Workspace.at(path)


def report(summary: dict[str, Any], as_json: bool, human: str | None = None) -> None:
    """Print a human summary, or with --json the summary as one JSON line (always the last stdout line)."""
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, default=_json_default) + "\n")
    else:
        text = human if human is not None else json.dumps(summary, indent=2, ensure_ascii=False, default=_json_default)
        typer.echo(text)


def parse_int_list(text: str | None) -> list[int] | None:
    """Parse ``"12-18"``, ``"100,150,200"`` or ``"6,9-11"`` into a sorted list of ints."""
    if text is None or text == "":
        return None
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part[1:]:
            lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
            values.update(range(int(lo), int(hi) + 1))
        elif part:
            values.add(int(part))
    return sorted(values)


def id_selection(ids: str) -> list[str] | str:
    """`--ids`: `held-out`, `all`, or a text file with one utterance id per line."""
    from obt_eval.errors import BadInputError

    if ids in ("held-out", "all"):
        return ids
    path = Path(ids)
    if not path.exists():
        raise BadInputError(f"--ids {ids!r} is neither `held-out`, `all` nor a file",
                            "pass a text file with one utterance id per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
