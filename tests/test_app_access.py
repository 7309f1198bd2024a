"""Access control lives on the server: a rater's session (or any script) cannot use researchers' endpoints."""

from __future__ import annotations

import json

import httpx
import pytest
from app_helpers import PASSWORD, RawGradio, served_app
from gradio_client import Client
from sqlalchemy import func, select

from db.models import Job, Rater, Study
from webapp.sample import SAMPLE_SYSTEMS, make_sample_study


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from obt_eval.workspace import Workspace

    root = tmp_path_factory.mktemp("access") / "ws"
    ws = Workspace.at(root)
    made = make_sample_study(ws, utterances=2, seconds=0.45, raters=2)
    with served_app(root, start_worker=False) as (base, config):
        yield base, config, ws, [i["invite_token"] for i in made["invites"]]


def _counts(ws) -> tuple[int, int, str]:
    from pipelines.jobs import database

    with database(ws).session() as s:
        return (s.scalar(select(func.count(Job.id))), s.scalar(select(func.count(Rater.id))),
                s.scalar(select(Study.status)))


def _secrets(config, ws, invites) -> list[str]:
    return [*SAMPLE_SYSTEMS, "pilot", str(ws.root), config.admin_password, *invites]


def test_an_anonymous_session_cannot_use_any_researcher_endpoint(app):
    """Anyone (a rater who opened the researcher app, a script) gets a Gradio session: none of it is a login."""
    base, config, ws, invites = app
    rater = RawGradio(base)
    before = _counts(ws)
    private = [(i, d) for i, d in enumerate(rater.config["dependencies"]) if d.get("api_visibility") == "private"]
    admin_state_id = next(c["id"] for c in rater.config["components"]  # the first gr.State is the admin login
                          if c["type"] == "state")
    attacked = 0
    for index, dep in private:
        if admin_state_id not in dep["inputs"]:
            continue
        attacked += 1
        reply = rater.call(index, rater.dummy_inputs(dep), event_data={"index": [0, 0], "value": "1",
                                                                          "row_value": ["1"]})
        text = json.dumps(reply)
        for secret in _secrets(config, ws, invites):
            assert secret not in text, (dep.get("api_name"), secret)
    assert attacked >= 15  # every admin and results action was tried
    assert _counts(ws) == before  # no job launched, no rater invited, no study closed


def test_the_password_is_checked_on_the_server(app):
    base, config, ws, invites = app
    attacker = RawGradio(base, headers={"X-Forwarded-For": "198.51.100.7"})  # through the (trusted) loopback proxy
    index, dep = attacker.dependency("on_login")
    for guess in ("", "admin", "password"):
        reply = attacker.call(index, [guess, None])
        assert "wrong password" in json.dumps(reply) and "pilot" not in json.dumps(reply)
    researcher = RawGradio(base, headers={"X-Forwarded-For": "198.51.100.8"})
    reply = researcher.call(index, [PASSWORD, None])
    assert "pilot" in json.dumps(reply)  # the study list arrives only after a login
    launch_index, _ = researcher.dependency("on_launch")
    before = _counts(ws)[0]
    researcher.call(launch_index, [None, "selftest", '{"seconds": 0.1}'])
    assert _counts(ws)[0] == before + 1


def test_gradio_client_sees_no_researcher_endpoints(app):
    base, *_ = app
    client = Client(base, verbose=False)
    names = json.dumps(client.view_api(return_format="dict", print_info=False))
    for hidden in ("on_login", "on_launch", "on_demo", "on_invite", "on_show", "on_cancel"):
        assert hidden not in names
    with pytest.raises(Exception):  # noqa: B017 — any refusal will do: the endpoint is not offered
        client.predict("selftest", "{}", api_name="/on_launch")
    assert "named_endpoints" in names  # the client did read the app's API description (an empty one)


def test_the_page_config_carries_no_system_names_and_no_run_history(app):
    base, config, ws, invites = app
    page = httpx.get(f"{base}/config").text + httpx.get(f"{base}/rate?invite={invites[0]}").text
    for secret in _secrets(config, ws, invites)[:3]:
        assert secret not in page
    config_json = httpx.get(f"{base}/config").json()
    assert config_json.get("footer_links") in ([], None)
    assert httpx.get(f"{base}/gradio_api/runs").status_code in (404, 405, 403) or \
        "pilot" not in httpx.get(f"{base}/gradio_api/runs").text
    guessed = httpx.get(f"{base}/download/guessed")
    assert guessed.status_code == 404 and "again for a new one" in guessed.text  # says what to do
    assert httpx.get(f"{base}/stim/guessed").status_code == 404
