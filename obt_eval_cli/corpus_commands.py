"""CLI commands of the corpus area (being written)."""

import typer


def register(app: typer.Typer) -> None:
    """Adds this area's commands to `app`."""
