"""Spoken language identification with MMS-LID (`facebook/mms-lid-256`, or any audio classifier).

Quality control for OBT collections: every utterance gets its top-3 languages with probabilities, and is
flagged when the top language is not the one its metadata says (ISO 639-3, macrolanguages counted as
their members, see `obt_eval.mms.languages`). Labels come from the checkpoint's `config.id2label`.

Recordings longer than 30 s are scored on at most `MAX_CHUNKS` 30 s pieces spread evenly over the file,
and the pieces' probabilities averaged: a chapter's language does not change every minute, and MMS-LID was
trained on utterance-length audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.frames import SAMPLE_RATE
from obt_eval.mms.hub import MMS_LICENCE, load_or_explain, pick_device, revision_of
from obt_eval.mms.languages import accepted_codes, to_iso639_3
from obt_eval.provenance import provenance
from obt_eval.quality.annotate import add_corpus_summary, add_manifest_columns, audio_fingerprint
from obt_eval.quality.resume import ResumeLog
from obt_eval.workspace import Workspace

DEFAULT_LID_MODEL = "facebook/mms-lid-256"
CHUNK_SECONDS = 30.0
MAX_CHUNKS = 4
LID_COLUMNS = ["lid_top1", "lid_top1_prob", "lid_top3", "lid_flag"]


class LanguageIdentifier:
    """An audio classification checkpoint whose labels are language codes."""

    def __init__(self, source: str = DEFAULT_LID_MODEL, *, revision: str | None = None,
                 device: str | torch.device | None = None):
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

        self.source = str(source)
        self.device = pick_device(device)
        config = load_or_explain(AutoConfig.from_pretrained, self.source, "language identification model",
                                 revision=revision)
        self.extractor = load_or_explain(AutoFeatureExtractor.from_pretrained, self.source,
                                         "language identification feature extractor", revision=revision)
        self.model = load_or_explain(AutoModelForAudioClassification.from_pretrained, self.source,
                                     "language identification model", revision=revision)
        self.model.eval().to(self.device)
        self.labels = [str(config.id2label[i]) for i in range(int(config.num_labels))]
        self.revision = revision_of(self.source, config, revision)
        self.licence = MMS_LICENCE if "facebook/mms" in self.source else ""

    def describe(self) -> dict:
        return {"model": self.source, "revision": self.revision, "labels": len(self.labels), "licence": self.licence}

    def _pieces(self, wave: np.ndarray) -> list[np.ndarray]:
        step = int(CHUNK_SECONDS * SAMPLE_RATE)
        if len(wave) <= step:
            return [np.pad(wave, (0, max(0, 400 - len(wave))))]
        starts = np.linspace(0, len(wave) - step, min(MAX_CHUNKS, int(np.ceil(len(wave) / step)))).astype(int)
        return [wave[s:s + step] for s in starts]

    @torch.inference_mode()
    def probabilities(self, wave: np.ndarray) -> np.ndarray:
        """Posterior over `self.labels` for one 16 kHz mono waveform."""
        probs = []
        for piece in self._pieces(np.asarray(wave, dtype=np.float32)):
            inputs = self.extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            logits = self.model(inputs["input_values"].to(self.device)).logits[0].float()
            probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
        return np.mean(probs, axis=0)

    def top(self, wave: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        probs = self.probabilities(wave)
        order = np.argsort(-probs)[:k]
        return [(self.labels[i], round(float(probs[i]), 6)) for i in order]


@dataclass
class LidReport:
    corpus: str
    model: dict
    scored: int = 0
    reused: int = 0
    flagged: list[dict] = field(default_factory=list)
    no_expected_language: int = 0
    top1_counts: dict[str, int] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"corpus": self.corpus, **self.model, "scored": self.scored, "reused": self.reused,
                "flagged_count": len(self.flagged), "flagged": self.flagged,
                "no_expected_language": self.no_expected_language, "top1_counts": self.top1_counts,
                "problems": self.problems}


def expected_codes(corpus: Corpus, expected: str | None) -> dict[str, str | None]:
    """Utterance id → expected ISO 639-3 code: `expected` for all when given, else each `language` tag."""
    if expected:
        code = to_iso639_3(expected)
        if code is None:
            raise BadInputError(f"cannot read the language {expected!r}", "give an ISO 639-3 (por) or 639-1 (pt) code")
        return dict.fromkeys(corpus.ids, code)
    languages = corpus.manifest["language"] if "language" in corpus.manifest else pd.Series([None] * len(corpus.ids))
    return {uid: to_iso639_3(lang) for uid, lang in zip(corpus.ids, languages, strict=True)}


def identify_corpus(corpus: Corpus | str, model: LanguageIdentifier | str = DEFAULT_LID_MODEL, *,
                    expected: str | None = None, top_k: int = 3, workspace: Workspace | None = None,
                    device: str | None = None, progress: bool = True) -> LidReport:
    """Tag every utterance with its top languages; write `lid_*` manifest columns and a corpus.json summary.

    Resumable: utterances already scored by the same model revision (audio unchanged) are reused.
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus, workspace)
    lid = model if isinstance(model, LanguageIdentifier) else LanguageIdentifier(model, device=device)
    report = LidReport(corpus.name, lid.describe())
    log = ResumeLog(corpus.root / ".lid-progress.jsonl", {"model": lid.source, "revision": lid.revision,
                                                           "top_k": top_k})
    expect = expected_codes(corpus, expected)
    tops: dict[str, list] = {}
    for uid in tqdm(corpus.ids, desc=f"lid {corpus.name}", unit="utt", disable=not progress):
        try:
            path = corpus.audio_path(uid)
            fingerprint = audio_fingerprint(path)
            found = log.get(uid, fingerprint)
            if found is None:
                found = [list(pair) for pair in lid.top(corpus.wave(uid), top_k)]
                log.put(uid, found, fingerprint)
                report.scored += 1
            else:
                report.reused += 1
            tops[uid] = found
        except (ObtEvalError, OSError, RuntimeError) as exc:
            report.problems.append({"id": uid, "problem": str(exc).splitlines()[0]})
    flags: dict[str, object] = {}
    for uid, found in tops.items():
        top1 = found[0][0]
        report.top1_counts[top1] = report.top1_counts.get(top1, 0) + 1
        code = expect.get(uid)
        if code is None:
            flags[uid] = pd.NA
            report.no_expected_language += 1
            continue
        flags[uid] = to_iso639_3(top1) not in accepted_codes(code)
        if flags[uid]:
            report.flagged.append({"id": uid, "expected": code, "top1": top1, "top1_prob": found[0][1],
                                   "top3": found})
    report.top1_counts = dict(sorted(report.top1_counts.items(), key=lambda kv: -kv[1]))
    add_manifest_columns(corpus.root, {
        "lid_top1": {u: f[0][0] for u, f in tops.items()},
        "lid_top1_prob": {u: f[0][1] for u, f in tops.items()},
        "lid_top3": {u: json.dumps(f, ensure_ascii=False) for u, f in tops.items()},
        "lid_flag": flags,
    }, dtypes={"lid_flag": "boolean", "lid_top1_prob": "float64"})
    add_corpus_summary(corpus.root, "lid", {**report.summary(), "expected": expected, "provenance": provenance()})
    return report
