"""Real PostgreSQL and Redis servers for the tests: which one to use, and whether its absence skips or fails.

`.ci/run` starts both servers and sets `OBT_EVAL_TEST_DB` (a PostgreSQL URL whose user may create
databases) and `OBT_EVAL_TEST_REDIS_URL` (a scratch Redis database that the tests empty; each pytest-xdist worker uses
a database of its own, see `worker_redis_url`). Under CI a
missing server, URL or driver fails the test; on a developer machine without the URLs those variants
skip and say how to run them.
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Iterator
from types import ModuleType

import pytest

ENV_TEST_DB = "OBT_EVAL_TEST_DB"
ENV_TEST_REDIS = "OBT_EVAL_TEST_REDIS_URL"


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(message: str) -> None:
    if under_ci():
        pytest.fail(f"{message} (CI must test the real server: see .ci/run)", pytrace=False)
    pytest.skip(message)


def require_url(env: str, what: str) -> str:
    url = os.environ.get(env, "").strip()
    if not url:
        _missing(f"the {what} variant needs ${env}; `bash .ci/run` starts a {what} server and sets it")
    return url


def require_module(name: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the {name} package is not installed: pip install -e '.[{extra}]'")
        raise  # not reached: _missing raises


def postgres_database() -> Iterator[str]:
    """A new, empty database on the test server for one test (dropped after it, even with open connections)."""
    base = require_url(ENV_TEST_DB, "PostgreSQL")
    require_module("psycopg2", "postgres")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"obt_test_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def worker_redis_url(url: str) -> str:
    """`url` for this pytest-xdist worker: worker gwN uses database (the URL's database + 1 + N), so that one
    worker emptying its database never drops the queue messages of a test running in another."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url  # not under xdist: the URL's own database
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + 1 + int(worker[2:])}"))


def redis_database() -> str:
    """The test Redis database, emptied (a queue message left by an earlier test must not reach this one)."""
    url = worker_redis_url(require_url(ENV_TEST_REDIS, "Redis"))
    redis = require_module("redis", "redis")
    client = redis.Redis.from_url(url, socket_connect_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
