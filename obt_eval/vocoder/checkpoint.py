"""Vocoder checkpoints: full training state for exact resume, and a small generator-only export.

A vocoder folder holds::

    config.json                 model + training configuration and what the vocoder was trained on
    checkpoints/ckpt-NNNNNNNN.pt  generator, discriminators, optimisers, schedulers, step, RNG states
    latest.json                 the step and file of the newest complete checkpoint (written last)
    generator.pt                the generator alone, with config and metadata: what `synthesize` loads
    train_log.csv, validation.csv, curves.png, samples/   the training record

Every file is written to a temporary name and renamed, so a kill never leaves a torn checkpoint
that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obt_eval.atomic import atomic_path, read_json, write_json
from obt_eval.errors import BadInputError, NotFoundError

FORMAT = "obt-eval-vocoder/1"


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


def write_checkpoint(vocoder_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint, then `latest.json`, then prune old ones (never the newest `keep`)."""
    path = checkpoint_path(vocoder_dir, step)
    save_torch(path, {"format": FORMAT, "step": step, **state})
    write_json(vocoder_dir / "latest.json", {"step": step, "path": str(path.relative_to(vocoder_dir))})
    olds = sorted((vocoder_dir / "checkpoints").glob("ckpt-*.pt"))
    for old in olds[: max(0, len(olds) - max(1, keep))]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def latest_checkpoint(vocoder_dir: Path) -> Path | None:
    latest = vocoder_dir / "latest.json"
    if not latest.exists():
        return None
    path = vocoder_dir / read_json(latest)["path"]
    return path if path.exists() else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise BadInputError(f"cannot read vocoder checkpoint {path}: {exc}",
                            "pass a checkpoint written by `obt-eval train-vocoder`") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadInputError(f"{path} is not an obt-eval vocoder checkpoint",
                            "pass a vocoder folder or a .pt written by `obt-eval train-vocoder`")
    return state


def resolve_generator(path: str | os.PathLike) -> Path:
    """A vocoder folder -> its generator.pt (or newest checkpoint); a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        if (path / "generator.pt").exists():
            return path / "generator.pt"
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
    path = vocoder_dir / "generator.pt"
    save_torch(path, {"format": FORMAT, "step": step, "config": config, "meta": meta, "generator": generator_state})
    return path
