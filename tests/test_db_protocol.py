"""The rating protocol: blinding of what is served, play-to-end gate, idempotent submits, resume."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select
from study_helpers import build_study, new_rater, play_both, simulate_raters

from db.models import Rating, Stimulus, System, Trial
from db.protocol import (
    RatingRefused,
    audio_file,
    next_trial,
    record_play_end,
    record_play_start,
    submit_rating,
)
from obt_eval.errors import NotFoundError
from obt_eval.study.loudness import integrated_loudness
from obt_eval.study.serving import served_wav_bytes


@pytest.fixture
def study_db(tmp_path, db_url):
    """A study of natural + xlsr53 + mms-300m over 6 utterances, stored in SQLite and in PostgreSQL."""
    database, ws, prepared, folders = build_study(tmp_path, db_url)
    yield database, ws, prepared, folders
    database.dispose()


T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
SYSTEM_NAMES = ("xlsr53", "mms-300m", "natural", "anchor", "xlsr", "mms")


WORDING = ("question", "scale_labels", "preference_question", "preference_options", "instructions")


def _names_in(text: str) -> list[str]:
    """System names in `text` as whole words: random tokens may hold "mms" by chance, a leak holds the name."""
    return [n for n in SYSTEM_NAMES if re.search(rf"(?<![a-z0-9]){re.escape(n)}(?![a-z0-9])", text)]


def _wav_metadata(raw: bytes) -> bytes:
    """Every RIFF chunk of a WAV except the samples: where a file name or system label could hide."""
    out, pos = [raw[:12]], 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if cid != b"data":
            out.append(raw[pos : pos + 8 + size])
        pos += 8 + size + (size & 1)
    return b"".join(out)


def _served_strings(view, protocol_view: dict) -> str:
    """The per-trial part of what is served; the wording must equal the study's fixed protocol."""
    fields = dict(view.__dict__)
    for key in WORDING:
        assert fields.pop(key) == protocol_view[key]  # identical for every trial: it cannot carry a system
    assert set(fields) == {"trial_token", "audio_a", "audio_b", "number", "total"}
    return json.dumps(fields, default=str).lower()


def test_nothing_served_names_a_system(study_db):
    database, ws, prepared, _ = study_db
    token, other = new_rater(database), new_rater(database)
    seen_audio, seen_trials = set(), set()
    with database.session() as session:
        utterances = {u for (u,) in session.execute(select(Stimulus.utterance))}
        first_view = None
        for _ in range(12):
            view = next_trial(session, token, now=T0)
            if view is None:
                break
            first_view = first_view or view
            served = _served_strings(view, {k: getattr(first_view, k) for k in WORDING})
            assert not _names_in(served)
            assert not any(u.lower() in served for u in utterances)
            assert {view.audio_a, view.audio_b}.isdisjoint(seen_audio) and view.trial_token not in seen_trials
            seen_audio |= {view.audio_a, view.audio_b}
            seen_trials.add(view.trial_token)
            for audio in (view.audio_a, view.audio_b):
                path = audio_file(session, token, audio)
                assert not any(name in str(path).lower() for name in SYSTEM_NAMES)
                assert audio not in str(path)  # the served token is not the file name either
                header = _wav_metadata(path.read_bytes()).lower().decode("latin-1")
                assert not any(name in header for name in SYSTEM_NAMES)
            play_both(session, token, view, T0)
            submit_rating(session, token, view.trial_token, 3, 3, "none", now=T0)
        # the audio cannot be fetched with another rater's token
        with pytest.raises(RatingRefused):
            audio_file(session, other, next(iter(seen_audio)))


def test_stimuli_share_rate_and_loudness_and_repeats_differ(study_db):
    database, *_ = study_db
    with database.session() as session:
        rows = session.execute(select(Stimulus, System.name).join(System)).all()
        rates, lufs = set(), {}
        for stim, system in rows:
            wave, sr = sf.read(stim.audio_path, dtype="float32")
            rates.add(sr)
            lufs.setdefault(system, []).append(integrated_loudness(wave, sr))
        assert len(rates) == 1
        means = {k: np.mean(v) for k, v in lufs.items()}
        assert max(means.values()) - min(means.values()) < 0.5, means  # sources differed by ~12 dB
        repeats = [s for s, _ in rows if s.variant.startswith("repeat")]
        assert repeats
        for rep in repeats:
            orig = session.scalar(select(Stimulus).where(Stimulus.system_id == rep.system_id,
                                                         Stimulus.utterance == rep.utterance, Stimulus.variant == ""))
            a, b = sf.read(rep.audio_path)[0], sf.read(orig.audio_path)[0]
            assert a.shape == b.shape and np.max(np.abs(a - b)) < 3e-4  # the same sound in the same frame
            serves = [served_wav_bytes(path, nonce) for nonce, path in enumerate([rep.audio_path, orig.audio_path] * 2)]
            assert len(set(serves)) == 4  # but every download of either differs (obt_eval.study.serving)


