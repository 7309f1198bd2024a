"""Attacks on the blinded audio links: reload floods, link sharing, replicas, overlapping plays, a locked database."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import tracemalloc

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import db.audio_links as links_mod
from db.audio_links import LINK_MAX_AGE, LINK_TTL, LINKS_PER_TRIAL
from db.models import AudioLink, Rating, Stimulus
from webapp import rating as R
from webapp.audio import router
from webapp.config import load_config
from webapp.context import make_context
from webapp.guard import CLIENT_COOKIE, Guard, GuardSettings, binding_of
from webapp.sample import make_sample_study

CLIP_SECONDS = 0.6


@pytest.fixture
def study(workspace, monkeypatch):
    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    made = make_sample_study(workspace, utterances=2, seconds=CLIP_SECONDS, raters=3, target_ratings=3)
    ctx = make_context(load_config(workspace.root, start_worker=False))
    return ctx, [i["invite_token"] for i in made["invites"]]


def _guarded(ctx) -> Guard:
    """The audio routes behind the app's front door (which gives every browser its session cookie)."""
    api = FastAPI()
    api.include_router(router(ctx.tokens))
    return Guard(api, GuardSettings(is_researcher=lambda _v: False, known_function=lambda _i: True,
                                    upload_max_bytes=1 << 20, upload_max_files=3))


def _browser(ctx, name: str) -> tuple[TestClient, str]:
    """A client with its own session cookie, and the binding its links get."""
    client = TestClient(_guarded(ctx))
    value = f"browser-{name}-" + "x" * 24
    client.cookies.set(CLIENT_COOKIE, value)
    return client, binding_of(value)


def _rater(ctx, invite: str, binding: str) -> R.RaterSession:
    session = R.RaterSession(binding=binding)
    R.open_invite(ctx, session, invite)
    screen = R.save_profile(ctx, session, "Yes", "No", "pt", consent=True)
    assert screen.name == "trial", screen
    return session


def _live_links(ctx) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(AudioLink))


def test_a_reload_flood_keeps_few_links_no_bytes_and_spares_other_raters(study, clock):
    ctx, (flooder, other, _) = study
    browser, binding = _browser(ctx, "flood")
    victim_browser, victim_binding = _browser(ctx, "victim")
    victim = _rater(ctx, other, victim_binding)
    session = _rater(ctx, flooder, binding)
    assert browser.get(f"/stim/{session.urls['A']}").status_code == 200
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    served = set()
    for _ in range(300):  # a rater reloading the trial as fast as the server answers
        screen = R.load_trial(ctx, session)
        if session.urls:
            served.add(session.urls["A"])
            assert browser.get(f"/stim/{session.urls['A']}").status_code == 200
        else:
            assert "reloaded too often" in screen.status
        clock.advance(0.03)
    growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert _live_links(ctx) <= LINKS_PER_TRIAL + 2  # the flooder's trial + the victim's two links
    assert len(served) <= 2 * LINKS_PER_TRIAL  # minting slowed down to a trickle (reuse within the window)
    # 300 fetches of a 19 kB clip kept nothing: the links hold no bytes
    assert growth < 1_000_000, growth
    for slot in "AB":  # the other rater's links were never evicted
        assert victim_browser.get(f"/stim/{victim.urls[slot]}").status_code == 200


def test_a_link_works_only_in_the_browser_it_was_shown_in_and_only_for_minutes(study, clock, monkeypatch, tmp_path):
    from webapp.server import housekeeping

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # the upload sweep looks at this test's only
    ctx, (invite, *_) = study
    browser, binding = _browser(ctx, "mine")
    stranger, _ = _browser(ctx, "stranger")
    session = _rater(ctx, invite, binding)
    url = f"/stim/{session.urls['A']}"
    assert stranger.get(url).status_code == 404  # a shared or leaked link is useless elsewhere
    assert TestClient(_guarded(ctx)).get(url).status_code == 404  # a script with a fresh cookie, too
    assert stranger.post(f"{url}/play").status_code == 404
    assert browser.get(url).status_code == 200
    with ctx.db.session() as s:
        link = s.get(AudioLink, session.urls["A"])
        assert link.expires_at - link.created_at <= LINK_TTL <= dt.timedelta(minutes=30)
    for _ in range(10):  # used every 14 minutes: alive, but never beyond the hard cap
        clock.advance(LINK_TTL.total_seconds() - 60)
        if browser.post(f"{url}/play").status_code == 404:
            break
    with ctx.db.session() as s:
        link = s.get(AudioLink, session.urls["A"])
        assert link is None or link.expires_at - link.created_at <= LINK_MAX_AGE
    assert browser.get(url).status_code == 404
    clock.advance(LINK_TTL.total_seconds())
    assert housekeeping(ctx)["audio_links"] >= 1  # expired links are deleted, not only refused
    assert _live_links(ctx) == 0 and browser.get(f"/stim/{session.urls['B']}").status_code == 404


def test_every_fetch_of_one_link_gives_the_same_bytes_and_two_links_differ(study, clock):
    ctx, (invite, *_) = study
    browser, binding = _browser(ctx, "ranges")
    session = _rater(ctx, invite, binding)
    url = f"/stim/{session.urls['A']}"
    full = browser.get(url).content
    assert browser.get(url).content == full  # re-rendered per fetch, identical (range requests must agree)
    head = browser.get(url, headers={"Range": "bytes=0-99"})
    tail = browser.get(url, headers={"Range": "bytes=-100"})
    assert head.status_code == tail.status_code == 206
    assert head.content == full[:100] and tail.content == full[-100:]
    R.load_trial(ctx, session)  # a reload: a new link to the same clip
    assert browser.get(f"/stim/{session.urls['A']}").content != full


