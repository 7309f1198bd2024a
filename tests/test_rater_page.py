"""The rater's page and its JSON calls (webapp.rater_page), spoken by a script as an attacker or a phone would.

The page keeps no state on the server: each call carries the invite (and the trial it rates), so any app
replica answers any call; the server still decides every step (which trial, full plays, what counts).
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db.models import Trial
from db.protocol import TrialView
from webapp import rater_page
from webapp.audio import router as audio_router
from webapp.config import load_config
from webapp.context import make_context
from webapp.guard import CLIENT_COOKIE, Guard, GuardSettings
from webapp.rating import Screen
from webapp.sample import SAMPLE_SYSTEMS, make_sample_study

CLIP_SECONDS = 0.5


@pytest.fixture
def study(workspace, monkeypatch):
    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    made = make_sample_study(workspace, utterances=2, seconds=CLIP_SECONDS, raters=2, target_ratings=2)
    return workspace, [i["invite_token"] for i in made["invites"]]


def replica(workspace) -> Guard:
    """One app process's rater routes (the page, its calls, the audio) behind the front door, on the workspace."""
    ctx = make_context(load_config(workspace.root, start_worker=False))
    api = FastAPI()
    api.include_router(rater_page.router(ctx))
    api.include_router(audio_router(ctx.tokens))
    return Guard(api, GuardSettings(is_researcher=lambda _v: False, known_function=lambda _i: True,
                                    upload_max_bytes=1 << 20, upload_max_files=3))


def browser(app, name: str = "phone") -> TestClient:
    client = TestClient(app)
    client.cookies.set(CLIENT_COOKIE, f"browser-{name}-" + "x" * 24)
    return client


def join(client: TestClient, invite: str) -> dict:
    client.post("/rate/api/open", json={"invite": invite})
    screen = client.post("/rate/api/profile", json={"invite": invite, "native": "Yes", "linguist": "No",
                                                    "languages": "pt", "consent": True}).json()
    assert screen["screen"] == "trial", screen
    return screen["trial"]


def play_both(client: TestClient, trial: dict, clock) -> bool:
    """Fetch and play A and B to the end (the clock moves on by more than a clip); the last end's `both`."""
    both = False
    for slot in "AB":
        url = "/" + trial["audio"][slot]
        assert client.get(url).status_code == 200
        assert client.post(f"{url}/play").json()["ok"]
        clock.advance(CLIP_SECONDS + 1.5)
        both = client.post(f"{url}/ended").json()["both"]
    return both


def submitted(workspace) -> int:
    from pipelines.jobs import database

    with database(workspace).session() as s:
        return s.scalar(select(func.count(Trial.id)).where(Trial.submitted_at.is_not(None)))


def test_a_rater_rates_trials_through_the_page_calls_and_the_server_decides_each_step(study, clock):
    workspace, invites = study
    phone = browser(replica(workspace))
    assert phone.post("/rate/api/open", json={"invite": "https://host/rate?invite=" + invites[0]}).json() == {
        "screen": "profile", "status": "", "saved": False, "keep": False, "invite": invites[0]}  # a pasted link
    refused = phone.post("/rate/api/profile", json={"invite": invites[0], "native": "Yes"}).json()
    assert refused["screen"] == "profile" and "consent" in refused["status"]
    trial = join(phone, invites[0])
    assert trial["number"] == 1 and trial["ended"] == [] and set(trial["audio"]) == {"A", "B"}
    assert [value for value, _ in trial["scale"]] == [5, 4, 3, 2, 1]

    early = phone.post("/rate/api/submit", json={"invite": invites[0], "trial": trial["token"], "a": 4, "b": 3})
    assert early.json() == {"screen": "trial", "saved": False, "keep": True, "invite": invites[0],
                            "status": "Both recordings must be played to the end before rating."}
    assert play_both(phone, trial, clock)
    answer = phone.post("/rate/api/submit", json={"invite": invites[0], "trial": trial["token"], "a": 4, "b": 3,
                                                  "preference": "A"}).json()
    assert answer["saved"] and answer["trial"]["number"] == 2 and answer["trial"]["token"] != trial["token"]
    again = phone.post("/rate/api/submit", json={"invite": invites[0], "trial": trial["token"], "a": 1, "b": 1}).json()
    assert not again["saved"] and again["trial"]["number"] == 2  # a double tap records nothing twice
    assert submitted(workspace) == 1
    # a reload (the page opened again) resumes on the same trial, with its full plays kept
    assert play_both(phone, answer["trial"], clock)
    reload = phone.post("/rate/api/open", json={"invite": invites[0]}).json()
    assert reload["trial"]["token"] == answer["trial"]["token"] and reload["trial"]["ended"] == ["A", "B"]


