"""DNSMOS on the source recordings of a corpus, so noisy field recordings are seen before training.

Adds `dnsmos_sig`, `dnsmos_bak`, `dnsmos_ovrl` (P.835: speech signal, background noise, overall; 1..5)
to the manifest and a `quality` summary (means, per speaker, the noisiest recordings) to corpus.json.
Hour-long recordings are scored with a longer hop between the 9 s windows (`hop_seconds`) to stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import ObtEvalError
from obt_eval.provenance import provenance
from obt_eval.quality.annotate import add_corpus_summary, add_manifest_columns, audio_fingerprint
from obt_eval.quality.dnsmos import Dnsmos
from obt_eval.quality.resume import ResumeLog
from obt_eval.workspace import Workspace

QUALITY_COLUMNS = ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]


@dataclass
class QualityReport:
    corpus: str
    judge: dict
    scored: int = 0
    reused: int = 0
    means: dict = field(default_factory=dict)
    by_speaker: dict = field(default_factory=dict)
    noisiest: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"corpus": self.corpus, "judge": self.judge, "scored": self.scored, "reused": self.reused,
                "means": self.means, "by_speaker": self.by_speaker, "noisiest": self.noisiest,
                "problems": self.problems}


def score_corpus_quality(corpus: Corpus | str, *, workspace: Workspace | None = None, hop_seconds: float = 1.0,
                         worst: int = 10, judge: Dnsmos | None = None, progress: bool = True) -> QualityReport:
    """DNSMOS P.835 of every utterance's canonical audio; resumable (unchanged audio is not re-scored)."""
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus, workspace)
    judge = judge or Dnsmos(hop_seconds=hop_seconds)
    report = QualityReport(corpus.name, judge.describe())
    log = ResumeLog(corpus.root / ".quality-progress.jsonl", {"judge": judge.name, **report.judge})
    scores: dict[str, dict] = {}
    for uid in tqdm(corpus.ids, desc=f"dnsmos {corpus.name}", unit="utt", disable=not progress):
        try:
            fingerprint = audio_fingerprint(corpus.audio_path(uid))
            found = log.get(uid, fingerprint)
            if found is None:
                found = {k: round(v, 4) for k, v in judge.score(corpus.wave(uid)).items()}
                log.put(uid, found, fingerprint)
                report.scored += 1
            else:
                report.reused += 1
            scores[uid] = found
        except (ObtEvalError, OSError, RuntimeError, ValueError) as exc:
            report.problems.append({"id": uid, "problem": str(exc).splitlines()[0]})
    add_manifest_columns(corpus.root, {c: {u: s[c] for u, s in scores.items()} for c in QUALITY_COLUMNS},
                         dtypes=dict.fromkeys(QUALITY_COLUMNS, "float64"))
    if scores:
        report.means = {c: round(float(np.mean([s[c] for s in scores.values()])), 4) for c in QUALITY_COLUMNS}
        speakers = corpus.speakers()
        for spk in sorted({speakers.get(u, "unknown") for u in scores}):
            mine = [s for u, s in scores.items() if speakers.get(u, "unknown") == spk]
            report.by_speaker[spk] = {"n": len(mine), **{c: round(float(np.mean([s[c] for s in mine])), 4)
                                                           for c in QUALITY_COLUMNS}}
        order = sorted(scores, key=lambda u: scores[u]["dnsmos_ovrl"])[:worst]
        report.noisiest = [{"id": u, **{c: scores[u][c] for c in QUALITY_COLUMNS}} for u in order]
    add_corpus_summary(corpus.root, "quality", {**report.summary(), "provenance": provenance()})
    return report
