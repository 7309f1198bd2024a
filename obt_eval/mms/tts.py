"""MMS-TTS as a baseline system of a listening test: synthesize the study utterances' transcripts.

`facebook/mms-tts-<iso>` (or a local VITS folder) speaks each utterance's transcript; the output is
resampled to 16 kHz (soxr) and goes through the same `OutputPolicy` as every unit vocoder's stimuli
(edge silence trimmed, 150 ms padding, −23 LUFS), so raters cannot pick it out by level or silence. The
folder has the same stimuli.csv/stimuli.json layout `synthesize` writes, so `study create`,
`resynthesis-metrics`, `predict-mos` and `intelligibility` accept it. Utterances without a transcript, or
whose transcript has no character the model knows, are reported, not synthesized.

VITS samples its durations and prior noise: each utterance is generated under a seed derived from the
run's seed and its id, so re-runs give the same audio.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from obt_eval.atomic import write_json, write_text
from obt_eval.audio import resample, write_wav
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError
from obt_eval.frames import SAMPLE_RATE
from obt_eval.integrity import checksums
from obt_eval.mms.hub import MMS_LICENCE, load_or_explain, pick_device, revision_of
from obt_eval.provenance import provenance
from obt_eval.vocoder.postprocess import OutputPolicy, apply_policy
from obt_eval.vocoder.synthesis import STIMULI_SIDECAR, STIMULI_TABLE
from obt_eval.workspace import Workspace, safe_name

HELD_OUT_SPLITS = ("dev", "valid", "validation", "test")


class TextToSpeech:
    """A VITS checkpoint (MMS-TTS) ready to speak text."""

    def __init__(self, source: str, *, revision: str | None = None, device: str | torch.device | None = None):
        from transformers import AutoConfig, AutoTokenizer, VitsModel

        self.source = str(source)
        self.device = pick_device(device)
        config = load_or_explain(AutoConfig.from_pretrained, self.source, "TTS model", revision=revision)
        if config.model_type != "vits":
            raise BadInputError(f"{self.source} is a {config.model_type!r} model, not VITS/MMS-TTS",
                                "use facebook/mms-tts-<iso639-3> or a local VITS folder")
        self.tokenizer = load_or_explain(AutoTokenizer.from_pretrained, self.source, "TTS tokenizer",
                                         revision=revision)
        self.model = load_or_explain(VitsModel.from_pretrained, self.source, "TTS model", revision=revision)
        self.model.eval().to(self.device)
        self.sampling_rate = int(config.sampling_rate)
        self.revision = revision_of(self.source, config, revision)
        self.licence = MMS_LICENCE if "facebook/mms" in self.source else ""

    def describe(self) -> dict:
        return {"model": self.source, "revision": self.revision, "licence": self.licence,
                "model_sample_rate": self.sampling_rate, "uroman": bool(getattr(self.tokenizer, "is_uroman", False))}

    def token_ids(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        # add_blank puts id 0 between characters: a text of unknown characters becomes [0]
        only_blanks = bool(getattr(self.tokenizer, "add_blank", False)) and bool((ids == 0).all())
        if ids.numel() == 0 or only_blanks:
            raise BadInputError(f"the transcript {text[:60]!r} has no character this TTS model knows",
                                "check the model's language (facebook/mms-tts-<iso>) and the transcript's script"
                                + ("; install `uroman` to romanise other scripts"
                                   if getattr(self.tokenizer, "is_uroman", False) else ""))
        return ids

    @torch.inference_mode()
    def speak(self, text: str, seed: int = 0) -> np.ndarray:
        """16 kHz float32 speech for `text` (raw: no loudness or silence policy)."""
        ids = self.token_ids(text).to(self.device)
        torch.manual_seed(seed)
        wave = self.model(input_ids=ids).waveform[0].float().cpu().numpy()
        return resample(wave, self.sampling_rate, SAMPLE_RATE)


@dataclass
class TtsReport:
    out_dir: Path
    written: int = 0
    skipped: int = 0
    problems: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"out": str(self.out_dir), "written": self.written, "skipped_existing": self.skipped,
                "problems": self.problems}


def select_ids(corpus: Corpus, ids: list[str] | str = "held-out", like: str | os.PathLike | None = None) -> list[str]:
    """Which utterances to speak: those of another system's stimuli folder (`like`), a list, `all`, or
    `held-out` (manifest split dev/valid/test; all utterances if the corpus has no such split)."""
    if like is not None:
        from obt_eval.quality.clips import read_clips

        return list(read_clips(like).clips)
    if not isinstance(ids, str):
        return list(ids)
    if ids == "all":
        return corpus.ids
    if ids == "held-out":
        split = corpus.manifest.get("split", pd.Series([""] * len(corpus.ids))).fillna("").astype(str).str.lower()
        held = corpus.manifest.loc[split.isin(HELD_OUT_SPLITS).to_numpy(), "id"].tolist()
        return held or corpus.ids
    raise BadInputError(f"unknown id selection {ids!r}", "use `held-out`, `all`, a file of ids, or --like DIR")


def _seed_for(seed: int, uid: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(uid.encode("utf-8"))) % (2**31)


def synthesize_transcripts(
    tts: TextToSpeech | str,
    corpus: Corpus | str,
    out_dir: str | os.PathLike,
    *,
    ids: list[str] | str = "held-out",
    like: str | os.PathLike | None = None,
    workspace: Workspace | None = None,
    policy: OutputPolicy | None = None,
    system: str | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> TtsReport:
    """Speak the transcripts of `ids` into a stimuli folder (one WAV per utterance + stimuli.csv/json).

    Resumable: utterances already written with the same model revision, policy and seed are kept.
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus, workspace)
    tts = tts if isinstance(tts, TextToSpeech) else TextToSpeech(tts, device=device)
    policy = policy or OutputPolicy()
    out_dir = Path(out_dir)
    id_list = select_ids(corpus, ids, like)
    if not id_list:
        raise BadInputError("no utterances to synthesize", "check --ids / --like and the corpus")
    known = set(corpus.ids)
    transcripts = dict(zip(corpus.manifest["id"].astype(str), corpus.manifest.get(
        "transcript", pd.Series([""] * len(corpus.ids))).fillna("").astype(str), strict=True))
    key = {"model": tts.source, "revision": tts.revision, "policy": policy.to_dict(), "seed": seed}
    progress_file = out_dir / ".progress.jsonl"
    done: dict[str, dict] = {}
    if progress_file.exists():
        for line in progress_file.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.pop("key", None) == key and (out_dir / row["file"]).exists():
                done[row["id"]] = row
    report = TtsReport(out_dir)
    report.skipped = sum(u in done for u in id_list)
    out_dir.mkdir(parents=True, exist_ok=True)
    with progress_file.open("a", encoding="utf-8") as log:
        for uid in tqdm([u for u in id_list if u not in done], desc=f"tts {out_dir.name}", unit="utt",
                        disable=not progress):
            if uid not in known:
                report.problems.append({"id": uid, "problem": f"not in corpus {corpus.name!r}"})
                continue
            text = transcripts.get(uid, "").strip()
            if not text:
                report.problems.append({"id": uid, "problem": "no transcript in the corpus metadata"})
                continue
            try:
                wave = tts.speak(text, _seed_for(seed, uid))
            except BadInputError as exc:
                report.problems.append({"id": uid, "problem": str(exc).splitlines()[0]})
                continue
            out, info = apply_policy(wave, policy)
            name = f"{safe_name(uid)}.wav"
            write_wav(out_dir / name, out)
            row = {"id": uid, "file": name, "speaker": "mms-tts", "text": text,
                   "source_samples": int(corpus.row(uid)["num_samples"]), "generated_samples": int(len(wave)),
                   "num_samples": int(len(out)), **info}
            log.write(json.dumps({**row, "key": key}, ensure_ascii=False, default=str) + "\n")
            log.flush()
            done[uid] = row
            report.written += 1
    rows = [done[u] for u in id_list if u in done]
    write_text(out_dir / STIMULI_TABLE, pd.DataFrame(rows).to_csv(index=False))
    write_json(out_dir / STIMULI_SIDECAR, {
        "system": system or out_dir.name, "kind": "tts", **tts.describe(),
        "corpus": corpus.name, "corpus_path": str(corpus.root.resolve()),
        # resynthesis-metrics reads `deduplicate` as "not sample-aligned with the original": TTS output has its
        # own durations, so MCD/F0 are compared along a DTW path and STOI is left out, as for dedup units
        "deduplicate": True, "policy": policy.to_dict(), "seed": seed, "sample_rate": SAMPLE_RATE,
        "count": len(rows), "problems": report.problems,
        "checksums": checksums(out_dir, [r["file"] for r in rows]), "provenance": provenance(),
    })
    if not rows and report.problems:
        raise BadInputError(f"no utterance could be synthesized; first problem: {report.problems[0]['problem']}",
                            "the corpus needs transcripts (ingest --metadata with a transcript column)")
    return report
