"""The rater's flow on the server (no browser): invite, consent, listen gate, idempotent submit, blinded audio."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from db.models import Rating, Stimulus, Trial
from webapp import rater_page
from webapp import rating as R
from webapp.audio import router, wav_bytes
from webapp.config import load_config
from webapp.context import make_context
from webapp.sample import SAMPLE_SYSTEMS, make_sample_study

CLIP_SECONDS = 0.45


@pytest.fixture
def study(workspace, monkeypatch):
    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    made = make_sample_study(workspace, utterances=2, seconds=CLIP_SECONDS, raters=2)
    ctx = make_context(load_config(workspace.root, start_worker=False))
    return ctx, [i["invite_token"] for i in made["invites"]]


def _clip_seconds(ctx) -> float:
    """How long the longest clip plays: its sound plus the padding every clip of a study gets."""
    with ctx.db.session() as s:
        return max(s.scalars(select(Stimulus.duration)).all())


def _listen(ctx, session, client, slots=("A", "B")):
    """What the page's player does, one clip after the other: fetch, report play, (the clip plays), report its end."""
    results = []
    for slot in slots:
        assert client.get(f"/stim/{session.urls[slot]}").status_code == 200
        assert client.post(f"/stim/{session.urls[slot]}/play").json()["ok"]
        time.sleep(_clip_seconds(ctx) + 0.15)
        results.append(client.post(f"/stim/{session.urls[slot]}/ended").json())
    return results


def test_a_rater_completes_the_study_once_per_trial(study):
    ctx, (invite, _) = study
    client = TestClient(_audio_app(ctx))
    session = R.RaterSession()
    assert R.open_invite(ctx, session, "not-a-token").name == "join"
    assert R.open_invite(ctx, session, f"https://host/?invite={invite}&x=1").name == "profile"  # pasted link
    assert R.save_profile(ctx, session, "Yes", "No", "pt, gn", consent=False).name == "profile"
    screen = R.save_profile(ctx, session, "Yes", "No", "pt, gn", consent=True)
    assert screen.name == "trial" and screen.trial.number == 1
    total = screen.trial.total
    recorded = 0
    while screen.name == "trial":
        refused, ok = R.submit(ctx, session, 4, 3, "A")
        assert not ok and "played to the end" in refused.status  # the server's listen gate
        results = _listen(ctx, session, client)
        assert results == [{"ok": True, "both": False}, {"ok": True, "both": True}]
        assert R.played_slots(ctx, session.trial) == {"A", "B"}
        first = session.trial.trial_token
        screen, ok = R.submit(ctx, session, 4, 3, "A")
        recorded += ok
        assert session.trial is None or session.trial.trial_token != first
    assert recorded == total
    assert screen.name == "done" and screen.code == R.completion_code(ctx.config.secret, invite)
    with ctx.db.session() as s:
        scores = s.scalars(select(Rating.score).where(Rating.score.is_not(None))).all()
    assert len(scores) == 2 * total


def test_an_ended_event_sooner_than_the_clip_can_play_is_refused(study):
    ctx, (invite, _) = study
    client = TestClient(_audio_app(ctx))
    session = R.RaterSession()
    R.open_invite(ctx, session, invite)
    R.save_profile(ctx, session, "No", "Yes", "", consent=True)
    url = f"/stim/{session.urls['A']}"
    assert client.post(f"{url}/play").json() == {"ok": False, "both": False}  # bytes never downloaded
    assert client.post(f"{url}/ended").json() == {"ok": False, "both": False}
    client.get(url)
    assert client.post(f"{url}/play").json()["ok"]
    assert client.post(f"{url}/ended").json() == {"ok": False, "both": False}  # at once: faster than the clip
    assert R.played_slots(ctx, session.trial) == set()
    time.sleep(_clip_seconds(ctx) + 0.15)
    assert client.post(f"{url}/ended").json() == {"ok": True, "both": False}
    assert R.played_slots(ctx, session.trial) == {"A"}
    assert client.post("/stim/unknown-token/ended").status_code == 404
    assert client.post(f"{url}/delete").status_code == 404
    # after a reload (a new session), the full play of A is remembered
    again = R.RaterSession()
    assert R.open_invite(ctx, again, invite).name == "trial"
    assert again.ended == {"A"} and again.urls["A"] != session.urls["A"]