def test_any_replica_answers_any_call_of_one_rater(study, clock):
    """No state between calls: a rater served by one app process rates on another (one database, one cookie)."""
    workspace, invites = study
    first, second = browser(replica(workspace)), browser(replica(workspace))
    trial = join(first, invites[0])
    assert play_both(second, trial, clock)  # the audio links are in the database, not in a process
    answer = second.post("/rate/api/submit", json={"invite": invites[0], "trial": trial["token"], "a": 5, "b": 2})
    assert answer.json()["saved"] and submitted(workspace) == 1


def test_bad_calls_are_refused_with_a_message_that_echoes_nothing(study, clock):
    workspace, invites = study
    app = replica(workspace)
    phone, other = browser(app), browser(app, "other")
    trial = join(phone, invites[0])
    assert phone.post("/rate/api/open", content=b"invite=x", headers={"content-type": "text/plain"}).status_code == 415
    for body in ({"invite": invites[0], "admin": True},  # unknown field
                 {"invite": invites[0], "trial": trial["token"], "a": "4; drop table", "b": 3},  # not a number
                 {"invite": "x" * 10_000},  # over the length limit
                 {"invite": invites[0], "trial": trial["token"], "a": 10**30, "b": 3}):  # out of any range
        path = "/rate/api/submit" if "trial" in body else "/rate/api/open"
        reply = phone.post(path, json=body)
        assert reply.status_code == 400, body
        assert "drop" not in reply.text and "xxxxxxxx" not in reply.text and "admin" not in reply.text
    unknown = phone.post("/rate/api/open", json={"invite": "not-an-invitation"}).json()
    assert unknown["screen"] == "join" and "not valid" in unknown["status"] and "invite" not in unknown
    # another rater cannot rate this rater's trial, and a made-up trial is refused
    other_trial = join(other, invites[1])
    assert play_both(other, other_trial, clock)
    for token in (other_trial["token"], "made-up"):
        reply = phone.post("/rate/api/submit", json={"invite": invites[0], "trial": token, "a": 5, "b": 5}).json()
        assert reply["keep"] and not reply["saved"] and "not served to this rater" in reply["status"]
    assert submitted(workspace) == 0
    # an audio link works only in the browser it was served to
    assert other.get("/" + trial["audio"]["A"]).status_code == 404
    assert phone.get("/" + trial["audio"]["A"]).status_code == 200


def test_the_page_is_the_same_for_every_rater_and_names_no_system(study):
    workspace, invites = study
    phone = browser(replica(workspace))
    pages = [phone.get("/rate"), phone.get(f"/rate?invite={invites[0]}"), phone.get(f"/rate?invite={invites[1]}")]
    assert len({p.text for p in pages}) == 1 and pages[0].headers["cache-control"] == "no-store"
    for secret in (*SAMPLE_SYSTEMS, "pilot", *invites, str(workspace.root)):
        assert secret not in pages[0].text
    assert 'id="obt-trial"' in pages[0].text and "rate/api/submit" in pages[0].text  # the script is inlined


def test_an_old_invitation_link_goes_on_to_the_rating_page(study):
    workspace, invites = study
    config = load_config(workspace.root, start_worker=False)
    assert config.invite_url(invites[0]).endswith(f"/rate?invite={invites[0]}")
    reply = browser(replica(workspace)).get(f"/?invite={invites[0]}", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == f"/rate?invite={invites[0]}"


def test_the_researchers_instructions_are_shown_as_text_never_run():
    view = TrialView(trial_token="t", audio_a="a", audio_b="b", number=1, total=2, question="Q?",
                     scale_labels={"1": "bad", "2": "good"}, preference_question=None, preference_options=(),
                     instructions='Use **headphones**. <script>alert(1)</script> <img src=x onerror="alert(2)">')
    shown = rater_page.screen_json(Screen("trial", trial=view, urls={"A": "tokA", "B": "tokB"}), "inv")
    html = shown["trial"]["instructions"]
    assert "<strong>headphones</strong>" in html
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert shown["trial"]["audio"] == {"A": "stim/tokA", "B": "stim/tokB"} and shown["trial"]["preference"] is None
