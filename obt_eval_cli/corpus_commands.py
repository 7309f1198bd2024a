"""CLI: `ingest` a folder of recordings and `corpora` to list what is ingested."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval.corpus import Corpus
from obt_eval.corpus.ingest import IngestOptions, ingest
from obt_eval_cli.common import JsonOpt, WorkspaceOpt, report, workspace


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        audio_dir: Annotated[Path, typer.Argument(help="Folder of recordings (wav, flac, ogg, mp3), recursive.")],
        name: Annotated[str, typer.Option("--name", help="Corpus name (a folder name).")],
        metadata: Annotated[Path | None, typer.Option(
            help="CSV: utterance_id (file name without extension), speaker, language, split, transcript.")] = None,
        alignments: Annotated[Path | None, typer.Option(
            help="Phone alignments: a folder of Praat TextGrids or a ZeroSpeech .item file.")] = None,
        max_duration: Annotated[float, typer.Option(help="Reject files longer than this many seconds.")] = 3 * 3600.0,
        copy_audio: Annotated[bool, typer.Option(help="Copy even files that are already 16 kHz mono.")] = False,
        workers: Annotated[int, typer.Option(help="Files decoded in parallel.")] = 2,
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Check and convert a folder of recordings into a corpus (16 kHz mono manifest).

        Example: obt-eval ingest demo/wavs --name demo --metadata demo/metadata.csv --alignments demo/textgrids
        """
        options = IngestOptions(max_duration=max_duration, copy_audio=copy_audio, workers=workers)
        result = ingest(audio_dir, name, workspace(workspace_dir), metadata=metadata, alignments=alignments,
                        options=options, progress=not as_json).summary()
        lines = [f"corpus {name!r}: {result['ingested']} of {result['found']} files ingested, "
                 f"{result['hours'] * 60:.1f} min, {result['speakers']} speakers -> {result['path']}"]
        lines += [f"  rejected {r['file']}: {r['reason']}" for r in result["rejected_files"]]
        lines += [f"  warning: {w}" for w in result["warnings"]]
        report(result, as_json, "\n".join(lines))

    @app.command("corpora")
    def corpora_command(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
        """List the ingested corpora of the workspace.

        Example: obt-eval corpora
        """
        ws = workspace(workspace_dir)
        rows = []
        for folder in sorted((ws.root / "corpora").glob("*/manifest.parquet")):
            corpus = Corpus.open(folder.parent)
            rows.append({"name": corpus.name, "utterances": len(corpus.manifest),
                         "hours": round(corpus.total_seconds / 3600, 4),
                         "speakers": int(corpus.manifest["speaker"].nunique()),
                         "aligned": corpus.item_path is not None})
        human = "\n".join(f"{r['name']}: {r['utterances']} utterances, {r['hours']:.2f} h, {r['speakers']} speakers"
                          + (", aligned" if r["aligned"] else "") for r in rows) or "no corpora yet"
        report({"corpora": rows}, as_json, human)
