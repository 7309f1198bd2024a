"""A feature store for one (corpus, encoder, layer): sharded arrays, an index, a sidecar.

Layout of a store folder::

    sidecar.json                  encoder id, revision/hash, layer, dim, frame rate, dtype, counts
    index.parquet                 id -> shard, offset, length (frames)   (written when complete)
    shards/shard-00000.npy        (frames, dim) float16, utterances concatenated
    shards/shard-00000.json       the shard's checksum and {id: [offset, length]} - written last: marks
                                  the shard finished

Each shard is written atomically and its index piece after it, so a killed extraction resumes by
skipping every finished shard whose bytes still match the checksum in its ``.json`` (hashed by the
writer thread as the bytes are written: no second read); a damaged or truncated shard is extracted
again. The store counts as complete only once ``sidecar.json`` says ``"complete": true``; it lists
the checksum of every shard and of the index. Arrays are memory-mapped on read, and each shard is
verified against its checksum the first time it is read, so a damaged file is named, never used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from obt_eval.atomic import atomic_path, read_json, write_json, write_parquet
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.integrity import CorruptArtifactError, HashingWriter, file_checksum, read_sidecar, verify_file
from obt_eval.provenance import provenance

FORMAT = "obt-eval-features/1"
SHARD_FORMAT = "obt-eval-shard/2"  # {format, checksum, utterances}; /1 was the bare {id: [offset, length]}


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def shard_file(i: int) -> str:
    """A shard's array, relative to the store folder (the key of its checksum in the sidecar)."""
    return f"shards/{shard_name(i)}.npy"


NOT_EXTRACTED = "not extracted yet"


def read_shard_index(path: Path) -> tuple[dict[str, list[int]], str | None]:
    """A shard's ``.json``: ({id: [offset, length]}, checksum); the checksum is None in old stores."""
    piece = read_json(path)
    if isinstance(piece.get("format"), str):  # utterance entries are lists, never strings
        return piece["utterances"], piece.get("checksum")
    return piece, None


def _extract_hint(meta: dict) -> str:
    """The command that repairs a store: extraction re-checks every shard and redoes a damaged one."""
    layer = meta.get("layer")
    command = f"obt-eval extract --corpus {meta.get('corpus') or 'CORPUS'} --encoder {meta.get('encoder') or 'ENCODER'}"
    if layer is not None:
        command += f" --layer {layer}"
    return f"re-run `{command}`: it re-extracts damaged shards (or add --overwrite to extract everything again)"


def _shard_problem(store: Path, i: int) -> str | None:
    """Why shard `i` of the store at `store` cannot be used as it is (None: finished and intact)."""
    index_path = store / "shards" / f"{shard_name(i)}.json"
    array_path = store / shard_file(i)
    if not index_path.exists():
        return NOT_EXTRACTED
    try:
        _, expected = read_shard_index(index_path)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        return f"{index_path} is unreadable ({type(exc).__name__})"
    try:
        verify_file(array_path, expected)
        if expected is None:  # an old store without checksums: at least the array must load whole
            np.load(array_path, mmap_mode="r")
    except CorruptArtifactError as exc:
        return str(exc).splitlines()[0]
    except (OSError, ValueError) as exc:
        return f"{array_path} is unreadable ({exc})"
    return None


