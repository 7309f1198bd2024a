"""CLI commands of the MMS extras and automatic judges: lid, intelligibility, tts-baseline, predict-mos,
corpus-quality, and mms-toy-checkpoints (tiny random-weight checkpoints to try the MMS commands offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval.errors import BadInputError
from obt_eval_cli.common import JsonOpt, WorkspaceOpt, id_selection, report, workspace

DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: CUDA if present).")]
CorpusArg = Annotated[str, typer.Option("--corpus", help="Corpus name (in the workspace) or folder.")]
StimuliOpt = Annotated[list[Path], typer.Option("--stimuli", help="Stimuli folder (repeat for several systems).")]


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Adds this area's commands to `app`."""

    @app.command("lid")
    def lid_cmd(
        corpus: CorpusArg,
        model: Annotated[str, typer.Option("--model", help="Hub id or local folder of an audio-classification "
                                                           "checkpoint with language labels.")]
        = "facebook/mms-lid-256",
        expected: Annotated[str | None, typer.Option("--expected", help="Language every utterance should be in "
                                                                        "(default: each one's `language`).")] = None,
        top_k: Annotated[int, typer.Option("--top-k", help="Languages kept per utterance.")] = 3,
        device: DeviceOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Identify the spoken language of every utterance (MMS-LID) and flag those not in the expected one.

        Adds lid_top1, lid_top1_prob, lid_top3 (JSON) and lid_flag to the manifest; summary in corpus.json.
        Example: obt-eval lid --corpus demo --model facebook/mms-lid-256
        """
        from obt_eval.mms.lid import identify_corpus

        if top_k < 1:
            raise BadInputError(f"--top-k {top_k} must be at least 1")
        result = identify_corpus(corpus, model, expected=expected, top_k=top_k, workspace=workspace(ws),
                                 device=device)
        s = result.summary()
        lines = [f"{s['scored']} utterance(s) identified ({s['reused']} reused) with {s['model']}; "
                 f"top languages: {s['top1_counts']}",
                 f"{s['flagged_count']} not in the expected language"
                 + (f"; {s['no_expected_language']} without an expected language" if s["no_expected_language"]
                    else "")]
        lines += [f"  {f['id']}: expected {f['expected']}, heard {f['top1']} ({f['top1_prob']:.2f})"
                  for f in s["flagged"][:20]]
        if len(s["flagged"]) > 20:
            lines.append(f"  … {len(s['flagged']) - 20} more (see corpus.json or --json)")
        lines += [f"problem: {p['id']}: {p['problem']}" for p in s["problems"]]
        report(s, as_json, "\n".join(lines))

    @app.command("intelligibility")
    def intelligibility_cmd(
        stimuli: StimuliOpt,
        lang: Annotated[str | None, typer.Option("--lang", help="Language of the speech, ISO 639-3 (por) or "
                                                               "639-1 (pt); picks the adapter.")] = None,
        model: Annotated[str, typer.Option("--model", help="CTC checkpoint: Hub id or local folder.")]
        = "facebook/mms-1b-all",
        adapter: Annotated[str | None, typer.Option("--adapter", help="Adapter to load when the language has "
                                                                      "none (the closest available).")] = None,
        corpus: Annotated[str | None, typer.Option("--corpus", help="Corpus of the originals (default: from "
                                                                    "stimuli.json).")] = None,
        device: DeviceOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """CER/WER of each system's clips against the transcript and against the ASR of the original (dCER).

        Writes <stimuli>/intelligibility.json per folder.
        Example: obt-eval intelligibility --stimuli workspace/stimuli/vocoder-xlsr53 --lang por
        """
        from obt_eval.mms.asr import SpeechRecognizer
        from obt_eval.mms.intelligibility import score_system

        w = workspace(ws)
        recognizer = SpeechRecognizer(model, lang, adapter=adapter, device=device)
        results = [score_system(d, recognizer, lang=lang, corpus=corpus, workspace=w) for d in stimuli]
        summary = {"model": recognizer.describe(), "systems": [
            {"system": r["system_name"], "stimuli": r["stimuli"], **r["system"], "problems": len(r["problems"])}
            for r in results]}
        head = f"{'system':24} {'n':>4} {'CER':>7} {'WER':>7} {'dCER':>7} {'dWER':>7} {'CER/orig':>8}"
        rows = [f"{s['system'][:24]:24} {s['n']:>4} {_fmt(s['cer']):>7} {_fmt(s['wer']):>7} {_fmt(s['dcer']):>7} "
                f"{_fmt(s['dwer']):>7} {_fmt(s['cer_vs_original']):>8}" for s in summary["systems"]]
        note = f"ASR: {recognizer.source} (adapter {recognizer.adapter or 'none'}, revision {recognizer.revision})"
        report(summary, as_json, "\n".join([note, head, *rows]))

    @app.command("tts-baseline")
    def tts_cmd(
        corpus: CorpusArg,
        model: Annotated[str, typer.Option("--model", help="VITS checkpoint: facebook/mms-tts-<iso> or a local "
                                                           "folder.")],
        out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: stimuli/NAME).")] = None,
        name: Annotated[str | None, typer.Option("--name", help="System name (default: the model's).")] = None,
        ids: Annotated[str, typer.Option("--ids", help="`held-out` (dev/test split), `all`, or a file of ids.")]
        = "held-out",
        like: Annotated[Path | None, typer.Option("--like", help="Speak the utterances of this stimuli folder.")]
        = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of VITS's sampled durations and noise.")] = 0,
        loudness: Annotated[float, typer.Option("--loudness", help="Target integrated loudness, LUFS.")] = -23.0,
        pad_ms: Annotated[float, typer.Option("--pad-ms", help="Silence added at both ends after trimming.")] = 150.0,
        trim_db: Annotated[float, typer.Option("--trim-db", help="Trim edges quieter than peak minus this.")] = 40.0,
        device: DeviceOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Speak the utterances' transcripts with MMS-TTS into a stimuli folder: a baseline system for a study.

        Same 16 kHz / loudness / silence treatment as `synthesize`; `study create` takes the folder as a system.
        Example: obt-eval tts-baseline --corpus demo --model facebook/mms-tts-por --like workspace/stimuli/voc-a
        """
        from obt_eval.mms.tts import synthesize_transcripts
        from obt_eval.vocoder.postprocess import OutputPolicy

        w = workspace(ws)
        id_sel = id_selection(ids)
        system = name or Path(model.rstrip("/")).name
        out_dir = out or w.stimuli_dir(system)
        policy = OutputPolicy(loudness_lufs=loudness, trim_db=trim_db, pad_ms=pad_ms)
        result = synthesize_transcripts(model, corpus, out_dir, ids=id_sel, like=like, workspace=w, policy=policy,
                                        system=system, seed=seed, device=device)
        s = result.summary()
        lines = [f"{s['written']} WAV(s) in {s['out']} ({s['skipped_existing']} already there, "
                 f"{len(s['problems'])} problem(s))"]
        lines += [f"problem: {p['id']}: {p['problem']}" for p in s["problems"][:20]]
        report(s, as_json, "\n".join(lines))

    @app.command("predict-mos")
    def predict_cmd(
        stimuli: StimuliOpt,
        judges: Annotated[str, typer.Option("--judges", help="`auto` (every offline judge that loads: dnsmos, "
                                                             "distillmos) or a list of dnsmos,distillmos,utmosv2.")]
        = "auto",
        device: DeviceOpt = None,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Predicted MOS of every clip by automatic judges (DNSMOS P.835, Distill-MOS, UTMOSv2), per system.

        Writes <stimuli>/predicted_mos.json per folder (per clip, system means, pinned judge revisions).
        Example: obt-eval predict-mos --stimuli workspace/stimuli/vocoder-xlsr53 --stimuli workspace/stimuli/mms
        """
        from obt_eval.quality.predict import load_judges, predict_system

        w = workspace(ws)
        loaded, skipped = load_judges(judges, device)
        results = [predict_system(d, loaded, workspace=w, skipped=skipped) for d in stimuli]
        summary = {"judges": results[0]["judges"], "judges_skipped": skipped, "systems": [
            {"system": r["system_name"], "stimuli": r["stimuli"], **r["system"], "problems": len(r["problems"])}
            for r in results]}
        columns = [c for c in summary["systems"][0] if c not in ("system", "stimuli", "n", "problems")]
        head = f"{'system':24} {'n':>4} " + " ".join(f"{c:>12}" for c in columns)
        rows = [f"{s['system'][:24]:24} {s['n']:>4} " + " ".join(f"{_fmt(s[c]):>12}" for c in columns)
                for s in summary["systems"]]
        notes = [f"skipped {k}: {v}" for k, v in skipped.items()]
        report(summary, as_json, "\n".join([head, *rows, *notes]))

    @app.command("corpus-quality")
    def corpus_quality_cmd(
        corpus: CorpusArg,
        hop: Annotated[float, typer.Option("--hop-seconds", help="Seconds between DNSMOS's 9 s windows (1 = the "
                                                                 "reference; larger is faster on long files).")]
        = 1.0,
        worst: Annotated[int, typer.Option("--worst", help="How many of the noisiest recordings to list.")] = 10,
        ws: WorkspaceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """DNSMOS P.835 (SIG, BAK, OVRL) of every source recording: see noisy field recordings before training.

        Adds dnsmos_sig, dnsmos_bak, dnsmos_ovrl to the manifest; summary and noisiest list in corpus.json.
        Example: obt-eval corpus-quality --corpus demo
        """
        from obt_eval.quality.corpus_quality import score_corpus_quality

        result = score_corpus_quality(corpus, workspace=workspace(ws), hop_seconds=hop, worst=worst)
        s = result.summary()
        m = s["means"]
        lines = [f"{s['scored']} recording(s) scored ({s['reused']} reused); mean SIG {_fmt(m.get('dnsmos_sig'))} "
                 f"BAK {_fmt(m.get('dnsmos_bak'))} OVRL {_fmt(m.get('dnsmos_ovrl'))}", "noisiest (lowest OVRL):"]
        lines += [f"  {r['id']}: OVRL {r['dnsmos_ovrl']:.2f} SIG {r['dnsmos_sig']:.2f} BAK {r['dnsmos_bak']:.2f}"
                  for r in s["noisiest"]]
        lines += [f"problem: {p['id']}: {p['problem']}" for p in s["problems"]]
        report(s, as_json, "\n".join(lines))

    @app.command("mms-toy-checkpoints")
    def toy_cmd(
        out: Annotated[Path, typer.Argument(help="Folder to write lid/, asr/ and tts-<lang>/ into.")],
        languages: Annotated[str, typer.Option("--languages", help="ISO 639-3 codes; the first gets the TTS.")]
        = "por,grn,eng",
        as_json: JsonOpt = False,
    ) -> None:
        """Write tiny random-weight MMS-style checkpoints (LID, ASR with adapters, TTS) to try the commands offline.

        Their outputs are noise: they exercise the same loading code as the Hub ids, nothing more.
        Example: obt-eval mms-toy-checkpoints toy-mms
        """
        from obt_eval.mms.toy import make_toy_models

        langs = tuple(x.strip() for x in languages.split(",") if x.strip())
        if not langs:
            raise BadInputError("no language given", "pass --languages por,grn")
        paths = make_toy_models(out, langs)
        report({k: str(v) for k, v in paths.items()}, as_json,
               "\n".join(f"{k}: {v}" for k, v in paths.items()))