def test_a_double_submit_counts_once(study):
    ctx, (invite, _) = study
    client = TestClient(_audio_app(ctx))
    session, other_tab = R.RaterSession(), R.RaterSession()
    R.open_invite(ctx, session, invite)
    R.save_profile(ctx, session, "Yes", "Yes", "", consent=True)
    R.open_invite(ctx, other_tab, invite)  # the same rater in a second tab, on the same trial
    assert other_tab.trial.trial_token == session.trial.trial_token
    _listen(ctx, session, client)
    other_tab.ended = {"A", "B"}
    _, first = R.submit(ctx, session, 5, 1, None)
    _, second = R.submit(ctx, other_tab, 1, 5, None)
    assert first and not second
    with ctx.db.session() as s:
        trial = s.scalar(select(Trial).where(Trial.submitted_at.is_not(None)))
        assert sorted(r.score for r in trial.ratings) == [1, 5]


def test_a_rating_is_kept_when_the_next_trial_cannot_be_served_with_it(study, monkeypatch):
    """The rating and the next trial's serve share one transaction; a failing serve must not take the rating along."""
    from obt_eval.errors import ObtEvalError

    ctx, (invite, _) = study
    client = TestClient(_audio_app(ctx))
    session = R.RaterSession()
    R.open_invite(ctx, session, invite)
    R.save_profile(ctx, session, "Yes", "No", "", consent=True)
    _listen(ctx, session, client)
    rated = session.trial.trial_token

    def broken(*_args, **_kwargs):
        raise ObtEvalError("the audio links could not be made")

    monkeypatch.setattr(R.audio_links, "mint_links", broken)
    screen, recorded = R.submit(ctx, session, 5, 2, "B")
    assert recorded and screen.saved and "audio links" in screen.status  # nothing lost, and the page says why
    assert screen.name == "trial"  # the page stays on the rated trial (a second submit moves on)
    assert rater_page.screen_json(screen, invite, page_trial=rated)["keep"]
    with ctx.db.session() as s:
        trial = s.scalar(select(Trial).where(Trial.token == rated))
        assert trial.submitted_at is not None and trial.preference == "B"
        assert sorted(r.score for r in trial.ratings) == [2, 5]
        assert all(r.served_at is None for r in s.scalars(select(Rating).where(Rating.trial_id != trial.id)))
    monkeypatch.undo()
    assert R.load_trial(ctx, session).name == "trial"  # the next trial comes once serving works again


def _audio_app(ctx) -> FastAPI:
    app = FastAPI()
    app.include_router(router(ctx.tokens))
    return app


def test_audio_is_served_under_one_time_tokens_with_no_names(study):
    ctx, (invite, invite2) = study
    client = TestClient(_audio_app(ctx))
    one, two = R.RaterSession(), R.RaterSession()
    for session, token in ((one, invite), (two, invite2)):
        R.open_invite(ctx, session, token)
        R.save_profile(ctx, session, "Yes", "No", "", consent=True)
    reload = R.RaterSession()
    R.open_invite(ctx, reload, invite)
    urls = [one.urls["A"], one.urls["B"], two.urls.get("A"), reload.urls["A"]]
    assert len({u for u in urls if u}) == len([u for u in urls if u])  # never the same URL twice
    first = client.get(f"/stim/{one.urls['A']}")
    again = client.get(f"/stim/{reload.urls['A']}")  # the same clip served again
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"] == "audio/wav" and "content-disposition" not in first.headers
    assert first.headers["cache-control"] == "no-store"
    assert first.content != again.content  # byte-distinct: a repeat cannot be spotted by hashing
    a, rate = sf.read(io.BytesIO(first.content), dtype="int16")
    b, _ = sf.read(io.BytesIO(again.content), dtype="int16")
    assert rate == 16000 and a.shape == b.shape and not np.array_equal(a, b)  # new samples every serve
    level = [np.sqrt(np.mean(x.astype(float) ** 2)) for x in (a, b)]
    assert abs(20 * np.log10(level[0] / level[1])) < 0.3  # but the same clip, as loud
    with ctx.db.session() as s:
        stimulus = s.scalar(select(Stimulus))
        names = [*SAMPLE_SYSTEMS, stimulus.opaque_id, stimulus.utterance]
    for name in names:
        assert name.encode() not in first.content
    part = client.get(f"/stim/{one.urls['A']}", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and part.content == first.content[:44]
    assert part.headers["content-range"] == f"bytes 0-43/{len(first.content)}"
    assert client.get("/stim/guessed-token").status_code == 404


def test_wav_bytes_carry_no_metadata(tmp_path):
    path = tmp_path / "xlsr53_utt001.wav"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000, subtype="PCM_16")
    data = wav_bytes(path, nonce=b"\x01" * 16)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert b"LIST" not in data and b"xlsr53" not in data
    assert sf.info(io.BytesIO(data)).frames == 1600
