"""The corpus manifest: one row per utterance, arrays (audio) stored apart, as lhotse does.

``corpora/<name>/manifest.parquet`` columns: ``id, audio_path, source_path, num_samples, duration,
num_frames, orig_sample_rate, orig_channels, speaker, language, split, transcript, source_id,
segment_start, segment_end``. ``audio_path`` is canonical 16 kHz mono audio. The last three are the
segment map: an utterance cut from a long recording names that recording (``source_id``, a row of
``sources.parquet``) and where in it (seconds) it starts and ends; a file kept whole is its own
source, from 0 to its duration. ``sources.parquet`` has one row per ingested file, with the
metadata (a chapter's transcript lives only there: it cannot be split by time) and what the file
became. Optional ``alignments.parquet`` (``id, onset, offset, phone``; seconds) and ``corpus.item``
(ZeroSpeech item file) hold phone alignments for ABX and PNMI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.atomic import read_json
from obt_eval.audio import load_16k
from obt_eval.errors import NotFoundError
from obt_eval.workspace import Workspace, is_safe_name

MANIFEST_COLUMNS = [
    "id", "audio_path", "source_path", "num_samples", "duration", "num_frames",
    "orig_sample_rate", "orig_channels", "speaker", "language", "split", "transcript",
    "source_id", "segment_start", "segment_end",
]
SOURCE_COLUMNS = [
    "source_id", "source_path", "audio_path", "num_samples", "duration", "orig_sample_rate", "orig_channels",
    "speaker", "language", "split", "transcript", "segmented", "segments", "speech_seconds", "vad",
]
ALIGNMENT_COLUMNS = ["id", "onset", "offset", "phone"]


@dataclass
class Corpus:
    """A read-only view of an ingested corpus."""

    name: str
    root: Path
    manifest: pd.DataFrame
    info: dict

    @classmethod
    def open(cls, name_or_path: str | os.PathLike, workspace: Workspace | None = None) -> Corpus:
        """Open by name (in the workspace) or by the corpus folder's path."""
        candidate = Path(name_or_path)
        if not (candidate / "manifest.parquet").exists() and is_safe_name(str(name_or_path)):
            candidate = (workspace or Workspace.at()).corpus_dir(str(name_or_path))
        if not (candidate / "manifest.parquet").exists():
            raise NotFoundError(
                f"no corpus {str(name_or_path)!r} (looked for {candidate / 'manifest.parquet'})",
                "run `obt-eval ingest AUDIO_DIR --name NAME` first, or check --workspace / $OBT_EVAL_HOME",
            )
        manifest = _with_segment_map(pd.read_parquet(candidate / "manifest.parquet"))
        info = read_json(candidate / "corpus.json") if (candidate / "corpus.json").exists() else {}
        return cls(name=info.get("name", candidate.name), root=candidate, manifest=manifest, info=info)

    @property
    def ids(self) -> list[str]:
        return self.manifest["id"].tolist()

    def row(self, uid: str) -> pd.Series:
        rows = self.manifest[self.manifest["id"] == uid]
        if rows.empty:
            raise NotFoundError(f"utterance {uid!r} is not in corpus {self.name!r}")
        return rows.iloc[0]

    def audio_path(self, uid: str) -> Path:
        return Path(self.row(uid)["audio_path"])

    def wave(self, uid: str) -> np.ndarray:
        """The utterance's canonical 16 kHz mono waveform (float32)."""
        return load_16k(self.audio_path(uid))

    def speakers(self) -> dict[str, str]:
        return dict(zip(self.manifest["id"], self.manifest["speaker"].fillna("unknown"), strict=True))

    @property
    def alignments_path(self) -> Path:
        return self.root / "alignments.parquet"

    @property
    def item_path(self) -> Path | None:
        path = self.root / "corpus.item"
        return path if path.exists() else None

    def alignments(self) -> pd.DataFrame | None:
        """Phone intervals (id, onset, offset, phone), or None when the corpus has none."""
        if not self.alignments_path.exists():
            return None
        return pd.read_parquet(self.alignments_path)

    @property
    def total_seconds(self) -> float:
        return float(self.manifest["duration"].sum())

    def sources(self) -> pd.DataFrame:
        """One row per ingested file (``SOURCE_COLUMNS``); built from the manifest for older corpora."""
        path = self.root / "sources.parquet"
        if path.exists():
            return pd.read_parquet(path)
        m = self.manifest
        return pd.DataFrame({
            "source_id": m["source_id"], "source_path": m["source_path"], "audio_path": m["audio_path"],
            "num_samples": m["num_samples"], "duration": m["duration"], "orig_sample_rate": m["orig_sample_rate"],
            "orig_channels": m["orig_channels"], "speaker": m["speaker"], "language": m["language"],
            "split": m["split"], "transcript": m["transcript"], "segmented": False, "segments": 0,
            "speech_seconds": float("nan"), "vad": "",
        })[SOURCE_COLUMNS]

    def trace(self, uid: str) -> dict:
        """Where an utterance comes from: source id and file, and its start and end there (seconds)."""
        row = self.row(uid)
        return {"id": uid, "source_id": row["source_id"], "source_path": row["source_path"],
                "start": float(row["segment_start"]), "end": float(row["segment_end"])}


def _with_segment_map(manifest: pd.DataFrame) -> pd.DataFrame:
    """Corpora written before segmenting existed: every utterance is its own whole source."""
    manifest = manifest.copy()
    if "source_id" not in manifest:
        manifest["source_id"] = manifest["id"]
    if "segment_start" not in manifest:
        manifest["segment_start"] = 0.0
    if "segment_end" not in manifest:
        manifest["segment_end"] = manifest["duration"].astype(float)
    manifest["source_id"] = manifest["source_id"].where(manifest["source_id"].notna(), manifest["id"])
    manifest["segment_start"] = manifest["segment_start"].astype(float).fillna(0.0)
    manifest["segment_end"] = manifest["segment_end"].astype(float).fillna(manifest["duration"].astype(float))
    return manifest