def test_double_submit_counts_once(study_db):
    database, *_ = study_db
    token = new_rater(database)
    with database.session() as session:
        view = next_trial(session, token, now=T0)
        play_both(session, token, view, T0)
        first = submit_rating(session, token, view.trial_token, 4, 2, "A", now=T0 + dt.timedelta(seconds=3))
        second = submit_rating(session, token, view.trial_token, 1, 5, "B", now=T0 + dt.timedelta(seconds=4))
    assert first.recorded and not first.duplicate
    assert second.duplicate and not second.recorded
    with database.session() as session:
        trial = session.scalar(select(Trial).where(Trial.token == view.trial_token))
        scores = session.scalars(select(Rating.score).where(Rating.trial_id == trial.id).order_by(Rating.position))
        assert list(scores) == [4, 2] and trial.preference == "A"
        assert session.scalar(select(func.count(Trial.id)).where(Trial.submitted_at.is_not(None))) == 1


def test_rating_without_full_play_is_refused(study_db):
    database, *_ = study_db
    token = new_rater(database)
    with database.session() as session:
        view = next_trial(session, token, now=T0)
        with pytest.raises(RatingRefused, match="played to the end"):
            submit_rating(session, token, view.trial_token, 3, 3, now=T0)
        # an "ended" event without a start, or sooner than the clip lasts, does not count
        assert not record_play_end(session, token, view.audio_a, now=T0)
        record_play_start(session, token, view.audio_a, now=T0)
        assert not record_play_end(session, token, view.audio_a, now=T0 + dt.timedelta(seconds=0.1))
        assert record_play_end(session, token, view.audio_a, now=T0 + dt.timedelta(seconds=1))
        with pytest.raises(RatingRefused):  # B never played
            submit_rating(session, token, view.trial_token, 3, 3, now=T0)
        record_play_start(session, token, view.audio_b, now=T0)
        record_play_end(session, token, view.audio_b, now=T0 + dt.timedelta(seconds=1))
        with pytest.raises(RatingRefused, match="scale"):
            submit_rating(session, token, view.trial_token, 6, 3, now=T0)
        with pytest.raises(RatingRefused, match="preference"):
            submit_rating(session, token, view.trial_token, 3, 3, "maybe", now=T0)
        assert submit_rating(session, token, view.trial_token, 3, 3, now=T0).recorded


def test_unserved_or_foreign_trials_are_refused(study_db):
    database, *_ = study_db
    alice, bob = new_rater(database), new_rater(database)
    with database.session() as session:
        view = next_trial(session, alice, now=T0)
        with pytest.raises(RatingRefused):
            record_play_start(session, bob, view.audio_a, now=T0)
        with pytest.raises(RatingRefused):
            submit_rating(session, bob, view.trial_token, 3, 3, now=T0)
        unserved = session.scalar(select(Trial.token).where(Trial.served_at.is_(None)).limit(1))
        with pytest.raises(RatingRefused):
            submit_rating(session, alice, unserved, 3, 3, now=T0)
        with pytest.raises(NotFoundError):
            next_trial(session, "not-a-token", now=T0)


def test_resume_and_block_balance(study_db):
    database, *_ = study_db
    token = new_rater(database)
    with database.session() as session:
        first = next_trial(session, token, now=T0)
    with database.session() as session:  # a reload gets the same trial, served time kept
        again = next_trial(session, token, now=T0 + dt.timedelta(minutes=5))
        assert again.trial_token == first.trial_token and again.audio_a == first.audio_a
        trial = session.scalar(select(Trial).where(Trial.token == first.trial_token))
        assert trial.served_at == T0
    simulate_raters(database, 3, {}, seed=1)
    with database.session() as session:
        # every block a rater got is balanced in A/B position per system pair (±1)
        rows = session.execute(
            select(Trial.block_id, Trial.kind, Rating.position, System.name).join(Rating, Rating.trial_id == Trial.id)
            .join(Stimulus, Rating.stimulus_id == Stimulus.id).join(System, Stimulus.system_id == System.id)
            .where(Trial.kind == "regular", Trial.submitted_at.is_not(None))
        ).all()
        per_block: dict = {}
        for block, _, pos, system in rows:
            per_block.setdefault(block, {}).setdefault(system, []).append(pos)
        for systems in per_block.values():
            for positions in systems.values():
                assert abs(positions.count("A") - positions.count("B")) <= 2
