"""Entry point of the `obt-eval` console script: assembles the command groups and handles user errors."""

from __future__ import annotations

import importlib
import sys

import typer

from obt_eval.errors import ObtEvalError

# Each module defines `register(app)`; one module per area keeps the CLI thin and the areas apart.
COMMAND_MODULES = [
    "obt_eval_cli.corpus_commands",
    "obt_eval_cli.demo_commands",
    "obt_eval_cli.feature_commands",
    "obt_eval_cli.unit_commands",
    "obt_eval_cli.vocoder_commands",
    "obt_eval_cli.study_commands",
    "obt_eval_cli.app_commands",
    "obt_eval_cli.mms_commands",
    "obt_eval_cli.experiment_commands",
]


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="obt-eval",
        help="Compare speech encoders for a low-resource language: units, vocoders and listening tests.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    @app.callback()
    def root() -> None:
        """obt-eval: encoders -> units -> vocoders -> blinded listening tests."""

    @app.command()
    def version() -> None:
        """Print the obt-eval version."""
        import obt_eval

        typer.echo(obt_eval.__version__)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def run(argv: list[str] | None = None) -> int:
    """Run one command line and return its exit status (0 ok, 2 user error); for tests and scripts."""
    command = typer.main.get_command(build_app())
    try:
        command.main(args=argv, prog_name="obt-eval", standalone_mode=True)
    except ObtEvalError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
