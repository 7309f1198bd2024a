"""CLI commands of the vocoder area: train-vocoder, train-vocoders, synthesize, resynthesis-metrics."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from obt_eval.errors import BadInputError
from obt_eval_cli.common import JsonOpt, WorkspaceOpt, id_selection, report, workspace

PresetOpt = Annotated[str, typer.Option("--preset", help="`reference` (published recipe), `small` or `tiny`.")]
SpeakersOpt = Annotated[bool, typer.Option("--speakers/--no-speakers", help="Condition on the speaker (keeps voices).")]
F0Opt = Annotated[bool, typer.Option("--f0/--no-f0", help="Condition on quantised F0 of the original recording.")]
DurOpt = Annotated[bool, typer.Option("--durations/--no-durations",
                                      help="Also train a duration predictor (speak from deduplicated units).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Train until this step (default: 400000).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Segments per step, all GPUs together (16).")]
SegmentOpt = Annotated[int | None, typer.Option("--segment-size", help="Samples per segment, multiple of 320 (8960).")]
CkptOpt = Annotated[int | None, typer.Option("--checkpoint-every", help="Steps between checkpoints (2000).")]
ValOpt = Annotated[int | None, typer.Option("--validate-every", help="Steps between validations (1000).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (1234).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: CUDA if present).")]
CorpusOpt = Annotated[str | None, typer.Option("--corpus", help="Corpus name or folder (default: from the units).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Discard an earlier run in the same folder.")]


def _config(preset_name: str, batch_size, segment_size, checkpoint_every, validate_every, seed):
    from obt_eval.vocoder.config import preset

    cfg = preset(preset_name)
    changes = {k: v for k, v in {"batch_size": batch_size, "segment_size": segment_size,
                                 "checkpoint_every": checkpoint_every, "validate_every": validate_every,
                                 "seed": seed}.items() if v is not None}
    if segment_size is not None and (segment_size % 320 or segment_size <= 0):
        raise BadInputError(f"--segment-size {segment_size} is not a positive multiple of 320",
                            "one unit is 320 samples: use e.g. 8960 (28 units)")
    cfg.train = replace(cfg.train, **changes)
    return cfg


def _parse_units(pairs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BadInputError(f"--units {pair!r} is not ENCODER=UNITS_DIR",
                                "write e.g. --units xlsr53=workspace/units/xlsr53-L14-k100")
        enc, path = pair.split("=", 1)
        out[enc.strip()] = Path(path)
    return out


def register(app: typer.Typer) -> None:
    """Adds this area's commands to `app`."""

    @app.command("train-vocoder")
    def train_vocoder_cmd(
        units: Annotated[Path, typer.Option("--units", help="Units folder (from `obt-eval units`).")],
        name: Annotated[str | None, typer.Option("--name", help="Vocoder name (default: the units folder's).")] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Vocoder folder (default: vocoders/NAME).")] = None,
        corpus: CorpusOpt = None,
        speakers: SpeakersOpt = False,
        f0: F0Opt = False,
        durations: DurOpt = False,
        steps: StepsOpt = None,
        batch_size: BatchOpt = None,
        segment_size: SegmentOpt = None,
        checkpoint_every: CkptOpt = None,
        validate_every: ValOpt = None,
        seed: SeedOpt = None,
        preset_name: PresetOpt = "reference",
        device: DeviceOpt = None,
        overwrite: OverwriteOpt = False,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Train (or resume) a unit HiFi-GAN on one units folder and the corpus audio it came from.

        Re-running the same command resumes from the last checkpoint. Works under `torchrun` (DDP).
        Example: obt-eval train-vocoder --units workspace/units/demo-logmel-k50 --preset tiny --steps 300
        """
        from obt_eval.vocoder.train import train_vocoder

        w = workspace(ws)
        cfg = _config(preset_name, batch_size, segment_size, checkpoint_every, validate_every, seed)
        out_dir = out or w.vocoder_dir(name or units.resolve().name)
        result = train_vocoder(units, out_dir, cfg, corpus=corpus, workspace=w, speakers=speakers, f0=f0,
                               durations=durations, steps=steps, device=device, overwrite=overwrite)
        if os.environ.get("RANK", "0") != "0":
            return  # under torchrun only rank 0 reports
        s = result.summary()
        report(s, as_json, f"vocoder at {s['vocoder']} (step {s['step']}, validation mel-L1 {s['val_mel_l1']}, "
                           f"{s['steps_per_second']} steps/s); curves: {out_dir / 'curves.png'}")

    @app.command("train-vocoders")
    def train_vocoders_cmd(
        units: Annotated[list[str], typer.Option("--units", help="ENCODER=UNITS_DIR, once per encoder.")],
        encoders: Annotated[str | None, typer.Option("--encoders", help="Comma-separated subset/order.")] = None,
        prefix: Annotated[str, typer.Option("--prefix", help="Vocoder names are PREFIX-ENCODER.")] = "vocoder",
        corpus: CorpusOpt = None,
        speakers: SpeakersOpt = False,
        f0: F0Opt = False,
        durations: DurOpt = False,
        steps: StepsOpt = None,
        batch_size: BatchOpt = None,
        segment_size: SegmentOpt = None,
        checkpoint_every: CkptOpt = None,
        validate_every: ValOpt = None,
        seed: SeedOpt = None,
        preset_name: PresetOpt = "reference",
        device: DeviceOpt = None,
        overwrite: OverwriteOpt = False,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Train one vocoder per encoder with identical settings, seed and utterances (the A/B protocol).

        Example: obt-eval train-vocoders --units xlsr53=UNITS_A --units mms-300m=UNITS_B --speakers
        """
        from obt_eval.units.store import UnitsStore
        from obt_eval.vocoder.train import train_vocoder

        w = workspace(ws)
        by_encoder = _parse_units(units)
        order = [e.strip() for e in encoders.split(",") if e.strip()] if encoders else list(by_encoder)
        missing = [e for e in order if e not in by_encoder]
        if missing:
            raise BadInputError(f"no --units given for encoder(s) {', '.join(missing)}",
                                "add --units ENCODER=UNITS_DIR for each encoder in --encoders")
        stores = {e: UnitsStore.open(by_encoder[e]) for e in order}
        corpora = {s.meta.get("corpus") for s in stores.values()}
        if len(corpora) > 1 and corpus is None:
            raise BadInputError(f"the units come from different corpora ({', '.join(map(str, corpora))})",
                                "an A/B comparison needs units of the same recordings for every encoder")
        shared = sorted(set.intersection(*(set(s.ids) for s in stores.values())))
        cfg = _config(preset_name, batch_size, segment_size, checkpoint_every, validate_every, seed)
        results = {}
        for enc in order:
            typer.echo(f"== {enc}: {by_encoder[enc]}", err=True)
            result = train_vocoder(stores[enc], w.vocoder_dir(f"{prefix}-{enc}"), cfg, corpus=corpus, workspace=w,
                                   speakers=speakers, f0=f0, durations=durations, steps=steps, ids=shared,
                                   device=device, overwrite=overwrite)
            results[enc] = result.summary()
        lines = [f"{e}: {r['vocoder']} step {r['step']} val mel-L1 {r['val_mel_l1']}" for e, r in results.items()]
        report({"vocoders": results, "utterances": len(shared)}, as_json, "\n".join(lines))

    @app.command("synthesize")
    def synthesize_cmd(
        vocoder: Annotated[Path, typer.Option("--vocoder", help="Vocoder folder or checkpoint (.pt).")],
        units: Annotated[Path, typer.Option("--units", help="Units folder from the same codebook.")],
        out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: stimuli/VOCODER).")] = None,
        ids: Annotated[str, typer.Option("--ids", help="`held-out`, `all`, or a file of ids.")] = "held-out",
        dedup: Annotated[bool, typer.Option("--dedup", help="Deduplicated units, predicted durations.")] = False,
        speaker: Annotated[str | None, typer.Option("--speaker", help="Voice to use for every utterance.")] = None,
        loudness: Annotated[float, typer.Option("--loudness", help="Target integrated loudness, LUFS.")] = -23.0,
        pad_ms: Annotated[float, typer.Option("--pad-ms", help="Silence added at both ends after trimming.")] = 150.0,
        trim_db: Annotated[float, typer.Option("--trim-db", help="Trim edges quieter than peak minus this.")] = 40.0,
        no_trim: Annotated[bool, typer.Option("--no-trim", help="Keep edge silence (still pads).")] = False,
        max_gain_db: Annotated[float, typer.Option(
            "--max-gain-db", help="Refuse (report, do not write) a clip needing more gain than this to reach "
                                  "--loudness: near-silent output.")] = 30.0,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Utterances per generator call.")] = 16,
        system: Annotated[str | None, typer.Option("--system", help="System name in tables (default: folder).")] = None,
        precision: Annotated[str, typer.Option("--precision", help="auto (GPU bf16, CPU fp32), fp32, bf16.")] = "auto",
        corpus: CorpusOpt = None,
        device: DeviceOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Synthesize 16 kHz PCM-16 WAVs, loudness-normalised (EBU R128) and silence-trimmed alike.

        Example: obt-eval synthesize --vocoder workspace/vocoders/demo-logmel-k50
        --units workspace/units/demo-logmel-k50
        """
        from obt_eval.vocoder.postprocess import OutputPolicy
        from obt_eval.vocoder.synthesis import synthesize_units

        w = workspace(ws)
        id_sel = id_selection(ids)
        vocoder_name = vocoder.resolve().name if vocoder.is_dir() else vocoder.resolve().parent.name
        out_dir = out or w.stimuli_dir(vocoder_name + ("-dedup" if dedup else ""))
        policy = OutputPolicy(loudness_lufs=loudness, trim=not no_trim, trim_db=trim_db, pad_ms=pad_ms,
                              max_gain_db=max_gain_db)
        result = synthesize_units(vocoder, units, out_dir, ids=id_sel, corpus=corpus, workspace=w,
                                  deduplicate=dedup, speaker=speaker, policy=policy, batch_size=batch_size,
                                  system=system, device=device, precision=precision)
        s = result.summary()
        named = [f"  {p['id']}: {p['problem']}" for p in s["problems"][:20]]
        if len(s["problems"]) > 20:
            named.append(f"  ... and {len(s['problems']) - 20} more (all in {s['out']}/stimuli.json)")
        head = (f"{s['written']} WAV(s) in {s['out']} ({s['skipped_existing']} already there, "
                f"{len(s['problems'])} problem(s)); {s['x_real_time']}x real time")
        report(s, as_json, "\n".join([head, *named]))

    @app.command("resynthesis-metrics")
    def metrics_cmd(
        stimuli: Annotated[list[str], typer.Option(
            "--stimuli", help="Stimuli folder from `synthesize`, or any folder of <utterance id>.wav (then --corpus); "
                              "NAME=DIR names the system.")],
        yardstick: Annotated[bool, typer.Option("--yardstick/--no-yardstick",
                                                help="Also score Griffin-Lim from the true mel.")] = False,
        out: Annotated[Path | None, typer.Option("--out", help="Write the per-system table here (CSV).")] = None,
        corpus: CorpusOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """MCD (DTW), F0 RMSE, GPE, VDE, FFE and STOI of each system against the original recordings.

        A plain folder of WAVs (e.g. another vocoder's output, any sample rate) is matched to the corpus by
        file name; names that are no utterance id are reported and skipped.
        Example: obt-eval resynthesis-metrics --stimuli workspace/stimuli/demo-logmel-k50 --yardstick
        """
        import pandas as pd

        from obt_eval.atomic import write_text
        from obt_eval.vocoder.metrics import resynthesis_metrics, summarise

        w = workspace(ws)
        tables, unknown, folders = [], {}, []
        for i, spec in enumerate(stimuli):
            name, sep, folder = spec.partition("=")
            system, path = (name.strip(), Path(folder)) if sep and not Path(spec).exists() else (None, Path(spec))
            table = resynthesis_metrics(path, corpus=corpus, workspace=w, yardstick=yardstick and i == 0,
                                        system=system)
            if table.attrs.get("unknown_ids"):
                unknown[str(table["system"].iloc[0])] = table.attrs["unknown_ids"]
            tables.append(table)
            folders.append(str(path / "metrics.csv"))
        summary = summarise(pd.concat(tables, ignore_index=True))
        if out is not None:
            write_text(out, summary.to_csv(index=False))
        records = summary.round(4).to_dict(orient="records")
        human = summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
        for system, ids in unknown.items():
            human += (f"\n{system}: {len(ids)} file(s) named after no utterance of the corpus, skipped: "
                      f"{', '.join(ids[:5])}{' …' if len(ids) > 5 else ''}")
        report({"systems": records, "per_utterance": folders, "unknown_ids": unknown}, as_json, human)
