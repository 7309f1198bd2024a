"""The corpus manifest: one row per utterance, arrays (audio) stored apart, as lhotse does.

``corpora/<name>/manifest.parquet`` columns: ``id, audio_path, source_path, num_samples, duration,
num_frames, orig_sample_rate, orig_channels, speaker, language, split, transcript``. ``audio_path`` is
canonical 16 kHz mono audio. Optional ``alignments.parquet`` (``id, onset, offset, phone``; seconds) and
``corpus.item`` (ZeroSpeech item file) hold phone alignments for ABX and PNMI.
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
        manifest = pd.read_parquet(candidate / "manifest.parquet")
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
