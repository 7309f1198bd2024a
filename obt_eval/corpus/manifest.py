"""The corpus manifest: one row per utterance, arrays (audio) stored apart, as lhotse does.

``corpora/<name>/manifest.parquet`` columns: ``id, audio_path, source_path, num_samples, duration,
num_frames, orig_sample_rate, orig_channels, speaker, language, split, transcript, source_id,
segment_start, segment_end, audio_size, audio_checksum``. ``audio_path`` is canonical 16 kHz mono
audio. ``source_id, segment_start, segment_end`` are the segment map: an utterance cut from a long
recording names that recording (``source_id``, a row of ``sources.parquet``) and where in it (seconds)
it starts and ends; a file kept whole is its own source, from 0 to its duration. ``sources.parquet``
has one row per ingested file, with the metadata (a chapter's transcript lives only there: it cannot
be split by time) and what the file became. Optional ``alignments.parquet`` (``id, onset, offset,
phone``; seconds) and ``corpus.item`` (ZeroSpeech item file) hold phone alignments for ABX and PNMI.

``corpus.json`` records the checksum of every table, verified when the corpus is opened (the
alignment tables when they are read); ``audio_size`` and ``audio_checksum`` are those of audio the
corpus owns (canonical copies, segment WAVs; empty for the user's 16 kHz files used in place), verified
by `Corpus.wave` from the bytes it decodes (obt_eval.corpus.files). A damaged file is named, with the
ingest command that re-creates it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.corpus.files import INFO, ingest_hint, read_corpus_audio, verify_table
from obt_eval.errors import NotFoundError
from obt_eval.integrity import CorruptArtifactError, read_sidecar
from obt_eval.workspace import Workspace, is_safe_name

MANIFEST_COLUMNS = [
    "id", "audio_path", "source_path", "num_samples", "duration", "num_frames",
    "orig_sample_rate", "orig_channels", "speaker", "language", "split", "transcript",
    "source_id", "segment_start", "segment_end", "audio_size", "audio_checksum",
]
SOURCE_COLUMNS = [
    "source_id", "source_path", "audio_path", "num_samples", "duration", "orig_sample_rate", "orig_channels",
    "speaker", "language", "split", "transcript", "segmented", "segments", "speech_seconds", "vad",
    "audio_size", "audio_checksum",
]
ALIGNMENT_COLUMNS = ["id", "onset", "offset", "phone"]


@dataclass
class Corpus:
    """A read-only view of an ingested corpus."""

    name: str
    root: Path
    manifest: pd.DataFrame
    info: dict
    _audio: dict | None = field(default=None, repr=False, compare=False)

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
        info = _verified_info(candidate)
        manifest = _with_segment_map(pd.read_parquet(candidate / "manifest.parquet"))
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
        """The utterance's canonical 16 kHz mono waveform (float32).

        Audio the corpus owns is verified against the size and checksum ingest recorded, from the bytes
        decoded (no second read); a damaged file raises `CorruptArtifactError` naming it.
        """
        if self._audio is None:  # built once: a row lookup per call is O(corpus) in a loop over it
            m = self.manifest
            self._audio = {uid: (path, size, checksum) for uid, path, size, checksum in zip(
                m["id"], m["audio_path"], m["audio_size"], m["audio_checksum"], strict=True)}
        try:
            path, size, checksum = self._audio[uid]
        except KeyError:
            raise NotFoundError(f"utterance {uid!r} is not in corpus {self.name!r}") from None
        return read_corpus_audio(path, size, checksum, ingest_hint(self.info, self.root))

    def speakers(self) -> dict[str, str]:
        return dict(zip(self.manifest["id"], self.manifest["speaker"].fillna("unknown"), strict=True))

    @property
    def alignments_path(self) -> Path:
        return self.root / "alignments.parquet"

    @property
    def item_path(self) -> Path | None:
        """The ZeroSpeech item file (verified against its recorded checksum), or None without alignments."""
        path = self.root / "corpus.item"
        if not path.exists():
            return None
        verify_table(self.root, "corpus.item", self.info)
        return path

    def alignments(self) -> pd.DataFrame | None:
        """Phone intervals (id, onset, offset, phone), or None when the corpus has none."""
        if not self.alignments_path.exists():
            return None
        verify_table(self.root, "alignments.parquet", self.info)
        return pd.read_parquet(self.alignments_path)

    @property
    def total_seconds(self) -> float:
        return float(self.manifest["duration"].sum())

    def sources(self) -> pd.DataFrame:
        """One row per ingested file (``SOURCE_COLUMNS``); built from the manifest for older corpora."""
        path = self.root / "sources.parquet"
        if path.exists():  # verified when the corpus was opened
            return pd.read_parquet(path)
        m = self.manifest
        return pd.DataFrame({
            "source_id": m["source_id"], "source_path": m["source_path"], "audio_path": m["audio_path"],
            "num_samples": m["num_samples"], "duration": m["duration"], "orig_sample_rate": m["orig_sample_rate"],
            "orig_channels": m["orig_channels"], "speaker": m["speaker"], "language": m["language"],
            "split": m["split"], "transcript": m["transcript"], "segmented": False, "segments": 0,
            "speech_seconds": float("nan"), "vad": "", "audio_size": m["audio_size"],
            "audio_checksum": m["audio_checksum"],
        })[SOURCE_COLUMNS]

    def trace(self, uid: str) -> dict:
        """Where an utterance comes from: source id and file, and its start and end there (seconds)."""
        row = self.row(uid)
        return {"id": uid, "source_id": row["source_id"], "source_path": row["source_path"],
                "start": float(row["segment_start"]), "end": float(row["segment_end"])}


def _verified_info(root: Path) -> dict:
    """corpus.json, after checking the manifest and sources tables against the checksums it records.

    corpus.json is the corpus's sidecar: a torn one is named (re-ingest rewrites it), never half-used.
    A table rewritten by another process while this one read corpus.json is checked once more against
    the newer record before it is called damaged.
    """
    def read() -> dict:
        return read_sidecar(root / INFO, ingest_hint({}, root)) if (root / INFO).exists() else {}

    info = read()
    try:
        for table in ("manifest.parquet", "sources.parquet"):
            verify_table(root, table, info)
    except CorruptArtifactError:
        newer = read()
        if newer == info:
            raise
        info = newer
        for table in ("manifest.parquet", "sources.parquet"):
            verify_table(root, table, info)
    return info


def _with_segment_map(manifest: pd.DataFrame) -> pd.DataFrame:
    """Corpora written before segmenting existed: every utterance is its own whole source.

    Corpora written before audio checksums existed get empty ``audio_size``/``audio_checksum`` (not verified).
    """
    manifest = manifest.copy()
    for column in ("audio_size", "audio_checksum"):
        if column not in manifest:
            manifest[column] = None
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
