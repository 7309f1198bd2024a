"""Predicted MOS of each system's clips by automatic judges, per clip and per system.

Writes `<stimuli>/predicted_mos.json`:
``{"judges": {name: {"model", "revision", "files"...}}, "clips": [{"utterance", "file", "checksum",
"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808", "distillmos", ...}], "system": {column: mean, "n"}}``.
Each judge's score of a clip is logged as soon as it exists (`.predicted-mos-progress.jsonl`, keyed by
the judge's pinned revision and the clip's checksum), so a killed run resumes and adding a judge later
reuses the others' scores.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from obt_eval.atomic import write_json
from obt_eval.audio import load_16k
from obt_eval.errors import BadInputError, ObtEvalError
from obt_eval.integrity import file_checksum
from obt_eval.provenance import provenance
from obt_eval.quality.clips import read_clips
from obt_eval.quality.resume import ResumeLog
from obt_eval.workspace import Workspace

OUTPUT = "predicted_mos.json"
OFFLINE_JUDGES = ("dnsmos", "distillmos")
ALL_JUDGES = ("dnsmos", "distillmos", "utmosv2")


def load_judge(name: str, device: str | None = None):
    if name == "dnsmos":
        from obt_eval.quality.dnsmos import Dnsmos

        return Dnsmos()
    if name == "distillmos":
        from obt_eval.quality.distillmos import DistillMos

        return DistillMos(device)
    if name == "utmosv2":
        from obt_eval.quality.utmos import Utmosv2

        return Utmosv2(device)
    raise BadInputError(f"unknown judge {name!r}", f"use any of {', '.join(ALL_JUDGES)}")


def load_judges(names: str | list[str] = "auto", device: str | None = None) -> tuple[list, dict[str, str]]:
    """The judges to run and, for `auto`, those skipped with the reason (`auto` = every offline judge that loads).

    Named judges that cannot load raise their error (e.g. UTMOSv2 without the Hub).
    """
    if names == "auto":
        judges, skipped = [], {}
        for name in OFFLINE_JUDGES:
            try:
                judges.append(load_judge(name, device))
            except ObtEvalError as exc:
                skipped[name] = str(exc).replace("\n  what to do:", "; what to do:")
        if not judges:
            raise BadInputError(f"no quality judge could be loaded: {skipped}", "pip install speechmos onnxruntime")
        return judges, skipped
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise BadInputError("no judge named", f"pass --judges with any of {', '.join(ALL_JUDGES)}")
    return [load_judge(n, device) for n in dict.fromkeys(wanted)], {}


def system_means(clips: list[dict], columns: list[str]) -> dict:
    out: dict = {}
    for col in columns:
        values = [c[col] for c in clips if c.get(col) is not None and np.isfinite(c[col])]
        out[col] = round(float(np.mean(values)), 4) if values else None
    out["n"] = len(clips)
    return out


def predict_system(stimuli_dir: str | os.PathLike, judges: list, *, workspace: Workspace | None = None,
                   skipped: dict[str, str] | None = None, progress: bool = True) -> dict:
    """Score every clip of one system with every judge; write and return predicted_mos.json."""
    clips = read_clips(stimuli_dir, workspace)
    logs = {j.name: ResumeLog(clips.directory / ".predicted-mos-progress.jsonl",
                              {"judge": j.name, **j.describe()}) for j in judges}
    rows, problems = [], list(clips.missing)
    columns = [c for j in judges for c in j.columns]
    for uid, path in tqdm(clips.clips.items(), desc=f"predict-mos {clips.system}", unit="clip",
                          disable=not progress):
        try:
            checksum = file_checksum(path)
            row = {"utterance": uid, "file": path.name, "checksum": checksum}
            wave = None
            for judge in judges:
                scores = logs[judge.name].get(uid, checksum)
                if scores is None:
                    wave = load_16k(path) if wave is None else wave
                    scores = {k: round(v, 4) for k, v in judge.score(wave).items()}
                    logs[judge.name].put(uid, scores, checksum)
                row.update(scores)
            rows.append(row)
        except (ObtEvalError, OSError, RuntimeError, ValueError) as exc:
            problems.append({"id": uid, "problem": str(exc).splitlines()[0]})
    result = {
        "system_name": clips.system, "stimuli": str(clips.directory.resolve()),
        "judges": {j.name: j.describe() for j in judges}, "judges_skipped": skipped or {},
        "clips": rows, "system": system_means(rows, columns), "problems": problems, "provenance": provenance(),
    }
    write_json(clips.directory / OUTPUT, result)
    return result
