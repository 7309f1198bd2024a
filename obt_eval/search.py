"""Layer and codebook-size search: which layer of an encoder, and which k, give the best units.

One forward pass extracts every requested layer (`extract_features(..., layers=[...])`); each layer
is scored on its continuous features (ABX within/across speaker, silhouette of phone labels), and
for each k a codebook is fitted and its units scored (PNMI with shuffled baseline, silhouette of unit
labels, unit ABX, bitrate). The best layer is the one with the lowest within-speaker ABX (what the
seed's ``find_optimal_layer`` maximised was phone separability; ABX is the field's measure of it),
else the highest PNMI, else the highest silhouette, when alignments are missing.

Results go to ``reports/search/<corpus>/<encoder>/results.{json,csv}``; every row names the feature
and units artifacts with their sidecar hashes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from obt_eval.atomic import write_json, write_text
from obt_eval.corpus.manifest import Corpus
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.features.store import FeatureStore
from obt_eval.frames import store_frame_timing
from obt_eval.metrics.abx import AbxConfig, StoreSource, abx_context_fallback
from obt_eval.metrics.unit_quality import (
    bitrate,
    corpus_durations,
    frame_phone_table,
    purity_with_baseline,
    silhouette,
)
from obt_eval.units.kmeans import KMeansConfig
from obt_eval.units.learn import learn_units, sidecar_hash
from obt_eval.workspace import Workspace, safe_name


@dataclass
class SearchConfig:
    ks: list[int] = field(default_factory=lambda: [100])
    # fairseq simple_kmeans: 10 % utterance sample
    sample_frac: float = 0.1
    seed: int = 0
    # Libri-light eval_ABX.py defaults
    max_size_group: int = 10
    max_x_across: int = 5
    # reference/metrics-and-data.md §2.4: 5000-frame silhouette samples take ~0.3 s
    silhouette_sample: int = 5000
    n_init: int = 3
    device: str | None = None


@dataclass
class SearchResult:
    rows: pd.DataFrame
    best_layer: int | None
    best_metric: str
    best_score: float | None
    path: Path
    summary: dict


def search_dir(workspace: Workspace, corpus: str, encoder: str) -> Path:
    return workspace.root / "reports" / "search" / safe_name(corpus) / safe_name(encoder)


def _safe(fn, errors: dict, key: str):
    try:
        return fn()
    except ObtEvalError as exc:
        errors[key] = str(exc).splitlines()[0]
        return None


def _layer_scores(store: FeatureStore, items, alignments, cfg: SearchConfig) -> dict:
    out: dict = {}
    errors: dict = {}
    rate, offset = store_frame_timing(store)  # the encoder's own grid (w2v-BERT centres frames 5 ms later)
    if items is not None:
        for mode in ("within", "across"):
            acfg = AbxConfig(speaker=mode, context="within", max_size_group=cfg.max_size_group,
                             max_x_across=cfg.max_x_across, seed=cfg.seed,
                             frame_rate=rate, frame_offset=offset, device=cfg.device)
            res = _safe(lambda a=acfg: abx_context_fallback(items, StoreSource(store), a), errors, f"abx_{mode}")
            out[f"abx_{mode}"] = res.error if res else None
            out[f"abx_{mode}_context"] = res.config["context"] if res else None
        if out.get("abx_within") is not None and out.get("abx_across") is not None:
            out["abx_gap"] = out["abx_across"] - out["abx_within"]
    if alignments is not None:
        # phone labels on continuous frames: label-based separability of the layer itself
        sample = _frame_sample(store, cfg)
        phones, frames, _ = _safe(lambda: _phone_frames(alignments, store, sample), errors, "silhouette_phones") \
            or (None, None, None)
        if phones is not None and len(phones):
            out["silhouette_phones"] = silhouette(frames, phones, sample_size=cfg.silhouette_sample,
                                                  seed=cfg.seed, metric="cosine")["silhouette"]
    out["layer_errors"] = errors
    return out


def _frame_sample(store: FeatureStore, cfg: SearchConfig) -> list[str]:
    ids = list(store.ids)
    np.random.default_rng(cfg.seed).shuffle(ids)
    lengths = store.lengths()
    chosen, total = [], 0
    for uid in ids:
        chosen.append(uid)
        total += lengths[uid]
        if total >= 4 * cfg.silhouette_sample:
            break
    return chosen


def _phone_frames(alignments: pd.DataFrame, store: FeatureStore, ids: list[str]):
    """Frame phone labels and their features, for the utterances `ids` (on the store's own frame grid)."""
    from obt_eval.alignments import frame_labels

    rate, offset = store_frame_timing(store)
    wanted = alignments[alignments["id"].isin(ids)]
    labels, frames = [], []
    for uid, group in wanted.groupby("id"):
        feats = store.get(uid)
        lab = frame_labels(list(zip(group["onset"], group["offset"], group["phone"].astype(str), strict=True)),
                           len(feats), rate, offset)
        mask = lab != ""
        labels.append(lab[mask])
        frames.append(feats[mask])
    if not labels:
        raise BadInputError("no aligned utterance has features")
    return np.concatenate(labels).astype(str), np.concatenate(frames), None


def _units_scores(units, store: FeatureStore, items, alignments, durations: dict[str, float],
                  cfg: SearchConfig) -> dict:
    seqs = {u: units.get(u) for u in units.ids}
    rate, offset = store_frame_timing(units)  # recorded from the features the units were learned from
    out: dict = {"inertia": units.meta.get("inertia"), "heldout_inertia": units.meta.get("heldout_inertia")}
    errors: dict = {}
    rates = _safe(lambda: bitrate(seqs, durations), errors, "bitrate") or {}
    out.update({k: v for k, v in rates.items() if k in ("bitrate", "bitrate_dedup")})
    if alignments is not None:
        res = _safe(lambda: frame_phone_table(alignments, seqs, frame_rate=rate, frame_offset=offset), errors,
                    "pnmi")
        if res is not None:
            scores = purity_with_baseline(res[0], res[1], seed=cfg.seed)
            out.update({k: scores[k] for k in ("pnmi", "shuffled_pnmi", "phone_purity", "cluster_purity")})
    ids = _frame_sample(store, cfg)
    feats = np.concatenate([store.get(u) for u in ids])
    labs = np.concatenate([seqs[u] for u in ids if u in seqs]) if all(u in seqs for u in ids) else None
    if labs is not None and len(labs) == len(feats):
        sil = silhouette(feats, labs, sample_size=cfg.silhouette_sample, seed=cfg.seed)
        out["silhouette_units"] = sil["silhouette"]
    if items is not None:
        acfg = AbxConfig(speaker="within", context="within", distance="identical", max_size_group=cfg.max_size_group,
                         seed=cfg.seed, frame_rate=rate, frame_offset=offset, device=cfg.device)
        res = _safe(lambda: abx_context_fallback(items, StoreSource(units), acfg), errors, "unit_abx_within")
        out["unit_abx_within"] = res.error if res else None
    out["units_errors"] = errors
    return out


def pick_best(rows: pd.DataFrame) -> tuple[int | None, str, float | None]:
    """The best layer by within-speaker ABX (lower), else PNMI (higher), else silhouette (higher)."""
    for metric, lower in (("abx_within", True), ("pnmi", False), ("silhouette_units", False)):
        if metric in rows and rows[metric].notna().any():
            per_layer = rows.groupby("layer_key")[metric].agg("min" if lower else "max")
            key = per_layer.idxmin() if lower else per_layer.idxmax()
            layer = rows.loc[rows["layer_key"] == key, "layer"].iloc[0]
            layer = None if layer is None or (isinstance(layer, float) and math.isnan(layer)) else int(layer)
            return layer, metric, float(per_layer[key])
    return None, "none", None


def search_layers(
    corpus: str | Corpus,
    encoder: str,
    layers: list[int | None] | None,
    workspace: Workspace | None = None,
    config: SearchConfig | None = None,
    *,
    progress: bool = True,
    out_dir: str | Path | None = None,
    units_prefix: str | None = None,
) -> SearchResult:
    """Extract `layers` once, score each layer and each k, write the table, name the best layer.

    `out_dir` replaces ``reports/search/<corpus>/<encoder>/`` and `units_prefix` the default units
    names (``units/<prefix>_L<layer>_k<k>``), so an experiment's search never overwrites another's.
    """
    from obt_eval.features.extract import extract_features

    cfg = config or SearchConfig()
    ws = workspace or Workspace.at()
    corp = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus, ws)
    if not cfg.ks:
        raise BadInputError("no codebook size given", "pass --k 100,150,200")
    t0 = time.perf_counter()
    stores = extract_features(corp, encoder, layers, ws, device=cfg.device, progress=progress)
    items = None
    if corp.item_path is not None:
        from obt_eval.alignments import read_item_file

        items = read_item_file(corp.item_path)
    alignments = corp.alignments()
    rows = []
    combos = [(layer, k) for layer in stores for k in cfg.ks]
    bar = tqdm(total=len(combos), desc=f"search {encoder}", unit="fit", disable=not progress)
    for layer, store in stores.items():
        layer_scores = _layer_scores(store, items, alignments, cfg)
        for k in cfg.ks:
            kcfg = KMeansConfig(k=k, sample_frac=cfg.sample_frac, seed=cfg.seed, n_init=cfg.n_init, device=cfg.device)
            row = {"corpus": corp.name, "encoder": store.encoder or encoder, "layer": layer,
                   "layer_key": -1 if layer is None else layer, "k": k, **layer_scores,
                   "features": str(store.path), "features_hash": sidecar_hash(store.path)}
            try:
                units_dir = None
                if units_prefix is not None:
                    units_dir = ws.units_dir(f"{units_prefix}_L{'-' if layer is None else layer}_k{k}")
                learned = learn_units(store, kcfg, out_dir=units_dir, workspace=ws, progress=False)
                row.update(_units_scores(learned.units, store, items, alignments, corpus_durations(corp), cfg))
                row.update({"units": str(learned.units.path), "units_hash": sidecar_hash(learned.units.path)})
            except ObtEvalError as exc:
                row["units_errors"] = {"kmeans": str(exc).splitlines()[0]}
            rows.append(row)
            bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    best_layer, metric, score = pick_best(table)
    # the store's encoder name ("tiny-w2v2"), not the path or Hub id the user typed
    label = next(iter(stores.values())).encoder or encoder
    out = Path(out_dir) if out_dir is not None else search_dir(ws, corp.name, label)
    summary = {
        "corpus": corp.name, "encoder": label, "encoder_source": encoder, "layers": [r for r in stores], "ks": cfg.ks,
        "best_layer": best_layer, "best_metric": metric, "best_score": score,
        "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 2), "results": str(out),
        "rows": table.drop(columns=["layer_key"]).to_dict(orient="records"),
    }
    write_json(out / "results.json", summary)
    flat = table.drop(columns=["layer_key"]).copy()
    for col in ("layer_errors", "units_errors"):
        if col in flat:
            flat[col] = flat[col].map(lambda d: "; ".join(f"{k}: {v}" for k, v in (d or {}).items()))
    write_text(out / "results.csv", flat.to_csv(index=False))
    return SearchResult(table, best_layer, metric, score, out, summary)
