"""Uploads: refused without a researcher login, bounded in size and count, deleted after use or by age."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from app_helpers import PASSWORD, RawGradio, served_app

from webapp.uploads import sweep, upload_folder

MAX_FILES = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from obt_eval.workspace import Workspace
    from webapp.sample import make_sample_study

    root = tmp_path_factory.mktemp("uploads") / "ws"
    make_sample_study(Workspace.at(root), utterances=1, seconds=0.5, raters=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(root.parent / "gradio"))  # this app's own upload folder
        mp.setenv("OBT_EVAL_UPLOAD_MAX_MB", "1")
        mp.setenv("OBT_EVAL_UPLOAD_MAX_FILES", str(MAX_FILES))
        with served_app(root) as (base, config):
            yield base, config


def _uploads() -> set[Path]:
    folder = upload_folder()
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _researcher(base: str) -> tuple[RawGradio, httpx.Client]:
    """Log in over Gradio's protocol, then trade the ticket for the cookie, as the page's JS does."""
    gradio = RawGradio(base, headers={"X-Forwarded-For": "203.0.113.20"})
    index, dep = gradio.dependency("on_login")
    reply = gradio.call(index, [PASSWORD, None])
    ticket_id = next(c["id"] for c in gradio.config["components"] if c.get("props", {}).get("elem_id")
                     == "obt-upload-ticket")
    value = reply["output"]["data"][dep["outputs"].index(ticket_id)]
    ticket = value.get("value") if isinstance(value, dict) else value
    assert ticket and "pilot" in json.dumps(reply)
    browser = httpx.Client(base_url=base, timeout=30)
    assert browser.post("/auth/researcher", json={"ticket": "forged.123.abc"}).status_code == 403
    assert browser.post("/auth/researcher", json={"ticket": ticket}).status_code == 204
    cookie = next(c for c in browser.cookies.jar if c.name == "obt_researcher")
    assert cookie.has_nonstandard_attr("HttpOnly")  # page scripts cannot read it
    return gradio, browser


def _wav(size_seconds: float = 0.5) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(np.arange(int(16000 * size_seconds)) / 5)).astype(np.float32), 16000,
             format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_anonymous_clients_cannot_upload_anything(app):
    base, _ = app
    before = _uploads()
    anonymous = httpx.Client(base_url=base, timeout=30)
    for route, field in (("/gradio_api/upload", "files"), ("/gradio_api/process_recording", "video"),
                         ("/gradio_api/component_server", "files")):
        reply = anonymous.post(route, files={field: ("x.wav", _wav())})
        assert reply.status_code == 403, (route, reply.status_code, reply.text[:200])
    forged = httpx.Client(base_url=base, timeout=30, cookies={"obt_researcher": "YWRtaW4.9999999999.AAAA"})
    assert forged.post("/gradio_api/upload", files={"files": ("x.wav", _wav())}).status_code == 403
    assert _uploads() == before  # nothing stored, so nothing to download back


def test_a_researcher_uploads_within_limits_and_the_files_go_once_used(app):
    base, config = app
    gradio, browser = _researcher(base)
    before = _uploads()
    big = b"\0" * (config.upload_max_bytes + 1)
    assert browser.post("/gradio_api/upload", files={"files": ("big.wav", big)}).status_code == 413
    assert _uploads() == before
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n\r\n'
    chunked = browser.post("/gradio_api/upload", content=iter([head, big[:500_000], big[500_000:]]),
                           headers={"Content-Type": "multipart/form-data; boundary=b"})  # no Content-Length
    assert chunked.status_code == 413
    assert _uploads() == before
    crowd = [("files", (f"f{i}.wav", _wav(0.1))) for i in range(MAX_FILES + 1)]
    assert browser.post("/gradio_api/upload", files=crowd).status_code == 413
    assert _uploads() == before  # refused uploads left no partial files
    reply = browser.post("/gradio_api/upload", files=[("files", ("a.wav", _wav())), ("files", ("b.wav", _wav()))])
    assert reply.status_code == 200, reply.text
    stored = [Path(p) for p in reply.json()]
    assert all(p.exists() for p in stored)
    index, dep = gradio.dependency("on_upload")
    files = [{"path": str(p), "orig_name": p.name, "meta": {"_type": "gradio.FileData"}} for p in stored]
    done = gradio.call(index, [None, files, "field_rec", False, 2.0, 15.0, "silero"])  # no segmentation
    assert "ingest job" in json.dumps(done), done
    corpus = Path(config.workspace.root) / "uploads" / "field_rec"
    assert sorted(p.name for p in corpus.iterdir()) == ["a.wav", "b.wav"]
    assert not any(p.exists() for p in stored)  # the uploads were deleted once used
    leaked = _uploads() - before  # what Gradio itself leaves (empty temp files): gone by age
    assert all(p.stat().st_size == 0 for p in leaked)
    sweep(set(), config.upload_ttl_seconds, now=time.time() + 2 * config.upload_ttl_seconds)
    assert _uploads() == before


def test_uploads_nobody_used_are_deleted_by_age(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    folder = upload_folder() / "abc123"
    folder.mkdir(parents=True)
    old, new = folder / "old.wav", folder / "new.wav"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    tracked = {str(old), str(new), str(tmp_path / "gone.wav")}
    outside = tmp_path / "not-an-upload.wav"
    outside.write_bytes(b"z")
    os.utime(outside, (hour_ago, hour_ago))
    tracked.add(str(outside))
    assert sweep(tracked, max_age_seconds=1800) == 1
    assert not old.exists() and new.exists() and outside.exists()  # only uploads, only old ones
    assert tracked == {str(new), str(outside)}


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="Chromium not installed at /usr/bin/chromium")
def test_a_researcher_uploads_through_the_page(app, tmp_path):
    """The login hands the browser its upload cookie (HttpOnly), and the page's own upload then works."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from app_helpers import CHROMIUM, CHROMIUM_ARGS

    base, config = app
    wav = tmp_path / "chapter01.wav"
    wav.write_bytes(_wav())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(base)
        page.get_by_role("tab", name="Admin").click()
        page.locator("#obt-password input").fill(PASSWORD)
        page.locator("#obt-login-btn").click()
        page.wait_for_selector("#obt-admin-panel", state="visible", timeout=30000)
        deadline = time.monotonic() + 15
        while not any(c["name"] == "obt_researcher" for c in context.cookies()) and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        cookie = next(c for c in context.cookies() if c["name"] == "obt_researcher")
        assert cookie["httpOnly"] and page.evaluate("document.cookie").find("obt_researcher") == -1
        page.get_by_text("Corpora", exact=True).click()
        page.get_by_role("tab", name="Upload recordings").click()
        page.locator("#obt-upload-files input[type=file]").set_input_files(str(wav))
        page.wait_for_function("() => document.querySelector('#obt-upload-files').innerText.includes('chapter01')",
                               timeout=15000)
        page.locator("#obt-upload-name textarea, #obt-upload-name input").first.fill("from_page")
        page.locator("#obt-upload-btn").click()
        page.wait_for_function("() => document.querySelector('#obt-ingest-msg').innerText.includes('ingest job')",
                               timeout=30000)
        assert (Path(config.workspace.root) / "uploads" / "from_page" / "chapter01.wav").exists()
        browser.close()
