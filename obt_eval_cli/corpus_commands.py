"""CLI: `ingest` a folder of recordings and `corpora` to list what is ingested."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval.corpus import Corpus
from obt_eval.corpus.ingest import IngestOptions, ingest
from obt_eval.corpus.segment import SegmentOptions
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
        segment: Annotated[bool, typer.Option(
            "--segment", help="Cut files longer than --segment-threshold at pauses into utterances.")] = False,
        segment_min: Annotated[float, typer.Option(help="Shortest segment wanted, seconds.")] = 2.0,
        segment_max: Annotated[float, typer.Option(
            help="Longest segment wanted, seconds (speech is never cut).")] = 15.0,
        segment_threshold: Annotated[float | None, typer.Option(
            help="Cut only files longer than this many seconds [default: --segment-max].")] = None,
        vad: Annotated[str, typer.Option(
            help="Speech detector for --segment: silero (Silero VAD) or energy (RMS level, -40 dB).")] = "silero",
        cut_long_speech: Annotated[bool, typer.Option(
            "--cut-long-speech", help="Cut speech longer than --segment-max with no pause at its quietest "
                                      "point (default: keep it whole and report it).")] = False,
        phones_at_cuts: Annotated[str, typer.Option(
            help="Phone intervals crossing a segment cut: drop or clip.")] = "drop",
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Check and convert a folder of recordings into a corpus (16 kHz mono manifest).

        With --segment, long recordings (whole chapters) are cut at pauses into 2-15 s utterances; the
        manifest maps each one back to its file and time (source_id, segment_start, segment_end).

        Example: obt-eval ingest demo/wavs --name demo --metadata demo/metadata.csv --alignments demo/textgrids

        Example: obt-eval ingest chapters --name chapters --segment --segment-max 10
        """
        segmenting = SegmentOptions(min_seconds=segment_min, max_seconds=segment_max,
                                    threshold_seconds=segment_threshold, vad=vad,
                                    cut_long_speech=cut_long_speech) if segment else None
        options = IngestOptions(max_duration=max_duration, copy_audio=copy_audio, workers=workers,
                                segmenting=segmenting, phones_at_cuts=phones_at_cuts)
        result = ingest(audio_dir, name, workspace(workspace_dir), metadata=metadata, alignments=alignments,
                        options=options, progress=not as_json).summary()
        lines = [f"corpus {name!r}: {result['ingested']} of {result['found']} files ingested, "
                 f"{result['hours'] * 60:.1f} min, {result['speakers']} speakers -> {result['path']}"]
        seg = result["segmentation"]
        if seg is not None:
            lines.append(f"  segmented {seg['segmented_files']} files into {seg['segments']} segments "
                         f"({seg['whole_files']} shorter files kept whole); {result['utterances']} utterances; "
                         f"{seg['left_out_hours'] * 60:.1f} of {seg['source_hours'] * 60:.1f} min left out (pauses)")
            if seg["stretches"]:
                kinds = ", ".join(f"{k} {n}" for k, n in sorted(seg["stretch_kinds"].items()))
                lines.append(f"  reported stretches: {kinds} (all in corpus.json)")
                lines += [f"    {s['source_id']} {s['start']:.2f}-{s['end']:.2f} s: {s['kind']}: {s['reason']}"
                          for s in seg["stretches"][:10]]
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
                         "files": int(corpus.manifest["source_id"].nunique()),
                         "hours": round(corpus.total_seconds / 3600, 4),
                         "speakers": int(corpus.manifest["speaker"].nunique()),
                         "aligned": corpus.item_path is not None})
        human = "\n".join(f"{r['name']}: {r['utterances']} utterances from {r['files']} files, {r['hours']:.2f} h, "
                           f"{r['speakers']} speakers"
                          + (", aligned" if r["aligned"] else "") for r in rows) or "no corpora yet"
        report({"corpora": rows}, as_json, human)