class FeatureStoreWriter:
    """Writes shards of a store; resumable (finished shards are detected and skipped)."""

    def __init__(self, path: str | os.PathLike, meta: dict):
        self.path = Path(path)
        self.meta = dict(meta)
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        sidecar = self.path / "sidecar.json"
        if sidecar.exists():
            old = read_json(sidecar)
            # "plan" is the shard plan: finished shards of another corpus version must not be reused
            for key in ("encoder_id", "layer", "dim", "revision", "plan"):
                if key in meta and key in old and old[key] != meta[key]:
                    raise BadInputError(
                        f"{self.path} already holds features with {key}={old[key]!r}, not {meta[key]!r}",
                        "re-run with --overwrite to extract again, or choose another workspace",
                    )
        write_json(sidecar, {**self.meta, "format": FORMAT, "complete": False})

    def shard_done(self, i: int) -> bool:
        """Shard `i` is finished and its bytes match the checksum recorded when it was written."""
        return self.shard_problem(i) is None

    def shard_problem(self, i: int) -> str | None:
        """None when shard `i` is finished and intact; else why it must be extracted (again)."""
        return _shard_problem(self.path, i)

    def write_shard(self, i: int, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Concatenate utterances into shard `i` (fp16) and record where each one lies."""
        index: dict[str, list[int]] = {}
        arrays = []
        offset = 0
        dim = self.meta.get("dim")
        for uid, array in items:
            array = np.asarray(array)
            if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
                raise ValueError(f"features of {uid} have shape {array.shape}, expected (frames, {dim})")
            index[uid] = [offset, int(array.shape[0])]
            offset += int(array.shape[0])
            arrays.append(array.astype(np.float16))
        data = np.concatenate(arrays) if arrays else np.zeros((0, dim or 0), np.float16)
        with atomic_path(self.path / shard_file(i), suffix=".npy") as tmp, open(tmp, "wb") as handle:
            writer = HashingWriter(handle)  # the checksum of the bytes as they are written: no second read
            np.save(writer, data)
        write_json(self.path / "shards" / f"{shard_name(i)}.json",
                   {"format": SHARD_FORMAT, "checksum": writer.checksum, "utterances": index})

    def finalize(self, num_shards: int, extra: dict | None = None) -> FeatureStore:
        """Merge the shard indexes into index.parquet and mark the store complete."""
        rows = []
        recorded: dict[str, str | None] = {}
        for i in range(num_shards):
            piece, recorded[shard_file(i)] = read_shard_index(self.path / "shards" / f"{shard_name(i)}.json")
            rows.extend((uid, i, off, length) for uid, (off, length) in piece.items())
        index = pd.DataFrame(rows, columns=["id", "shard", "offset", "length"])
        write_parquet(self.path / "index.parquet", index)
        recorded["index.parquet"] = file_checksum(self.path / "index.parquet")
        meta = {
            **self.meta,
            **(extra or {}),
            "format": FORMAT,
            "dtype": "float16",
            "num_shards": num_shards,
            "num_utterances": len(index),
            "num_frames": int(index["length"].sum()) if len(index) else 0,
            "complete": True,
            "provenance": provenance(),
            "checksums": {name: value for name, value in recorded.items() if value is not None},
        }
        write_json(self.path / "sidecar.json", meta)
        return FeatureStore.open(self.path)


class FeatureStore:
    """Read access to a complete store. ``get`` returns float32 ``(frames, dim)`` arrays."""

    def __init__(self, path: Path, meta: dict, index: pd.DataFrame):
        self.path = path
        self.meta = meta
        self.index = index
        self._rows = {uid: (int(s), int(o), int(n)) for uid, s, o, n in index.itertuples(index=False)}
        self._shards: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        path = Path(path)
        sidecar = path / "sidecar.json"
        if not sidecar.exists():
            raise NotFoundError(
                f"no feature store at {path}",
                "run `obt-eval extract --corpus NAME --encoder ENCODER` first and pass the folder it prints",
            )
        meta = read_sidecar(sidecar, "re-run the `obt-eval extract` command that made it, with --overwrite")
        if not meta.get("complete"):
            raise BadInputError(
                f"the feature store at {path} is incomplete (extraction was interrupted)",
                "re-run the same `obt-eval extract` command: it resumes where it stopped",
            )
        checksums = meta.get("checksums") or {}
        verify_file(path / "index.parquet", checksums.get("index.parquet"), _extract_hint(meta))
        for i in range(int(meta.get("num_shards", 0))):
            name = shard_file(i)
            if not (path / name).exists():
                raise CorruptArtifactError(path / name, "the file is missing", _extract_hint(meta))
        return cls(path, meta, pd.read_parquet(path / "index.parquet"))

    def verify(self) -> None:
        """Hash every shard now (instead of on first read); raise `CorruptArtifactError` on the first damaged one."""
        for i in range(int(self.meta.get("num_shards", 0))):
            self._shard(i)

    # -- description -------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return self.index["id"].tolist()

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def layer(self) -> int | None:
        return self.meta.get("layer")

    @property
    def encoder(self) -> str:
        return self.meta.get("encoder", "")

    @property
    def corpus(self) -> str:
        return self.meta.get("corpus", "")

    @property
    def frame_rate(self) -> float:
        return float(self.meta.get("frame_rate", 50.0))

    @property
    def num_frames(self) -> int:
        return int(self.meta.get("num_frames", 0))

    def lengths(self) -> dict[str, int]:
        return {uid: n for uid, (_, _, n) in self._rows.items()}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, uid: object) -> bool:
        return uid in self._rows

    # -- data --------------------------------------------------------------------------------
    def _shard(self, i: int) -> np.ndarray:
        if i not in self._shards:
            path = self.path / shard_file(i)
            hint = _extract_hint(self.meta)
            expected = (self.meta.get("checksums") or {}).get(shard_file(i))
            verify_file(path, expected, hint)  # once per process while the file is unchanged
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:  # an old store without checksums: a truncated file fails here
                raise CorruptArtifactError(path, f"it cannot be read ({exc})", hint) from exc
            frames = int(self.index.loc[self.index["shard"] == i, "length"].sum())
            if array.ndim != 2 or array.shape[0] != frames:
                raise CorruptArtifactError(path, f"it holds {array.shape} values, the index expects {frames} frames",
                                           hint)
            self._shards[i] = array
        return self._shards[i]

    def get(self, uid: str, dtype=np.float32) -> np.ndarray:
        try:
            shard, offset, length = self._rows[uid]
        except KeyError:
            raise NotFoundError(f"utterance {uid!r} has no features in {self.path}") from None
        return np.asarray(self._shard(shard)[offset : offset + length], dtype=dtype)

    def iter_utterances(self, dtype=np.float32) -> Iterator[tuple[str, np.ndarray]]:
        """All utterances in storage order (sequential reads of each shard)."""
        for uid, shard, offset, length in self.index.sort_values(["shard", "offset"]).itertuples(index=False):
            yield uid, np.asarray(self._shard(int(shard))[offset : offset + length], dtype=dtype)

    def sample_utterances(self, fraction: float, seed: int = 0) -> list[str]:
        """A random subset of utterance ids (fairseq samples k-means data by utterance)."""
        if not 0 < fraction <= 1:
            raise BadInputError(f"sample fraction must be in (0, 1], got {fraction}")
        ids = self.ids
        n = max(1, int(np.ceil(len(ids) * fraction)))
        rng = np.random.default_rng(seed)
        return [ids[i] for i in sorted(rng.choice(len(ids), size=n, replace=False))]

    def stack(self, ids: Iterable[str] | None = None, dtype=np.float32) -> np.ndarray:
        """Concatenate the frames of `ids` (all utterances by default) into one array."""
        ids = self.ids if ids is None else list(ids)
        if not ids:
            return np.zeros((0, self.dim), dtype)
        return np.concatenate([self.get(uid, dtype) for uid in ids])
