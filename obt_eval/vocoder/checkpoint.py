"""Vocoder checkpoints: full training state for exact resume, and a small generator-only export.

A vocoder folder holds::

    config.json                 model + training configuration and what the vocoder was trained on
    checkpoints/ckpt-NNNNNNNN.pt  generator, discriminators, optimisers, schedulers, step, RNG states
    latest.json                 the step and file of the newest complete checkpoint (written after it),
                                and the checksum of every kept checkpoint and of generator.pt
    generator.pt                the generator alone, with config and metadata: what `synthesize` loads
    train_log.csv, validation.csv, curves.png, samples/   the training record

Every file is written to a temporary name and renamed, so a kill never leaves a torn checkpoint
that looks complete. Loading verifies a file against its recorded checksum (and that its weights
are finite), so an overwritten or truncated checkpoint is named, never resumed from or synthesized
with; resuming falls back to the previous kept checkpoint when the newest is damaged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obt_eval.atomic import atomic_path, write_json
from obt_eval.errors import BadInputError, NotFoundError
from obt_eval.integrity import CorruptArtifactError, file_checksum, read_sidecar, verify_file

FORMAT = "obt-eval-vocoder/1"
LATEST = "latest.json"
GENERATOR = "generator.pt"
TRAIN_HINT = ("re-run the same `obt-eval train-vocoder` command: it resumes from the last intact checkpoint and "
              "rewrites generator.pt (or pass --overwrite to train from the start)")
log = logging.getLogger(__name__)


def codebook_hash(codebook: np.ndarray) -> str:
    """Identity of a codebook: units from a different k-means mean different sounds for the same ids."""
    arr = np.ascontiguousarray(np.asarray(codebook, dtype=np.float32))
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def save_torch(path: Path, obj: Any) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def checkpoint_path(vocoder_dir: Path, step: int) -> Path:
    return vocoder_dir / "checkpoints" / f"ckpt-{step:08d}.pt"


def _latest(vocoder_dir: Path) -> dict:
    return read_sidecar(vocoder_dir / LATEST, TRAIN_HINT) if (vocoder_dir / LATEST).exists() else {}


def _record(vocoder_dir: Path, latest: dict, changed: dict[str, str]) -> None:
    """Write latest.json with the checksums of `changed` files merged in (files gone since are dropped)."""
    recorded = {**(latest.get("checksums") or {}), **changed}
    latest = {**latest, "checksums": {name: value for name, value in sorted(recorded.items())
                                      if (vocoder_dir / name).exists()}}
    write_json(vocoder_dir / LATEST, latest)


def write_checkpoint(vocoder_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint, then `latest.json` (with its checksum), then prune old ones (never the newest `keep`)."""
    path = checkpoint_path(vocoder_dir, step)
    save_torch(path, {"format": FORMAT, "step": step, **state})
    rel = path.relative_to(vocoder_dir).as_posix()
    olds = sorted((vocoder_dir / "checkpoints").glob("ckpt-*.pt"))
    pruned = [old for old in olds[: max(0, len(olds) - max(1, keep))] if old != path]
    latest = {**_latest(vocoder_dir), "step": step, "path": rel}
    checksums = {name: value for name, value in (latest.get("checksums") or {}).items()
                 if vocoder_dir / name not in pruned}
    _record(vocoder_dir, {**latest, "checksums": checksums}, {rel: file_checksum(path)})
    for old in pruned:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(vocoder_dir: Path) -> Path | None:
    latest = _latest(vocoder_dir)
    if "path" not in latest:
        return None
    path = vocoder_dir / latest["path"]
    return path if path.exists() else None


def recorded_checksum(path: Path) -> str | None:
    """The checksum recorded for a vocoder file (generator.pt or checkpoints/ckpt-*.pt) in its folder's latest.json."""
    path = Path(path).resolve()
    for folder in (path.parent, path.parent.parent):
        if (folder / LATEST).exists():
            return (_latest(folder).get("checksums") or {}).get(path.relative_to(folder).as_posix())
    return None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint or generator.pt, verified: recorded checksum, readable, obt-eval's format, finite weights."""
    expected = recorded_checksum(path)
    verify_file(path, expected, TRAIN_HINT)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        if expected is not None:  # the bytes are the ones written: a bug or another version, not damage
            raise BadInputError(f"cannot read vocoder checkpoint {path}: {exc}",
                                "pass a checkpoint written by `obt-eval train-vocoder`") from exc
        raise CorruptArtifactError(path, f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})",
                                   TRAIN_HINT) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadInputError(f"{path} is not an obt-eval vocoder checkpoint",
                            "pass a vocoder folder or a .pt written by `obt-eval train-vocoder`")
    bad = _non_finite(state.get("generator") or {})
    if bad:
        # a file without a recorded checksum that was overwritten, or a run that diverged before this check existed
        raise CorruptArtifactError(path, f"{bad} generator weights are NaN or infinite", TRAIN_HINT)
    return state


def _non_finite(weights: dict) -> int:
    return sum(int((~torch.isfinite(v)).sum()) for v in weights.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def load_resume_state(vocoder_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest intact checkpoint's state (None: nothing to resume).

    A damaged newest checkpoint is skipped with a warning naming it, and training resumes from the
    previous kept one; when none is intact, `CorruptArtifactError` names the newest.
    """
    newest = latest_checkpoint(vocoder_dir)
    if newest is None:
        return None
    recorded = _latest(vocoder_dir).get("checksums") or {}
    older = sorted((vocoder_dir / name for name in recorded if name.startswith("checkpoints/")), reverse=True)
    candidates = [newest, *[p for p in older if p.name < newest.name and p.exists()]]
    first_error: CorruptArtifactError | None = None
    for path in candidates:
        try:
            return load_checkpoint(path, map_location)
        except CorruptArtifactError as exc:
            first_error = first_error or exc
            following = next((c for c in candidates if c.name < path.name), None)
            log.warning("%s; %s", str(exc).splitlines()[0],
                        f"resuming from the previous checkpoint {following.name}" if following else
                        "no intact checkpoint is left")
    assert first_error is not None
    raise CorruptArtifactError(newest, "it and every older kept checkpoint are damaged",
                               "pass --overwrite to train from the start") from first_error


def generator_intact(vocoder_dir: Path) -> bool:
    """generator.pt exists and matches its recorded checksum."""
    try:
        verify_file(vocoder_dir / GENERATOR, recorded_checksum(vocoder_dir / GENERATOR))
    except CorruptArtifactError:
        return False
    return True


def resolve_generator(path: str | os.PathLike) -> Path:
    """A vocoder folder -> its generator.pt (or newest checkpoint); a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        if (path / GENERATOR).exists():
            return path / GENERATOR
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
        raise NotFoundError(f"no trained vocoder in {path}",
                            "train one with `obt-eval train-vocoder --units UNITS_DIR` and wait for a checkpoint")
    if not path.exists():
        raise NotFoundError(f"no vocoder checkpoint at {path}",
                            "pass the folder printed by `obt-eval train-vocoder` or a .pt file inside it")
    return path


def export_generator(vocoder_dir: Path, step: int, config: dict, meta: dict, generator_state: dict) -> Path:
    path = vocoder_dir / GENERATOR
    save_torch(path, {"format": FORMAT, "step": step, "config": config, "meta": meta, "generator": generator_state})
    _record(vocoder_dir, _latest(vocoder_dir), {GENERATOR: file_checksum(path)})
    return path
