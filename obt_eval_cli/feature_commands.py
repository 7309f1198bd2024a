"""CLI: `encoders`, `extract` features, `export-features` to the ZeroSpeech layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval.corpus import Corpus
from obt_eval.errors import BadInputError
from obt_eval_cli.common import JsonOpt, WorkspaceOpt, parse_int_list, report, workspace


def register(app: typer.Typer) -> None:
    @app.command("encoders")
    def encoders_command(as_json: JsonOpt = False) -> None:
        """List the encoders: checkpoint, family, default layer, layers, dim, frame rate, size and licence.

        Includes encoders added by other installed packages (entry-point group obt_eval.encoders).
        Example: obt-eval encoders
        """
        from obt_eval.encoders.registry import plugin_encoders, registered_encoders

        rows = [spec.facts() for spec in registered_encoders().values()]
        problems = plugin_encoders()[1]

        def cell(value, unit=""):
            return "-" if value in (None, "") else f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"

        header = (f"{'name':14} {'checkpoint':34} {'family':14} {'layer':>5} {'of':>3} {'dim':>5} {'Hz':>3} "
                  f"{'params':>6} {'weights':>8}  licence")
        lines = [header] + [
            f"{r['name']:14} {r['checkpoint']:34} {r['family'] or '-':14} {cell(r['default_layer']):>5} "
            f"{cell(r['num_layers']):>3} {cell(r['dim']):>5} {cell(r['frame_rate']):>3} "
            f"{cell(r['params_millions'], 'M'):>6} {cell(r['weights_size']):>8}  {r['licence']}"
            + ("" if r["provider"] == "obt-eval" else f"  (plugin: {r['provider']})")
            for r in rows
        ] + [f"skipped plugin: {p}" for p in problems]
        report({"encoders": rows, "plugin_problems": problems}, as_json, "\n".join(lines))

    @app.command("extract")
    def extract_command(
        corpus: Annotated[str, typer.Option("--corpus", help="Corpus name (see `obt-eval corpora`) or folder.")],
        encoder: Annotated[str, typer.Option(
            help="Registered name (see `obt-eval encoders`), Hub id, or local checkpoint folder.")],
        layer: Annotated[int | None, typer.Option(
            help="Hugging Face hidden_states index (0 = input of block 1, k = output of block k).")] = None,
        layers: Annotated[str | None, typer.Option(help="Several layers from one pass, e.g. 12-18 or 6,9,12.")] = None,
        device: Annotated[str | None, typer.Option(help="cuda, cuda:1 or cpu (default: cuda when present).")] = None,
        batch_seconds: Annotated[float | None, typer.Option(
            help="Padded audio per batch (default 1000 on GPU, 20 on CPU).")] = None,
        chunk_seconds: Annotated[float | None, typer.Option(help="Cut longer files into chunks (default 30).")] = None,
        workers: Annotated[int, typer.Option(help="Audio-decoding threads.")] = 4,
        overwrite: Annotated[bool, typer.Option(help="Delete existing stores and extract again.")] = False,
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Extract one layer (or several, from one forward pass) for every utterance of a corpus.

        Example: obt-eval extract --corpus demo --encoder mms-300m --layers 12-18
        """
        from obt_eval.features.extract import ExtractOptions, extract_features  # torch: only when needed

        if layer is not None and layers:
            raise BadInputError("give --layer or --layers, not both")
        wanted = [layer] if layer is not None else parse_int_list(layers)
        ws = workspace(workspace_dir)
        options = ExtractOptions(batch_seconds=batch_seconds, chunk_seconds=chunk_seconds, workers=workers)
        stores = extract_features(Corpus.open(corpus, ws), encoder, wanted, ws, device=device, options=options,
                                  overwrite=overwrite, progress=not as_json)
        rows = [{"layer": lay, "path": str(s.path), "utterances": len(s), "frames": s.num_frames, "dim": s.dim}
                for lay, s in stores.items()]
        first = next(iter(stores.values())).meta
        audio = first.get("extracted_audio_seconds", first.get("audio_seconds", 0.0))
        seconds = first.get("extract_seconds", 0.0)
        summary = {"corpus": corpus, "encoder": encoder, "stores": rows, "audio_seconds": audio,
                   "extract_seconds": seconds, "x_real_time": round(audio / seconds, 1) if seconds else None}
        human = "\n".join(f"layer {r['layer']}: {r['utterances']} utterances, {r['frames']} frames x {r['dim']} -> "
                          f"{r['path']}" for r in rows)
        report(summary, as_json, human)

    @app.command("export-features")
    def export_command(
        store: Annotated[Path, typer.Argument(help="Feature store folder (printed by `extract`).")],
        out_dir: Annotated[Path, typer.Argument(help="Where to write <utterance-id>.npy files.")],
        as_json: JsonOpt = False,
    ) -> None:
        """Write one <utterance-id>.npy (frames x dim, float32) per utterance: the ZeroSpeech/ABX layout.

        Example: obt-eval export-features workspace/features/demo/mfcc/L- out/mfcc_npy
        """
        from obt_eval.features import FeatureStore
        from obt_eval.features.extract import export_features

        count = export_features(FeatureStore.open(store), out_dir, progress=not as_json)
        report({"store": str(store), "out_dir": str(out_dir), "files": count}, as_json,
               f"wrote {count} .npy files to {out_dir}")
