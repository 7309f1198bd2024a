"""Gather what an experiment measured into plain data and render its decision report.

This is the pipelines side of `obt_eval.report.decision`: it reads the experiment's artifacts (search
results, unit metrics, resynthesis metrics, the optional ``predicted_mos.json`` / ``intelligibility.json``
beside each contender's clips, the corpus manifest's language-ID and DNSMOS columns) and the study's
ratings from the database, and hands them to the renderer, which never touches the database.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from obt_eval.errors import NotFoundError
from obt_eval.workspace import Workspace
from pipelines.experiments import coordinator as C
from pipelines.experiments import plan as P

PREDICTED_MOS = "predicted_mos.json"
INTELLIGIBILITY = "intelligibility.json"


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def corpus_quality(manifest: pd.DataFrame) -> dict[str, Any] | None:
    """Source-quality summary from the manifest columns other tools add (lid_top1, lid_flag, dnsmos_ovrl)."""
    out: dict[str, Any] = {}
    if "lid_top1" in manifest or "lid_flag" in manifest:
        lid: dict[str, Any] = {}
        if "lid_top1" in manifest:
            lid["top1_counts"] = {str(k): int(v) for k, v in manifest["lid_top1"].dropna().value_counts().items()}
        if "lid_flag" in manifest:
            flags = manifest["lid_flag"].fillna(False).astype(bool)
            lid["flagged"] = sorted(manifest.loc[flags, "id"].astype(str))
        out["lid"] = lid
    if "dnsmos_ovrl" in manifest:
        scores = pd.to_numeric(manifest["dnsmos_ovrl"], errors="coerce")
        known = manifest.assign(_s=scores)[scores.notna()]
        if not known.empty:
            out["dnsmos"] = {"mean": float(known["_s"].mean()), "min": float(known["_s"].min()), "n": int(len(known)),
                             "below_3": sorted(known.loc[known["_s"] < 3.0, "id"].astype(str))}
    return out or None


def gather(workspace: Workspace, plan: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The report's input: plain data about every contender, and the study's ratings (or None)."""
    from obt_eval.corpus.manifest import Corpus

    keys = plan.get("keys", {})
    pi = C.plan_input(plan)

    def outputs(sid: str) -> dict:
        rec = plan["stages"].get(sid) or {}
        return rec.get("outputs", {}) if rec.get("state") == "done" and rec.get("key") == keys.get(sid) else {}

    corpus = dict(outputs("corpus"))
    try:
        corpus["quality"] = corpus_quality(Corpus.open(pi.options.corpus, workspace).manifest)
    except NotFoundError:  # no corpus yet: the report says what is missing (a damaged one raises)
        pass
    corpus.setdefault("name", pi.options.corpus)
    contenders = []
    for enc in pi.encoders:
        g = enc.label
        c: dict[str, Any] = {"name": g, "kind": "encoder", "source": enc.source, "candidates": list(enc.candidates)}
        choice = outputs(f"choose:{g}")
        if choice:
            c["choice"] = {k: choice.get(k) for k in ("layer", "k", "rule", "reason", "units", "units_hash")}
        results = outputs(f"search:{g}").get("results")
        if results and Path(results).exists():
            c["search_rows"] = _json(Path(results)).get("rows", [])
            c["search_file"], c["search_hash"] = results, _sha(Path(results))
        metrics_file = Path(choice["units"]) / "metrics.json" if choice.get("units") else None
        if outputs(f"unit-metrics:{g}") and metrics_file and metrics_file.exists():
            c["unit_metrics"] = _json(metrics_file)
            c["unit_metrics_file"], c["unit_metrics_hash"] = str(metrics_file), _sha(metrics_file)
        _clips(c, outputs(f"synthesize:{g}").get("out"), outputs(f"resynthesis:{g}"))
        contenders.append(c)
    for system in pi.systems:
        g = system.name
        imported = outputs(f"import:{g}")
        c = {"name": g, "kind": "system", "source": system.folder, "notes": []}
        if imported.get("unknown_ids"):
            c["notes"].append(f"{len(imported['unknown_ids'])} file(s) named after no utterance of the corpus were "
                              f"left out ({', '.join(imported['unknown_ids'][:5])})")
        if imported.get("missing_ids"):
            c["notes"].append(f"{len(imported['missing_ids'])} held-out utterance(s) missing from the folder "
                              f"({', '.join(imported['missing_ids'][:5])})")
        _clips(c, imported.get("out"), outputs(f"resynthesis:{g}"))
        contenders.append(c)
    study, ratings = _study(workspace, outputs("study"))
    stages = P.build_stages(pi)
    done = sum(1 for s in stages if outputs(s.id) or (plan["stages"].get(s.id, {}).get("state") == "done"
                                                      and plan["stages"][s.id].get("key") == keys.get(s.id)))
    folder = C.experiment_dir(workspace, plan["name"])
    notes = []
    if pi.options.demo_corpus is not None or corpus.get("name") == "demo":
        notes.append("the demo corpus is formant-synthesized speech and the demo vocoders are tiny: use it to learn "
                     "the workflow, never to rank encoders")
    if done < len(stages):
        notes.append(f"the experiment is {plan.get('state')}: {done} of {len(stages)} stages done")
    data = {"experiment": plan["name"], "generated_at": C.now(), "options": plan["options"], "corpus": corpus,
            "heldout": {k: v for k, v in outputs("heldout").items() if k in ("ids", "rule")},
            "contenders": contenders, "study": study, "notes": notes,
            "stages": {"done": done, "total": len(stages), "state": plan.get("state")},
            "plan_file": str(folder / C.PLAN_FILE), "provenance_file": str(folder / C.PROVENANCE_FILE)}
    return data, ratings


