"""A small generated study (tones, no download) for the app's tests, the browser tests and the load benchmark.

System names are deliberately real-looking encoder names, so the leak tests search for strings a
careless page would really contain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from obt_eval.audio import write_wav
from obt_eval.workspace import Workspace

SAMPLE_SYSTEMS = ("xlsr53", "mms-300m")
SAMPLE_RATE = 16000


def write_tone_system(folder: Path, utterances: list[str], seconds: float, base_hz: float, seed: int) -> Path:
    """One system's clips: a short harmonic tone per utterance, the same length for every system."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    for i, uid in enumerate(utterances):
        f0 = base_hz * (1 + 0.05 * i)
        wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3)) * 0.2
        wave = wave * np.hanning(t.size) ** 0.2 + rng.normal(0, 0.003, t.size)
        write_wav(folder / f"{uid}.wav", wave.astype(np.float32))
    return folder


def make_sample_study(workspace: Workspace, name: str = "pilot", *, utterances: int = 2, seconds: float = 0.6,
                      raters: int = 1, target_ratings: int = 1, trials_per_block: int = 10,
                      systems: tuple[str, ...] = SAMPLE_SYSTEMS, seed: int = 7) -> dict:
    """Create a study from generated tones and invite `raters`; returns the study summary and the invites."""
    from db.studies import get_study, invite_raters
    from pipelines.jobs import database
    from pipelines.studies import create_study_from_dirs

    uids = [f"utt{i:03d}" for i in range(utterances)]
    src = Path(workspace.root) / "sample_sources"
    dirs = [(s, str(write_tone_system(src / s, uids, seconds, 180.0 + 40 * i, seed + i)))
            for i, s in enumerate(systems)]
    summary = create_study_from_dirs(name, dirs, workspace, target_ratings=target_ratings,
                                     trials_per_block=trials_per_block, seed=seed, progress=False)
    with database(workspace).session() as s:
        invites = invite_raters(s, get_study(s, name), raters) if raters else []
    return {"summary": summary, "invites": invites}
