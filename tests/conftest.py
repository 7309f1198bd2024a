"""Fixtures shared by every test area; area-specific fixtures live in the area's own test files."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network: a Hub lookup must fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace, also set as $OBT_EVAL_HOME so CLI calls without --workspace use it."""
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.setenv("OBT_EVAL_HOME", str(root))
    from obt_eval.workspace import Workspace

    return Workspace.at(root)
