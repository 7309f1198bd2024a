"""CLI: `units` (k-means), `abx`, `unit-metrics`, `search` (layer and k), `compare` (encoder report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval.errors import BadInputError
from obt_eval_cli.common import JsonOpt, WorkspaceOpt, parse_int_list, report, workspace


def _clean(value):
    """NaN -> None, so --json lines are strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


DeviceOpt = Annotated[str | None, typer.Option(help="cuda, cuda:1 or cpu (default: cuda when present).")]


def register(app: typer.Typer) -> None:
    @app.command("units")
    def units_command(
        features: Annotated[Path, typer.Option("--features", help="Feature store folder (printed by `extract`).")],
        k: Annotated[int, typer.Option("--k", help="Codebook size.")] = 100,
        sample_frac: Annotated[float, typer.Option(help="Fraction of utterances to fit on (fairseq: 0.1).")] = 0.1,
        seed: Annotated[int, typer.Option(help="Random seed: same seed, same codebook.")] = 0,
        n_init: Annotated[int, typer.Option(help="k-means++ restarts (best one is refined on all frames).")] = 3,
        max_iter: Annotated[int, typer.Option(help="Lloyd iterations at most.")] = 100,
        backend: Annotated[str, typer.Option(
            help="k-means backend: auto (= torch), torch or faiss (faiss-cpu init + Lloyd).")] = "auto",
        name: Annotated[str | None, typer.Option(
            help="Units folder name under <workspace>/units (default: corpus_encoder_L<layer>_k<k>_s<seed>).")] = None,
        out: Annotated[Path | None, typer.Option(help="Write the units folder here instead.")] = None,
        force: Annotated[bool, typer.Option(help="Replace existing units made with other settings.")] = False,
        device: DeviceOpt = None,
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Fit a k-means codebook on a sample of frames and write units for every utterance.

        Example: obt-eval units --features workspace/features/demo/mfcc/L- --k 100
        """
        from obt_eval.units.kmeans import KMeansConfig
        from obt_eval.units.learn import learn_units

        ws = workspace(workspace_dir)
        cfg = KMeansConfig(k=k, sample_frac=sample_frac, seed=seed, n_init=n_init, max_iter=max_iter, device=device,
                           backend=backend)
        out_dir = out if out else (ws.units_dir(name) if name else None)
        res = learn_units(features, cfg, out_dir=out_dir, workspace=ws, force=force, progress=not as_json)
        meta = res.units.meta
        summary = {
            "units": str(res.units.path), "k": res.units.k, "seed": seed, "utterances": len(res.units),
            "inertia": meta["inertia"], "heldout_inertia": meta.get("heldout_inertia"),
            "sample_utterances": meta["sample_utterances"], "sample_frames": meta["sample_frames"],
            "fit_seconds": meta["kmeans"]["fit_seconds"], "iterations": meta["kmeans"]["n_iter"],
            "device": meta["kmeans"]["device"], "backend": meta["kmeans"].get("backend_resolved"),
            "reused": res.reused, "skipped": len(res.skipped),
        }
        held = summary["heldout_inertia"]
        human = (f"{'reused' if res.reused else 'wrote'} {summary['utterances']} unit sequences (k={k}) -> "
                 f"{summary['units']}\n  inertia {summary['inertia']:.4f} on {summary['sample_frames']} frames"
                 + (f", held-out {held:.4f}" if held is not None else "")
                 + (f"\n  skipped {len(res.skipped)} utterances (NaN or empty features)" if res.skipped else ""))
        report(_clean(summary), as_json, human)

    @app.command("abx")
    def abx_command(
        item_file: Annotated[Path, typer.Argument(
            help="ZeroSpeech item file (#file onset offset #phone prev next speaker).")],
        features_dir: Annotated[Path, typer.Argument(
            help="Folder of <file>.npy (frames x dim, 50 Hz), or an obt-eval feature/units store.")],
        speaker: Annotated[str, typer.Option(help="within or across speaker.")] = "within",
        context: Annotated[str, typer.Option(help="within (same triphone context) or any.")] = "within",
        distance: Annotated[str | None, typer.Option(
            help="angular (features) or identical (discrete units); default: identical for a units store.")] = None,
        max_size_group: Annotated[int, typer.Option(
            help="Items of A, B and X per cell at most; 0 = all (exact).")] = 10,
        max_x_across: Annotated[int, typer.Option(help="X speakers per (A, B) across speakers; 0 = all.")] = 5,
        seed: Annotated[int, typer.Option(help="Seed of the subsampling.")] = 0,
        frame_rate: Annotated[float, typer.Option(help="Feature frames per second.")] = 50.0,
        frame_offset: Annotated[float | None, typer.Option(
            help="Centre of frame 0 in seconds (default: half a frame for .npy folders; for obt-eval stores the "
                 "one their sidecar records: 0.0125, w2v-BERT 0.0175).")] = None,
        details: Annotated[Path | None, typer.Option(help="Write per phone-pair errors to this CSV.")] = None,
        device: DeviceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """ABX phone discrimination error (ZeroSpeech/Libri-light definition, fastabx semantics).

        Example: obt-eval abx corpus.item features_npy/ --speaker across --max-size-group 10 --json
        """
        from obt_eval.atomic import write_text
        from obt_eval.metrics.abx import AbxConfig, abx_from_paths

        cfg = AbxConfig(speaker=speaker, context=context, distance=distance or "angular",  # type: ignore[arg-type]
                        max_size_group=max_size_group, max_x_across=max_x_across, seed=seed,
                        frame_rate=frame_rate, frame_offset=frame_offset, device=device)
        if distance is not None and distance not in ("angular", "identical"):
            raise BadInputError(f"unknown distance {distance!r}", "use angular or identical")
        res = abx_from_paths(item_file, features_dir, cfg, progress=not as_json)
        if details:
            write_text(details, res.details.to_csv(index=False))
        summary = res.summary()
        skipped = sum(res.skipped.values())
        human = (f"ABX error ({speaker} speaker, {context} context, {res.config['distance']}): "
                 f"{100 * res.error:.2f} %  [{res.num_items} items, {res.num_cells} cells, "
                 f"{res.num_pairs} phone pairs, {res.seconds:.1f} s]"
                 + (f"\n  skipped {skipped} items: " + ", ".join(f"{k}={v}" for k, v in res.skipped.items() if v)
                    if skipped else ""))
        report(_clean(summary), as_json, human)

    @app.command("unit-metrics")
    def unit_metrics_command(
        units: Annotated[Path, typer.Argument(help="Units folder (printed by `obt-eval units`).")],
        silhouette_sample: Annotated[int, typer.Option(help="Frames in the silhouette sample.")] = 5000,
        no_abx: Annotated[bool, typer.Option("--no-abx", help="Skip the unit ABX (and the speaker gap).")] = False,
        crosslingual: Annotated[Path | None, typer.Option(
            help="Units of another language (same encoder/layer): score this codebook on its corpus.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the samples, shuffles and folds.")] = 0,
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """PNMI/purity (+ shuffled baseline), silhouette, bitrate, unit ABX, speaker probe; writes metrics.json.

        Example: obt-eval unit-metrics workspace/units/demo_mfcc_L-_k100_s0
        """
        from obt_eval.metrics.unit_report import UnitMetricsConfig, unit_metrics

        cfg = UnitMetricsConfig(silhouette_sample=silhouette_sample, abx=not no_abx, seed=seed)
        out = unit_metrics(units, workspace=workspace(workspace_dir), config=cfg, crosslingual_units=crosslingual)
        keys = ["pnmi", "shuffled_pnmi", "phone_purity", "cluster_purity", "silhouette", "sample_size",
                "bitrate", "bitrate_dedup", "abx_within", "abx_across", "abx_gap", "speaker_probe_accuracy", "chance"]
        lines = [f"units {out['units']} (k={out['k']})"]
        lines += [f"  {key}: {out[key]:.4f}" if isinstance(out[key], float) else f"  {key}: {out[key]}"
                  for key in keys if key in out]
        lines += [f"  not computed: {k} ({v})" for k, v in out["not_computed"].items()]
        report(_clean(out), as_json, "\n".join(lines))

    @app.command("search")
    def search_command(
        corpus: Annotated[str, typer.Option("--corpus", help="Corpus name or folder.")],
        encoder: Annotated[str, typer.Option(help="Encoder name, Hub id or checkpoint folder.")],
        layers: Annotated[str | None, typer.Option(
            help="Layers from one forward pass, e.g. 12-18 (none for mfcc/logmel).")] = None,
        k: Annotated[str, typer.Option("--k", help="Codebook sizes, e.g. 100,150,200.")] = "100",
        sample_frac: Annotated[float, typer.Option(help="Fraction of utterances each k-means fits on.")] = 0.1,
        seed: Annotated[int, typer.Option(help="Seed of k-means and samples.")] = 0,
        max_size_group: Annotated[int, typer.Option(help="ABX items per cell at most; 0 = all.")] = 10,
        device: DeviceOpt = None,
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Score every layer (and every k) of one encoder on a corpus and name the best layer.

        Example: obt-eval search --corpus demo --encoder mms-300m --layers 12-18 --k 100,150,200
        """
        from obt_eval.search import SearchConfig, search_layers

        ks = parse_int_list(k) or []
        cfg = SearchConfig(ks=ks, sample_frac=sample_frac, seed=seed, max_size_group=max_size_group, device=device)
        res = search_layers(corpus, encoder, parse_int_list(layers), workspace(workspace_dir), cfg,
                            progress=not as_json)
        best = "-" if res.best_layer is None else res.best_layer
        human = [f"search {res.summary['encoder']} on {corpus}: best layer {best} by {res.best_metric}"
                 + (f" = {res.best_score:.4f}" if res.best_score is not None else ""), f"  table: {res.path}"]
        for row in res.rows.itertuples(index=False):
            vals = {m: getattr(row, m, None) for m in ("abx_within", "abx_across", "pnmi", "silhouette_units")}
            human.append(f"  layer {row.layer!s:>4} k {row.k:>4}: " + "  ".join(
                f"{m} {v:.4f}" for m, v in vals.items() if isinstance(v, float) and v == v))
        summary = {k2: v for k2, v in res.summary.items() if k2 != "rows"}
        report(_clean(summary), as_json, "\n".join(human))

    @app.command("compare")
    def compare_command(
        corpus: Annotated[str, typer.Option("--corpus", help="Corpus whose search results to compare.")],
        encoders: Annotated[str | None, typer.Option(help="Comma-separated encoders (default: all searched).")] = None,
        out: Annotated[Path | None, typer.Option(help="Output folder (default: <workspace>/reports/compare/<corpus>).")]
        = None,
        workspace_dir: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """One table (Markdown, CSV, HTML) and plots comparing encoders on a corpus, from `search` results.

        Example: obt-eval compare --corpus demo --encoders mfcc,logmel
        """
        from obt_eval.report.compare import compare

        wanted = [e.strip() for e in encoders.split(",") if e.strip()] if encoders else None
        res = compare(corpus, workspace(workspace_dir), wanted, out)
        lines = [f"comparison of {len(res.summary)} encoders on {corpus} -> {res.out_dir}"]
        for row in res.summary.itertuples(index=False):
            abx_text = f"ABX within {100 * row.abx_within:.2f} %" if row.abx_within == row.abx_within else "no ABX"
            lines.append(f"  {row.encoder}: best layer {row.best_layer} ({abx_text}), best k {row.best_k}")
        summary = {"out_dir": str(res.out_dir), "files": res.files, "summary": res.summary.to_dict(orient="records")}
        report(_clean(summary), as_json, "\n".join(lines))
