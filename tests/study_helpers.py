"""Helpers for the study/db tests: generated WAV folders, a created study, and simulated raters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import soundfile as sf

from db import open_database
from db.protocol import next_trial, record_play_end, record_play_start, reveal, submit_rating
from db.studies import StimulusRecord, SystemRecord, TrialRecord, create_study, get_study, invite_raters, register_rater
from obt_eval.study.config import DesignConfig
from obt_eval.study.prepare import prepare_study
from obt_eval.workspace import Workspace

SR = 16000


def make_system_folders(root: Path, systems: dict[str, float], utterances: int = 6, seconds: float = 0.6,
                        sample_rate: int = SR, seed: int = 0) -> dict[str, Path]:
    """One folder per system; each system has its own level (gain) so loudness normalisation has work to do."""
    rng = np.random.default_rng(seed)
    out = {}
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for s_index, (name, gain) in enumerate(systems.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for u in range(utterances):
            f0 = 120 + 15 * u
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
            wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * envelope
            wave = wave / np.max(np.abs(wave)) * 0.5 + rng.normal(0, 0.01 * (s_index + 1), t.size)
            sf.write(folder / f"utt{u:02d}.wav", (gain * wave).astype(np.float32), sample_rate)
        out[name] = folder
    return out


def build_study(tmp_path: Path, url: str, systems: dict[str, float] | None = None, reference: bool = True,
                name: str = "pilot", design: DesignConfig | None = None, utterances: int = 6):
    """Generate WAVs, prepare and store a study in the database at `url` (the `db_url` fixture: SQLite or
    PostgreSQL); returns (database, workspace, prepared, folders)."""
    systems = systems or {"xlsr53": 0.2, "mms-300m": 0.8}
    all_systems = ({"natural": 0.5} if reference else {}) | systems
    folders = make_system_folders(tmp_path / "wavs", all_systems, utterances=utterances)
    ws = Workspace.at(tmp_path / "ws")
    prepared = prepare_study(
        name, [(n, str(folders[n])) for n in systems], ("natural", str(folders["natural"])) if reference else None,
        workspace=ws, design=design or DesignConfig(target_ratings=4, trials_per_block=4, seed=3), progress=False,
    )
    database = open_database(url)
    with database.session() as session:
        create_study(session, prepared.name, prepared.protocol, prepared.design, prepared.settings,
                     str(prepared.stimuli_dir), prepared.sample_rate, [SystemRecord(**s) for s in prepared.systems],
                     [StimulusRecord(**s) for s in prepared.stimuli], [TrialRecord(**t) for t in prepared.trials])
    return database, ws, prepared, folders


def new_rater(database, study: str = "pilot") -> str:
    with database.session() as session:
        token = invite_raters(session, get_study(session, study), 1)[0]["invite_token"]
        register_rater(session, token, native_speaker=True, linguist=False, languages=["sat"], consent=True)
    return token


def play_both(session, token: str, view, start: dt.datetime, seconds: float = 2.0) -> None:
    for audio in (view.audio_a, view.audio_b):
        record_play_start(session, token, audio, now=start)
        assert record_play_end(session, token, audio, now=start + dt.timedelta(seconds=seconds))


def simulate_raters(database, raters: int, effects: dict[str, float], seed: int = 0, study: str = "pilot",
                    careless: int = 0) -> list[str]:
    """Raters who work through the protocol API; scores = 3 + effect + rater bias + noise (anchor: 1).

    The last `careless` raters answer at random (to be caught by screening).
    """
    rng = np.random.default_rng(seed)
    clock = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    tokens = []
    for r in range(raters):
        token = new_rater(database, study)
        tokens.append(token)
        bias = rng.normal(0, 0.4)
        random_rater = r >= raters - careless
        while True:
            with database.session() as session:
                view = next_trial(session, token, now=clock)
                if view is None:
                    break
                play_both(session, token, view, clock)
                systems = reveal(session, view.trial_token)
                scores = []
                for pos in ("A", "B"):
                    if random_rater:
                        scores.append(int(rng.integers(1, 6)))
                    elif systems[pos] == "anchor":
                        scores.append(1)
                    else:
                        latent = 3 + effects.get(systems[pos], 0.0) + bias + rng.normal(0, 0.6)
                        scores.append(int(np.clip(np.rint(latent), 1, 5)))
                pref = "A" if scores[0] > scores[1] else "B" if scores[1] > scores[0] else "none"
                submit_rating(session, token, view.trial_token, scores[0], scores[1], pref,
                              now=clock + dt.timedelta(seconds=5))
            clock += dt.timedelta(seconds=10)
    return tokens
