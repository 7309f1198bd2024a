"""Feature store -> units store: sample utterances, fit k-means, assign every utterance, write it all.

This is what ``obt-eval units`` runs. Fitting is resumable through a work folder next to the output
(``.kmeans-work/``, deleted on success); a finished output with the same settings is reused, so
re-running a command is cheap and never silently changes a codebook that vocoders depend on.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from obt_eval.errors import BadInputError
from obt_eval.features.store import FeatureStore
from obt_eval.frames import store_frame_timing
from obt_eval.integrity import CorruptArtifactError
from obt_eval.units.kmeans import KMeansConfig, assign, fit_kmeans, pick_device
from obt_eval.units.store import UnitsStore
from obt_eval.workspace import Workspace, safe_name

WORK_DIR = ".kmeans-work"
log = logging.getLogger(__name__)


def sidecar_hash(path: str | Path) -> str:
    """Short sha256 of an artifact's sidecar.json: names exactly which artifact a figure came from."""
    return hashlib.sha256((Path(path) / "sidecar.json").read_bytes()).hexdigest()[:12]


def default_units_name(store: FeatureStore, k: int, seed: int) -> str:
    layer = "-" if store.layer is None else store.layer
    return safe_name(f"{store.corpus or 'corpus'}_{store.encoder or 'enc'}_L{layer}_k{k}_s{seed}")


@dataclass
class LearnResult:
    units: UnitsStore
    reused: bool
    skipped: dict[str, str]


def _finite_utterances(store: FeatureStore, ids: list[str], skipped: dict[str, str]) -> list[tuple[str, np.ndarray]]:
    out = []
    for uid in ids:
        feats = store.get(uid)
        if feats.shape[0] == 0:
            skipped[uid] = "no frames"
        elif not np.isfinite(feats).all():
            skipped[uid] = "NaN or infinite features"
        else:
            out.append((uid, feats))
    return out


def learn_units(
    features: str | Path | FeatureStore,
    config: KMeansConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    workspace: Workspace | None = None,
    force: bool = False,
    progress: bool = True,
) -> LearnResult:
    """Fit a k-means codebook on a sample of `features` and write units for every utterance.

    Utterances with NaN/inf features are skipped and listed in the sidecar (``skipped``); they get
    no units. The sidecar records the feature store (path and sidecar hash), corpus, encoder, layer,
    its frame grid (``frame_rate``, ``frame_offset``), k, seed, fit and held-out inertia, and the sample size.
    """
    cfg = config or KMeansConfig()
    store = features if isinstance(features, FeatureStore) else FeatureStore.open(features)
    if out_dir is None:
        out_dir = (workspace or Workspace.at()).units_dir(default_units_name(store, cfg.k, cfg.seed))
    out = Path(out_dir)
    fit_key = {**cfg.fit_key(), "features": str(store.path.resolve()), "features_hash": sidecar_hash(store.path)}

    existing = None
    if (out / "sidecar.json").exists() and (out / "units.parquet").exists():
        try:
            existing = UnitsStore.open(out)
        except CorruptArtifactError as exc:  # a damaged output is never reused: this call makes it again
            log.warning("%s; fitting the units again", str(exc).splitlines()[0])
    if existing is not None:
        old = existing.meta
        if old.get("fit_key") == fit_key and not force:
            return LearnResult(existing, True, old.get("skipped", {}))
        if not force:
            raise BadInputError(
                f"{out} already holds units made with other settings (or from other features)",
                "pass --force to replace them, or choose another --name",
            )

    skipped: dict[str, str] = {}
    sample_ids = store.sample_utterances(cfg.sample_frac, cfg.seed)
    sample = _finite_utterances(store, sample_ids, skipped)
    if not sample:
        raise BadInputError(
            f"no usable frames in the {len(sample_ids)} sampled utterances of {store.path}",
            "check the feature store (all sampled utterances were empty or had NaN features)",
        )
    data = np.concatenate([f for _, f in sample])
    say = (lambda msg: tqdm.write(f"k-means: {msg}", file=sys.stderr)) if progress else None
    result = fit_kmeans(data, cfg, checkpoint=out / WORK_DIR, progress=say)
    del data

    sampled = {uid for uid, _ in sample}
    device = pick_device(cfg.device)
    centroids = torch.as_tensor(result.centroids, device=device)
    sequences: dict[str, np.ndarray] = {}
    held_sum, held_n = 0.0, 0
    bar = tqdm(total=len(store), desc="assigning units", unit="utt", disable=not progress)
    for uid, feats in store.iter_utterances():
        bar.update(1)
        if feats.shape[0] == 0:
            skipped.setdefault(uid, "no frames")
            continue
        if not np.isfinite(feats).all():
            skipped.setdefault(uid, "NaN or infinite features")
            continue
        labels, dists = assign(torch.as_tensor(feats, device=device), centroids, chunk_elements=cfg.chunk_elements)
        sequences[uid] = labels.cpu().numpy()
        if uid not in sampled:
            held_sum += float(dists.double().sum())
            held_n += feats.shape[0]
    bar.close()

    frame_rate, frame_offset = store_frame_timing(store)
    meta = {
        "features": str(store.path.resolve()),
        "features_hash": sidecar_hash(store.path),
        "corpus": store.corpus,
        "corpus_path": store.meta.get("corpus_path"),
        "encoder": store.encoder,
        "layer": store.layer,
        # the frame grid of the features (w2v-BERT centres its frames 5 ms later than wav2vec2): phone labels,
        # ABX segments and PNMI of these units are timed by it
        "frame_rate": frame_rate,
        "frame_offset": frame_offset,
        "seed": cfg.seed,
        "inertia": result.inertia,
        "heldout_inertia": held_sum / held_n if held_n else None,
        "heldout_frames": held_n,
        "sample_frac": cfg.sample_frac,
        "sample_utterances": len(sample),
        "sample_frames": int(sum(f.shape[0] for _, f in sample)),
        "kmeans": {**cfg.fit_key(), "n_iter": result.n_iter, "init_inertia": result.init_inertia,
                   "restart_inertias": result.restart_inertias, "fit_seconds": round(result.seconds, 3),
                   "device": result.device, "backend_resolved": result.backend},
        "skipped": skipped,
        "fit_key": fit_key,
    }
    units = UnitsStore.write(out, sequences, result.centroids, meta)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return LearnResult(units, False, skipped)
