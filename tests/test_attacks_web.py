"""What an anonymous client can send the app: closed API descriptions, bad events, huge fields; and pseudonyms."""

from __future__ import annotations

import json
import secrets as real_secrets

import httpx
import pytest
from app_helpers import RawGradio, served_app
from sqlalchemy import select

from db.models import Rater
from db.studies import check_profile, get_study, invite_raters
from obt_eval.errors import BadInputError


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from obt_eval.workspace import Workspace
    from webapp.sample import make_sample_study

    root = tmp_path_factory.mktemp("web") / "ws"
    ws = Workspace.at(root)
    made = make_sample_study(ws, utterances=2, seconds=0.5, raters=2)
    with served_app(root) as (base, config):
        yield base, ws, [i["invite_token"] for i in made["invites"]]


def _rater_row(ws, invite: str) -> Rater:
    from pipelines.jobs import database

    with database(ws).session() as s:
        return s.scalar(select(Rater).where(Rater.invite_token == invite))


def test_api_descriptions_are_closed(app):
    base, *_ = app
    for path in ("/openapi.json", "/gradio_api/openapi.json", "/docs", "/redoc", "/gradio_api/docs"):
        assert httpx.get(f"{base}{path}").status_code == 404, path
    assert httpx.get(f"{base}/config").status_code == 200  # the page itself still loads


def test_a_session_cannot_write_its_page_state_to_the_server_through_a_deep_link(app):
    base, ws, invites = app
    rater = RawGradio(base)
    login, _ = rater.dependency("on_login")
    assert rater.call(login, ["a wrong guess", None])["success"]  # the session exists
    assert httpx.get(f"{base}/gradio_api/deep_link", params={"session_hash": rater.session_hash}).status_code == 404
    assert not list(ws.root.rglob("deep_links"))


def test_an_unknown_event_is_a_client_error_without_internals(app):
    base, *_ = app
    for index in (9999, -1, 2**40):
        reply = httpx.post(f"{base}/gradio_api/queue/join",
                           json={"data": [], "fn_index": index, "session_hash": "abcdef"})
        assert reply.status_code == 422, (index, reply.status_code)
        assert "Traceback" not in reply.text and "KeyError" not in reply.text
    reply = httpx.post(f"{base}/gradio_api/queue/join", content=b"{not json",
                       headers={"content-type": "application/json"})
    assert 400 <= reply.status_code < 500


def test_a_huge_profile_field_is_refused_before_any_callback(app):
    base, ws, invites = app
    rater = httpx.Client(base_url=base)
    assert rater.post("/rate/api/open", json={"invite": invites[0]}).json()["screen"] == "profile"
    huge = "pt," * 700_000  # 2 MB (the attack pass sent 50 MB)
    body = {"invite": invites[0], "native": "Yes", "linguist": "No", "languages": huge, "consent": True}
    assert rater.post("/rate/api/profile", json=body).status_code == 413
    chunked = rater.post("/rate/api/profile", content=iter([json.dumps(body).encode()[:200_000]] * 3),
                         headers={"content-type": "application/json"})  # no Content-Length: counted as it comes
    assert chunked.status_code == 413
    assert _rater_row(ws, invites[0]).consent_at is None  # nothing was stored
    # under the body limit but over the field's own limit: refused by the server, with a message
    reply = rater.post("/rate/api/profile", json={**body, "languages": "pt," * 2000}).json()
    assert reply["screen"] == "profile" and "at most 1000 characters" in reply["status"]
    assert _rater_row(ws, invites[0]).consent_at is None
    reply = rater.post("/rate/api/profile", json={**body, "languages": "pt, gn"}).json()
    assert reply["trial"]["number"] == 1 and _rater_row(ws, invites[0]).languages == ["pt", "gn"]


def test_profile_limits_hold_for_every_caller():
    check_profile(["pt", "gn"], {"age_band": "30-39"})
    for languages, profile in ((["x" * 61], None), ([f"l{i}" for i in range(21)], None), ([], {"bio": "x" * 5000})):
        with pytest.raises(BadInputError):
            check_profile(languages, profile)


def test_pseudonyms_are_long_and_a_collision_is_drawn_again(tmp_path, db_url, monkeypatch):
    """32-bit pseudonyms collided at 200,000 invites (IntegrityError); now 60 bits, and clashes are redrawn."""
    from study_helpers import build_study

    import db.studies as studies

    database, *_ = build_study(tmp_path, db_url, utterances=2)
    with database.session() as s:
        first = invite_raters(s, get_study(s, "pilot"), 50)
    assert len({r["pseudonym"] for r in first}) == 50
    assert all(len(r["pseudonym"]) >= 2 + 12 for r in first)  # "R-" + 12 base32 characters = 60 bits

    class Stuck:
        """A random source that repeats itself for a while (what a birthday collision looks like)."""

        def __init__(self):
            self.calls = 0

        def token_bytes(self, n):
            self.calls += 1
            return b"\x01" * n if self.calls <= 6 else real_secrets.token_bytes(n)

        def token_hex(self, n):
            self.calls += 1
            return "ab" * n if self.calls <= 6 else real_secrets.token_hex(n)

        def token_urlsafe(self, n):
            return real_secrets.token_urlsafe(n)

    monkeypatch.setattr(studies, "secrets", Stuck())
    with database.session() as s:
        invite_raters(s, get_study(s, "pilot"), 1)  # stores the value the source then repeats
    with database.session() as s:
        made = invite_raters(s, get_study(s, "pilot"), 5)
    with database.session() as s:
        names = s.scalars(select(Rater.pseudonym)).all()
    assert len(made) == 5 and len(names) == len(set(names)) == 56
    database.dispose()


def test_researchers_text_fields_are_bounded_too(workspace, monkeypatch):
    from webapp import admin as A
    from webapp.auth import AdminSession
    from webapp.config import load_config
    from webapp.context import make_context

    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    ctx = make_context(load_config(workspace.root, start_worker=False))
    admin = AdminSession(user="admin")
    with pytest.raises(BadInputError, match="longer than"):
        A.launch(ctx, admin, "selftest", '{"x": "' + "y" * 70_000 + '"}')
    with pytest.raises(BadInputError, match="longer than"):
        A.register_corpus(ctx, admin, "/" + "x" * 5000, "c", "", "")
    with pytest.raises(BadInputError, match="must be text"):
        A.create_study_job(ctx, admin, "s", {"not": "text"}, "", 10, 10)
