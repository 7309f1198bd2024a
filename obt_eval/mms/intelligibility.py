"""Intelligibility of each system's speech: ASR error rates of its clips, against the transcript and
against the ASR of the original recording.

The rise in CER/WER from the original recording to its resynthesis is what a unit encoder + vocoder
costs in intelligibility (DASB's and the Interspeech 2024 discrete speech challenge's dWER/dCER):
`dcer = CER(resynthesis vs transcript) − CER(original vs transcript)` over the clips with a transcript.
`cer_vs_original` compares the resynthesis with the ASR of the original recording and needs no
transcript, and stays meaningful when the recogniser's language is only a neighbour of the speech's
(no adapter for it): both sides are then decoded in the same wrong orthography.

Writes `<stimuli>/intelligibility.json`; ASR of the originals is cached per corpus and model in
`<corpus>/asr/`, so every system of a study reuses it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from obt_eval.atomic import write_json
from obt_eval.audio import load_16k
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import ObtEvalError
from obt_eval.integrity import file_checksum
from obt_eval.mms.asr import ErrorCounts, SpeechRecognizer
from obt_eval.mms.languages import same_language
from obt_eval.provenance import provenance
from obt_eval.quality.annotate import audio_fingerprint
from obt_eval.quality.clips import read_clips
from obt_eval.quality.resume import ResumeLog
from obt_eval.workspace import Workspace, safe_name

OUTPUT = "intelligibility.json"
NORMALISATION = ("NFKC, casefold, characters other than letters/marks/digits/apostrophes -> space, whitespace "
                 "collapsed; CER over characters incl. spaces; corpus-level rates = summed edits / summed lengths")


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _transcripts(corpus: Corpus) -> dict[str, str]:
    if "transcript" not in corpus.manifest:
        return {}
    out = {}
    for uid, text in zip(corpus.manifest["id"], corpus.manifest["transcript"], strict=True):
        if isinstance(text, str) and text.strip():
            out[str(uid)] = text
    return out


def _asr_key(recognizer: SpeechRecognizer) -> dict:
    return {"model": recognizer.source, "revision": recognizer.revision, "adapter": recognizer.adapter}


def original_hypotheses(recognizer: SpeechRecognizer, corpus: Corpus, ids: list[str],
                        progress: bool = True) -> tuple[dict[str, str], list[dict]]:
    """ASR of the original recordings of `ids`, cached in `<corpus>/asr/`."""
    name = safe_name(f"{Path(recognizer.source).name}-{recognizer.adapter or 'default'}")
    log = ResumeLog(corpus.root / "asr" / f"{name}.jsonl", _asr_key(recognizer))
    out, problems = {}, []
    for uid in tqdm(ids, desc=f"asr originals {corpus.name}", unit="utt", disable=not progress):
        try:
            path = corpus.audio_path(uid)
            fingerprint = audio_fingerprint(path)
            text = log.get(uid, fingerprint)
            if text is None:
                text = recognizer.transcribe(corpus.wave(uid))
                log.put(uid, text, fingerprint)
            out[uid] = text
        except (ObtEvalError, OSError, RuntimeError) as exc:
            problems.append({"id": uid, "problem": f"original: {str(exc).splitlines()[0]}"})
    return out, problems


def score_system(stimuli_dir: str | os.PathLike, recognizer: SpeechRecognizer, *, lang: str | None = None,
                 corpus: Corpus | str | None = None, workspace: Workspace | None = None,
                 progress: bool = True) -> dict:
    """Transcribe one system's clips and its originals; write and return `intelligibility.json`."""
    clips = read_clips(stimuli_dir, workspace)
    corp = clips.corpus(corpus, workspace)
    known = set(corp.ids)
    ids = [u for u in clips.clips if u in known]
    problems = list(clips.missing) + [{"id": u, "problem": f"utterance is not in corpus {corp.name!r}"}
                                      for u in clips.clips if u not in known]
    originals, more = original_hypotheses(recognizer, corp, ids, progress)
    problems += more
    transcripts = _transcripts(corp)
    log = ResumeLog(clips.directory / ".intelligibility-progress.jsonl", _asr_key(recognizer))
    rows = []
    # `paired` = the resynthesis counts over the clips whose original was transcribed too: dCER compares like sets
    resynth, paired, original, agreement = ErrorCounts(), ErrorCounts(), ErrorCounts(), ErrorCounts()
    for uid in tqdm(ids, desc=f"asr {clips.system}", unit="clip", disable=not progress):
        path = clips.clips[uid]
        try:
            checksum = file_checksum(path)
            hypothesis = log.get(uid, checksum)
            if hypothesis is None:
                hypothesis = recognizer.transcribe(load_16k(path))
                log.put(uid, hypothesis, checksum)
        except (ObtEvalError, OSError, RuntimeError) as exc:
            problems.append({"id": uid, "problem": str(exc).splitlines()[0]})
            continue
        reference = transcripts.get(uid)
        orig_hyp = originals.get(uid)
        row = {"utterance": uid, "file": path.name, "checksum": checksum, "hypothesis": hypothesis,
               "reference_text": reference, "original_hypothesis": orig_hyp,
               "cer": None, "wer": None, "original_cer": None, "original_wer": None,
               "cer_vs_original": None, "wer_vs_original": None}
        if reference is not None:
            mine = ErrorCounts.of(reference, hypothesis)
            row.update(cer=_rate(mine.cer), wer=_rate(mine.wer))
            resynth = resynth + mine
            if orig_hyp is not None:
                theirs = ErrorCounts.of(reference, orig_hyp)
                row.update(original_cer=_rate(theirs.cer), original_wer=_rate(theirs.wer))
                original = original + theirs
                paired = paired + mine
        if orig_hyp is not None:
            vs = ErrorCounts.of(orig_hyp, hypothesis)
            row.update(cer_vs_original=_rate(vs.cer), wer_vs_original=_rate(vs.wer))
            agreement = agreement + vs
        rows.append(row)

    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 6)

    system = {
        "cer": _rate(resynth.cer), "wer": _rate(resynth.wer),
        "original_cer": _rate(original.cer), "original_wer": _rate(original.wer),
        "cer_vs_original": _rate(agreement.cer), "wer_vs_original": _rate(agreement.wer),
        "dcer": delta(paired.cer, original.cer), "dwer": delta(paired.wer, original.wer),
        "n": len(rows), "n_with_transcript": sum(r["reference_text"] is not None for r in rows),
    }
    wanted = recognizer.lang
    result = {
        "system_name": clips.system, "stimuli": str(clips.directory.resolve()), "corpus": corp.name,
        **recognizer.describe(), "lang": wanted or lang,
        "adapter_matches_language": None if recognizer.adapter is None or wanted is None
        else same_language(recognizer.adapter, wanted),
        "normalisation": NORMALISATION, "clips": rows, "system": system, "problems": problems,
        "provenance": provenance(),
    }
    write_json(clips.directory / OUTPUT, result)
    return result
