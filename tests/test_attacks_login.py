"""Password guessing: throttled per client with back-off, never a server-wide lock, never bypassed by new sessions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from app_helpers import PASSWORD, RawGradio, served_app

from db import open_database, throttle
from webapp.auth import AdminSession, check_password, client_address, client_key, parse_proxies

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen(monkeypatch):
    """The throttle's clock stands still: a back-off lasts as long as the test (no race with a slow machine)."""
    monkeypatch.setattr(throttle, "utcnow", lambda: T0)


@pytest.fixture
def database(db_url):
    db = open_database(db_url)  # SQLite and PostgreSQL (the conftest's db_url runs both)
    yield db
    db.dispose()


def test_back_off_grows_per_client_and_a_success_resets_it(database):
    waits = []
    with database.session() as s:
        for n in range(12):
            waits.append(throttle.record_failure(s, "login:203.0.113.5", now=T0 + dt.timedelta(seconds=n)))
        assert throttle.wait_seconds(s, "login:203.0.113.9", now=T0) == 0  # another client: no wait at all
    assert waits[:3] == [0, 0, 0]  # typos are free
    assert waits[3:7] == [2, 4, 8, 16]  # then each failure doubles the wait
    assert max(waits) <= throttle.MAX_DELAY.total_seconds() and waits == sorted(waits)
    with database.session() as s:
        assert throttle.wait_seconds(s, "login:203.0.113.5", now=T0 + dt.timedelta(seconds=11)) > 0
        throttle.record_success(s, "login:203.0.113.5")
        assert throttle.wait_seconds(s, "login:203.0.113.5", now=T0) == 0
        throttle.record_failure(s, "login:old", now=T0 - 2 * throttle.FORGET_AFTER)
        assert throttle.purge(s, now=T0) == 1 and throttle.failures(s, "login:old") == 0


def test_a_guessing_client_waits_and_everyone_else_logs_in_at_once(database, frozen):
    attacker, researcher = "198.51.100.66", "203.0.113.10"
    for n in range(50):  # a new session per guess: the count is per client, not per session
        try:
            assert not check_password(database, AdminSession(), f"guess-{n}", PASSWORD, attacker)
        except Exception as exc:  # noqa: BLE001 — once throttled, a guess is refused before it is checked
            assert "too many wrong passwords" in str(exc)
            break
    else:
        pytest.fail("fifty wrong passwords in a row were all checked")
    with pytest.raises(Exception, match="too many wrong passwords"):  # not even the right password gets through
        check_password(database, AdminSession(), PASSWORD, PASSWORD, attacker)
    session = AdminSession()
    assert check_password(database, session, PASSWORD, PASSWORD, researcher) and session.ok


def test_the_client_address_comes_from_a_trusted_proxy_only():
    proxies = parse_proxies("10.0.0.0/8, 127.0.0.1")
    # no proxy configured, or the peer is not one: the header is the client's own word, ignored
    assert client_address("198.51.100.1", "1.2.3.4") == "198.51.100.1"
    assert client_address("198.51.100.1", "1.2.3.4", proxies) == "198.51.100.1"
    # behind our proxies: the nearest hop that is not a proxy; what the client wrote left of it is ignored
    assert client_address("10.1.2.3", "203.0.113.7", proxies) == "203.0.113.7"
    assert client_address("10.1.2.3", "1.2.3.4, 203.0.113.7, 10.9.9.9", proxies) == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    with pytest.raises(ValueError):
        parse_proxies("10.0.0.0/8, not-an-ip")


def test_over_http_fifty_guesses_do_not_lock_out_the_researchers(tmp_path, frozen):
    from obt_eval.workspace import Workspace
    from webapp.sample import make_sample_study

    root = tmp_path / "ws"
    make_sample_study(Workspace.at(root), utterances=1, seconds=0.5, raters=0)
    with served_app(root) as (base, _config):
        index, _ = RawGradio(base).dependency("on_login")
        replies = []
        for n in range(50):  # every guess from a fresh session, as the attack pass did
            attacker = RawGradio(base, headers={"X-Forwarded-For": "198.51.100.66"})
            replies.append(json.dumps(attacker.call(index, [f"guess-{n}", None])))
        assert all("pilot" not in r for r in replies)
        # three free typos, a fourth failure, then every guess is refused before it is checked
        assert sum("too many wrong passwords" in r for r in replies) == 50 - throttle.FREE_FAILURES - 1
        blocked = RawGradio(base, headers={"X-Forwarded-For": "198.51.100.66"}).call(index, [PASSWORD, None])
        assert "pilot" not in json.dumps(blocked)
        spoofed = RawGradio(base, headers={"X-Forwarded-For": "203.0.113.99, 198.51.100.66"})
        assert "pilot" not in json.dumps(spoofed.call(index, [PASSWORD, None]))  # a forged hop changes nothing
        researcher = RawGradio(base, headers={"X-Forwarded-For": "203.0.113.10"})
        assert "pilot" in json.dumps(researcher.call(index, [PASSWORD, None]))  # at once, no global lock
