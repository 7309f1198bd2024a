"""Every unit metric for one units store, from the artifacts it points to (features, corpus).

This is what ``obt-eval unit-metrics`` runs. Metrics that need something the corpus lacks
(alignments, an item file, two speakers) are left out with the reason in ``not_computed``, so one
missing input never hides the rest. The result is also written to ``<units>/metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from obt_eval.atomic import write_json
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import ObtEvalError
from obt_eval.features.store import FeatureStore
from obt_eval.frames import store_frame_timing
from obt_eval.integrity import CorruptArtifactError
from obt_eval.metrics import crosslingual, speaker, unit_quality
from obt_eval.metrics.abx import AbxConfig, MappingSource, StoreSource, abx_context_fallback
from obt_eval.units.learn import sidecar_hash
from obt_eval.units.store import UnitsStore
from obt_eval.workspace import Workspace


@dataclass
class UnitMetricsConfig:
    # reference/metrics-and-data.md §2.4: exact silhouette is O(n^2); 5000 frames take ~0.3 s
    silhouette_sample: int = 5000
    abx: bool = True
    # Libri-light eval_ABX.py defaults
    max_size_group: int = 10
    max_x_across: int = 5
    probe_folds: int = 5
    seed: int = 0


def _open_corpus(name: str, workspace: Workspace) -> Corpus | None:
    """The corpus, or None when it is not there (its metrics are then skipped); a damaged one is named."""
    try:
        return Corpus.open(name, workspace) if name else None
    except CorruptArtifactError:
        raise
    except ObtEvalError:
        return None


def _units_dict(units: UnitsStore) -> dict[str, np.ndarray]:
    return {uid: units.get(uid) for uid in units.ids}


def _timing(store) -> dict[str, float]:  # noqa: ANN001 — a FeatureStore or UnitsStore
    """A store's frame grid as keyword arguments (frame_rate, frame_offset) for phone labels and ABX."""
    rate, offset = store_frame_timing(store)
    return {"frame_rate": rate, "frame_offset": offset}


def unit_metrics(
    units_path: str | Path,
    *,
    workspace: Workspace | None = None,
    config: UnitMetricsConfig | None = None,
    crosslingual_units: str | Path | None = None,
    write: bool = True,
) -> dict:
    """Purity/PNMI (+shuffled), silhouette, bitrate, unit ABX within/across and gap, speaker probe,
    and optionally cross-lingual consistency against another language's units store."""
    cfg = config or UnitMetricsConfig()
    ws = workspace or Workspace.at()
    units = UnitsStore.open(units_path)
    seqs = _units_dict(units)
    out: dict = {
        "units": str(units.path), "units_hash": sidecar_hash(units.path), "k": units.k,
        "corpus": units.corpus, "encoder": units.meta.get("encoder"), "layer": units.meta.get("layer"),
        "features": units.meta.get("features"), "features_hash": units.meta.get("features_hash"),
        "not_computed": {},
    }
    # by name in this workspace, else by the folder the units recorded (units made elsewhere)
    corpus = _open_corpus(units.corpus, ws) or _open_corpus(units.meta.get("corpus_path", ""), ws)
    if corpus is None:
        out["not_computed"]["bitrate"] = "the corpus is unavailable (bitrate divides by its audio durations)"
    else:
        try:
            out.update(unit_quality.bitrate(seqs, unit_quality.corpus_durations(corpus)))
        except ObtEvalError as exc:
            out["not_computed"]["bitrate"] = str(exc).splitlines()[0]

    phones = None
    alignments = corpus.alignments() if corpus is not None else None
    if alignments is None:
        out["not_computed"]["pnmi"] = "the corpus has no phone alignments"
    else:
        phones, frame_units, problems = unit_quality.frame_phone_table(alignments, seqs, **_timing(units))
        out.update(unit_quality.purity_with_baseline(phones, frame_units, seed=cfg.seed))
        out["alignment_problems"] = problems

    features = None
    try:
        features = FeatureStore.open(units.meta["features"]) if units.meta.get("features") else None
    except ObtEvalError as exc:
        out["not_computed"]["silhouette"] = f"feature store unavailable: {exc}"
    if features is not None:
        ids = [u for u in units.ids if u in features]
        rng = np.random.default_rng(cfg.seed)
        # cap the frames read: a silhouette sample never needs more than ~20x its size
        rng.shuffle(ids)
        x, z, total = [], [], 0
        for uid in ids:
            f = features.get(uid)
            if len(f) != len(seqs[uid]) or not np.isfinite(f).all():
                continue
            x.append(f)
            z.append(seqs[uid])
            total += len(f)
            if total >= 20 * cfg.silhouette_sample:
                break
        if x:
            out.update(unit_quality.silhouette(np.concatenate(x), np.concatenate(z),
                                               sample_size=cfg.silhouette_sample, seed=cfg.seed))

    item_path = corpus.item_path if corpus is not None else None
    if not cfg.abx:
        out["not_computed"]["abx"] = "disabled"
    elif item_path is None:
        out["not_computed"]["abx"] = "the corpus has no item file (needs phone alignments)"
    else:
        from obt_eval.alignments import read_item_file

        items = read_item_file(item_path)
        for mode in ("within", "across"):
            acfg = AbxConfig(speaker=mode, context="within", distance="identical", max_size_group=cfg.max_size_group,
                             max_x_across=cfg.max_x_across, seed=cfg.seed, **_timing(units))
            try:
                res = abx_context_fallback(items, StoreSource(units), acfg)
                out[f"abx_{mode}"] = res.error
                out[f"abx_{mode}_context"] = res.config["context"]
                out[f"abx_{mode}_skipped"] = res.skipped
            except ObtEvalError as exc:
                out["not_computed"][f"abx_{mode}"] = str(exc).splitlines()[0]
        if "abx_within" in out and "abx_across" in out:
            out["abx_gap"] = speaker.abx_gap(out["abx_within"], out["abx_across"])

    if corpus is not None:
        try:
            out.update(speaker.speaker_probe(seqs, corpus.speakers(), units.k, folds=cfg.probe_folds, seed=cfg.seed))
        except ObtEvalError as exc:
            out["not_computed"]["speaker_probe"] = str(exc).splitlines()[0]
    else:
        out["not_computed"]["speaker_probe"] = f"corpus {units.corpus!r} not found in {ws.root}"

    if crosslingual_units is not None:
        out["crosslingual"] = _crosslingual(units, seqs, phones, crosslingual_units, ws, cfg, alignments)
    if write:
        write_json(units.path / "metrics.json", out)
    return out


