"""A units store: a k-means codebook and one unit sequence per utterance, on the 50 Hz frame grid.

Layout of a units folder::

    sidecar.json      k, dim, seed, inertia, the feature store it came from (path, corpus, encoder, layer)
                      and its frame grid (frame_rate, frame_offset: centre of frame 0 in seconds)
    codebook.npy      (k, dim) float32 centroids
    units.parquet     id, units (list of int), one unit per 20 ms frame
    units.txt         the same sequences in fairseq's format: one line per utterance, space-separated

The run-length view (deduplicated units + durations in frames) is derived on demand by `run_length`.
The sidecar records the checksum of every file; opening the store verifies them, so a damaged
codebook or units table is named, never used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.atomic import save_npy, write_json, write_parquet, write_text
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.integrity import checksums, read_sidecar, verify_files
from obt_eval.provenance import provenance

FORMAT = "obt-eval-units/1"
FILES = ("codebook.npy", "units.parquet", "units.txt", "ids.json")
# what `open` hashes: the files the library reads (units.txt is for fairseq tools, as large as the table)
VERIFIED_ON_OPEN = ("codebook.npy", "units.parquet", "ids.json")


def _units_hint(path: Path) -> str:
    return (f"re-run the `obt-eval units` command that made {path} with --force "
            "(the same settings give the same codebook), or delete the folder")


def run_length(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate consecutive repeats: ``[5,5,5,2,2,7] -> ([5,2,7], [3,2,1])``."""
    units = np.asarray(units)
    if units.size == 0:
        return units.astype(np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    durations = np.diff(np.r_[starts, units.size])
    return units[starts].astype(np.int64), durations.astype(np.int64)


class UnitsStore:
    """Read access to a units folder."""

    def __init__(self, path: Path, meta: dict, table: pd.DataFrame):
        self.path = path
        self.meta = meta
        self._units = {uid: np.asarray(u, dtype=np.int64) for uid, u in zip(table["id"], table["units"], strict=True)}

    @staticmethod
    def write(
        path: str | os.PathLike,
        sequences: Mapping[str, np.ndarray],
        codebook: np.ndarray,
        meta: dict,
    ) -> UnitsStore:
        """Write a complete units folder atomically, file by file, the sidecar last."""
        path = Path(path)
        codebook = np.asarray(codebook, dtype=np.float32)
        k = codebook.shape[0]
        for uid, seq in sequences.items():
            seq = np.asarray(seq)
            if seq.size and (seq.min() < 0 or seq.max() >= k):
                raise BadInputError(f"units of {uid!r} fall outside [0, {k})")
        ids = list(sequences)
        table = pd.DataFrame({"id": ids, "units": [np.asarray(sequences[u], dtype=np.int64).tolist() for u in ids]})
        save_npy(path / "codebook.npy", codebook)
        write_parquet(path / "units.parquet", table)
        write_text(path / "units.txt", "".join(" ".join(map(str, row)) + "\n" for row in table["units"]))
        write_json(path / "ids.json", ids)
        full_meta = {**meta, "format": FORMAT, "k": int(k), "dim": int(codebook.shape[1]),
                     "num_utterances": len(ids), "provenance": provenance(), "checksums": checksums(path, FILES)}
        write_json(path / "sidecar.json", full_meta)
        return UnitsStore.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> UnitsStore:
        path = Path(path)
        if not (path / "sidecar.json").exists() or not (path / "units.parquet").exists():
            raise NotFoundError(
                f"no units at {path}",
                "run `obt-eval units --features STORE --k K` first and pass the folder it prints",
            )
        meta = read_sidecar(path / "sidecar.json", _units_hint(path))
        recorded = meta.get("checksums") or {}
        verify_files(path, {name: recorded[name] for name in VERIFIED_ON_OPEN if name in recorded}, _units_hint(path))
        return cls(path, meta, pd.read_parquet(path / "units.parquet"))

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def ids(self) -> list[str]:
        return list(self._units)

    @property
    def corpus(self) -> str:
        return self.meta.get("corpus", "")

    @property
    def codebook(self) -> np.ndarray:
        return np.load(self.path / "codebook.npy")

    def __contains__(self, uid: object) -> bool:
        return uid in self._units

    def __len__(self) -> int:
        return len(self._units)

    def get(self, uid: str) -> np.ndarray:
        try:
            return self._units[uid]
        except KeyError:
            raise NotFoundError(f"utterance {uid!r} has no units in {self.path}") from None

    def deduplicated(self, uid: str) -> tuple[np.ndarray, np.ndarray]:
        return run_length(self.get(uid))
