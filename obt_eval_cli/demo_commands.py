"""CLI commands of the demo area: `obt-eval demo` (the demo experiment) and `obt-eval demo-corpus`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval_cli.common import JsonOpt, WorkspaceOpt, report, workspace


def register(app: typer.Typer) -> None:
    """Adds this area's commands to `app`."""

    @app.command("demo")
    def demo(
        encoders: Annotated[str | None, typer.Option(
            "--encoders", help="Comma-separated encoders (default mfcc,logmel: no download).")] = None,
        vocoder_steps: Annotated[int | None, typer.Option("--vocoder-steps", help="Tiny vocoder steps (300).")] = None,
        detach: Annotated[bool, typer.Option("--detach", help="Return at once; the workers carry it on.")] = False,
        no_worker: Annotated[bool, typer.Option("--no-worker", help="Start no local worker.")] = False,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The whole product on a synthetic corpus, offline: the experiment preset `demo`.

        Demo corpus (espeak-ng Portuguese + Guarani) → mfcc and logmel → search → units (k=50) → tiny
        vocoders → 6 held-out utterances synthesized and scored → a study with 3 invitations → the
        decision report. Same as `obt-eval experiment run --name demo --preset demo`.
        Example: obt-eval demo
        """
        from obt_eval_cli.experiment_commands import build_options, run_and_follow

        w = workspace(ws)
        given = {"encoders": encoders.split(",") if encoders else None, "vocoder_steps": vocoder_steps,
                 "vocoder_validate_every": vocoder_steps}
        run_and_follow(w, build_options(w, "demo", given, "demo"), detach, no_worker, None, as_json)

    @app.command("demo-corpus")
    def demo_corpus(
        out_dir: Annotated[Path, typer.Argument(help="Folder to create (or an older demo corpus to replace).")],
        languages: Annotated[
            str, typer.Option("--languages", help="Comma-separated espeak languages: pt-br, gn.")
        ] = "pt-br,gn",
        speakers: Annotated[int, typer.Option("--speakers", help="Voice variants (speakers) per language.")] = 3,
        sentences: Annotated[
            int | None, typer.Option("--sentences", help="Sentences per language (each spoken by every speaker).")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the per-utterance rate, pitch and noise.")] = 0,
        as_json: JsonOpt = False,
    ) -> None:
        """Synthesize a small Brazilian Portuguese + Guarani corpus with exact phone alignments (no download).

        Writes OUT_DIR/wavs/*.wav (16 kHz), metadata.csv, textgrids/*.TextGrid, demo.item and README.txt.
        Example: obt-eval demo-corpus demo
        """
        from obt_eval.demo_corpus import DemoConfig, make_demo_corpus

        info = make_demo_corpus(
            out_dir,
            languages=tuple(x.strip() for x in languages.split(",") if x.strip()),
            speakers_per_language=speakers,
            sentences_per_language=sentences if sentences is not None else DemoConfig.sentences_per_language,
            seed=seed,
            progress=True,
        )
        human = (
            f"wrote {info.num_utterances} utterances ({info.total_seconds / 60:.1f} min; "
            f"{len(info.speakers)} speakers: {', '.join(info.speakers)}) to {info.out_dir}\n"
            f"{info.num_phones} phones, {len(info.phone_inventory)} phone types, {info.num_items} ABX items\n\n"
            f"next steps:\n"
            f"  {info.ingest_command}\n"
            f"  obt-eval experiment run --name first --corpus demo --encoders mfcc,logmel --k 50 \\\n"
            f"      --vocoder-preset tiny --vocoder-steps 300 --study-utterances 6\n"
            f"  obt-eval experiment report first"
        )
        report(info.to_dict(), as_json, human)