def test_app_replicas_share_the_links(study, clock, workspace):
    ctx, (invite, *_) = study
    replica = make_context(load_config(workspace.root, start_worker=False))  # another process, same database
    assert replica.tokens is not ctx.tokens
    browser, binding = _browser(ctx, "one")
    session = _rater(ctx, invite, binding)
    other = TestClient(_guarded(replica))
    other.cookies.set(CLIENT_COOKIE, browser.cookies[CLIENT_COOKIE])
    assert other.get(f"/stim/{session.urls['A']}").status_code == 200
    assert other.post(f"/stim/{session.urls['A']}/play").json()["ok"]


def test_playing_a_and_b_at_once_is_not_two_full_plays(study, clock):
    ctx, (invite, *_) = study
    with ctx.db.session() as s:  # a clip plays for its sound plus the padding every clip of the study gets
        clip_seconds = max(s.scalars(select(Stimulus.duration)).all())
    browser, binding = _browser(ctx, "overlap")
    session = _rater(ctx, invite, binding)
    a, b = (f"/stim/{session.urls[x]}" for x in "AB")
    for url in (a, b):
        browser.get(url)
    assert browser.post(f"{a}/play").json()["ok"] and browser.post(f"{b}/play").json()["ok"]
    clock.advance(clip_seconds + 0.1)
    assert browser.post(f"{a}/ended").json() == {"ok": False, "both": False}  # B started while A played
    assert browser.post(f"{b}/ended").json() == {"ok": True, "both": False}
    assert R.played_slots(ctx, session.trial) == {"B"}
    assert R.submit(ctx, session, 4, 3, None)[1] is False
    # one after the other, as the page plays them: counted
    assert browser.post(f"{a}/play").json()["ok"]
    clock.advance(clip_seconds + 0.1)
    assert browser.post(f"{a}/ended").json() == {"ok": True, "both": True}
    assert R.played_slots(ctx, session.trial) == {"A", "B"}


def test_a_locked_database_answers_503_with_retry_after_and_a_brief_lock_is_retried(workspace, monkeypatch, clock):
    import db.engine

    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 50)  # wait 50 ms for a lock, not 15 s
    made = make_sample_study(workspace, utterances=2, seconds=CLIP_SECONDS, raters=1)
    ctx = make_context(load_config(workspace.root, start_worker=False))
    browser, binding = _browser(ctx, "busy")
    session = _rater(ctx, made["invites"][0]["invite_token"], binding)
    url = f"/stim/{session.urls['A']}"
    holder = sqlite3.connect(str(workspace.database_path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock (a backup, a worker, a replica)
    try:
        for reply in (browser.get(url), browser.post(f"{url}/play")):  # the first fetch writes, so does play
            assert reply.status_code == 503, reply.text
            assert reply.headers["retry-after"] == "1" and "Traceback" not in reply.text
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    real = links_mod.playback_event
    calls = []

    def locked_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE ratings", {}, sqlite3.OperationalError("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(links_mod, "playback_event", locked_once)
    assert browser.get(url).status_code == 200
    reply = browser.post(f"{url}/play")
    assert reply.status_code == 200 and reply.json()["ok"] and len(calls) == 2  # retried on the server
    with ctx.db.session() as s:
        assert s.scalar(select(Rating.first_play_at).where(Rating.audio_token == session.trial.audio_a)) is not None


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="Chromium not installed at /usr/bin/chromium")
def test_the_page_retries_an_event_the_busy_server_answered_503(tmp_path):
    """The player's JS waits Retry-After and sends the event again, so a busy moment loses no play."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from app_helpers import CHROMIUM, CHROMIUM_ARGS, served_app

    from obt_eval.workspace import Workspace

    root = tmp_path / "ws"
    made = make_sample_study(Workspace.at(root), utterances=1, seconds=0.5, raters=1)
    with served_app(root) as (base, _config), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        busy = []

        def first_end_is_busy(route) -> None:
            if not busy:
                busy.append(route.request.url)
                route.fulfill(status=503, headers={"Retry-After": "0"}, body='{"ok": false, "busy": true}')
            else:
                route.continue_()

        page.route("**/stim/*/ended", first_end_is_busy)
        page.goto(f"{base}/rate?invite={made['invites'][0]['invite_token']}")
        page.wait_for_selector("#obt-profile", state="visible", timeout=30000)
        page.locator("#obt-native input[value='Yes']").check()
        page.locator("#obt-linguist input[value='No']").check()
        page.locator("#obt-consent input").check()
        page.locator("#obt-continue").click()
        page.wait_for_selector("#obt-trial", state="visible", timeout=30000)
        for slot in "AB":
            page.locator(f"button.obt-play[data-slot='{slot}']").click()
            page.wait_for_selector(f"button.obt-play.obt-played[data-slot='{slot}']", timeout=15000)
        page.wait_for_function("() => !document.querySelector('#obt-submit').disabled", timeout=15000)
        assert len(busy) == 1  # the first "ended" was refused as busy, and the page sent it again
        browser.close()