def _clips(c: dict, folder: str | None, resynthesis: dict) -> None:
    """Per-utterance resynthesis metrics and the optional predicted-MOS / intelligibility files of one contender."""
    if not folder:
        return
    c["stimuli"] = folder
    metrics = resynthesis.get("metrics")
    if metrics and Path(metrics).exists():
        table = pd.read_csv(metrics)
        table = table[table["system"] == c["name"]] if "system" in table else table
        c["resynthesis"] = table.to_dict(orient="records")
        c["resynthesis_file"], c["resynthesis_hash"] = metrics, _sha(Path(metrics))
    for name, key in ((PREDICTED_MOS, "predicted_mos"), (INTELLIGIBILITY, "intelligibility")):
        path = Path(folder) / name
        found = _json(path) if path.exists() else None
        if found:
            c[key], c[f"{key}_file"] = found, str(path)


def _study(workspace: Workspace, out: dict) -> tuple[dict | None, pd.DataFrame | None]:
    if not out.get("study"):
        return None, None
    from db.studies import get_study, progress, ratings_frame
    from obt_eval.errors import NotFoundError
    from pipelines.jobs import database

    with database(workspace).session() as s:
        try:
            study = get_study(s, out["study"])
        except NotFoundError:
            return None, None
        info = {"name": study.name, "status": study.status, **progress(s, study),
                "target_raters": (study.design or {}).get("summary", {}).get("blocks"),
                "source": f"database table ratings, study {study.name!r} (export: obt-eval study export {study.name})"}
        ratings = ratings_frame(s, study)
    return info, (ratings if not ratings.empty else None)


def write_report(workspace: Workspace, plan: dict[str, Any], out_dir: str | Path | None = None) -> dict[str, str]:
    """Render the decision report into ``experiments/<name>/report/`` (or `out_dir`); returns its files."""
    from obt_eval.report.decision import render_decision_report

    data, ratings = gather(workspace, plan)
    out = Path(out_dir) if out_dir else C.experiment_dir(workspace, plan["name"]) / "report"
    return render_decision_report(data, out, ratings).files