def _crosslingual(units, seqs, phones_a, other_path, ws, cfg, alignments_a) -> dict:
    other = UnitsStore.open(other_path)
    corpus_b = _open_corpus(other.corpus, ws)
    align_b = corpus_b.alignments() if corpus_b is not None else None
    if alignments_a is None or align_b is None:
        return {"error": "both corpora need phone alignments for cross-lingual consistency"}
    feats_b = FeatureStore.open(other.meta["features"])
    if feats_b.dim != units.codebook.shape[1]:
        dims = f"{feats_b.dim} vs {units.codebook.shape[1]}"
        return {"error": f"feature dims differ ({dims}): use the same encoder and layer"}
    transfer = crosslingual.assign_with_codebook({u: feats_b.get(u) for u in feats_b.ids}, units.codebook)
    # each side on its own grid: B's frames (assigned with A's codebook) are timed as B's feature store
    pa, za, _ = unit_quality.frame_phone_table(alignments_a, seqs, **_timing(units))
    pb, zb, _ = unit_quality.frame_phone_table(align_b, transfer, **_timing(feats_b))
    _, zb_own, _ = unit_quality.frame_phone_table(align_b, _units_dict(other), **_timing(other))
    own = unit_quality.purity_pnmi(pb, zb_own).pnmi if len(zb_own) == len(pb) else None
    result = crosslingual.crosslingual_consistency(pa, za, pb, zb, units.k, own_pnmi_b=own, seed=cfg.seed)
    result.update({"other_units": str(other.path), "other_corpus": other.corpus})
    if cfg.abx and corpus_b.item_path is not None:
        from obt_eval.alignments import read_item_file

        acfg = AbxConfig(speaker="within", distance="identical", max_size_group=cfg.max_size_group,
                         seed=cfg.seed, **_timing(feats_b))
        try:
            items_b = read_item_file(corpus_b.item_path)
            res = abx_context_fallback(items_b, MappingSource(transfer), acfg)
            result["transfer_abx_within"] = res.error
            own_res = abx_context_fallback(items_b, StoreSource(other), replace(acfg, **_timing(other)))
            result["own_abx_within_b"] = own_res.error
        except ObtEvalError as exc:
            result["transfer_abx_error"] = str(exc).splitlines()[0]
    return result
