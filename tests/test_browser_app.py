"""Browser tests (Playwright + Debian's Chromium): a rater on a phone, a researcher running a job, leak scans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from app_helpers import BROWSER_MARKS, PASSWORD, WAIT_SECONDS, fill_profile, play_both_and_rate, served_app
from sqlalchemy import select

pytestmark = BROWSER_MARKS
sync_api = pytest.importorskip("playwright.sync_api")
# Every wait is on a condition in the page; the deadline only bounds a hang (a loaded 2-core machine is slow).
WAIT_MS = int(WAIT_SECONDS * 1000)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from obt_eval.corpus.ingest import ingest
    from obt_eval.demo_corpus import make_demo_corpus
    from obt_eval.workspace import Workspace
    from webapp.sample import make_sample_study

    root = tmp_path_factory.mktemp("browser") / "ws"
    ws = Workspace.at(root)
    made = make_sample_study(ws, utterances=2, seconds=0.5, raters=1)
    demo = make_demo_corpus(root.parent / "demo_src", speakers_per_language=1, sentences_per_language=2,
                            languages=("pt-br",))
    ingest(demo.wav_dir, "demo", ws, metadata=demo.metadata_path, progress=False)
    with served_app(root, start_worker=True) as (base, config):
        yield {"base": base, "config": config, "ws": ws, "invite": made["invites"][0]["invite_token"]}


def _system_secrets(ws) -> list[str]:
    """Every string that would tell a rater which system they hear, or where the clip came from."""
    from db.models import Stimulus, System
    from pipelines.jobs import database

    with database(ws).session() as s:
        systems = [n for n in s.scalars(select(System.name)) if n != "anchor"]
        stimuli = s.scalars(select(Stimulus)).all()
        paths = [Path(x.audio_path).name for x in stimuli] + [x.opaque_id for x in stimuli]
        sources = [Path(x.source_path).name for x in stimuli if x.source_path]
    return [*systems, *paths, *sources, "sample_sources", str(ws.root)]


def test_a_rater_completes_the_study_on_a_phone_and_learns_no_system_name(app, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)  # clicks and fills wait for their element as long as the waits do
    seen: list[tuple[str, dict, bytes]] = []

    def keep(response) -> None:
        try:
            body = response.body()
        except Exception:  # noqa: BLE001 — redirects and aborted requests have no body
            body = b""
        seen.append((response.url, dict(response.headers), body))

    page.on("response", keep)
    page.goto(f"{app['base']}/rate?invite={app['invite']}")
    page.wait_for_selector("#obt-profile", state="visible", timeout=WAIT_MS)
    assert page.locator("#obt-tabs").count() == 0 and page.url.split("?")[0].endswith("/rate")  # no researcher tabs
    fill_profile(page)
    page.wait_for_selector("#obt-trial", state="visible", timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    counters = []
    for _ in range(12):
        if page.locator("#obt-done").is_visible():
            break
        counter = re.search(r"Trial \d+ of \d+", page.locator("#obt-counter").inner_text()).group(0)
        counters.append(counter)
        # nothing to submit before listening
        page.wait_for_function("() => { const b = document.querySelector('#obt-submit'); return !!b && b.disabled; }",
                               timeout=WAIT_MS)
        play_both_and_rate(page, 4, 2)
        page.wait_for_function(
            "(before) => { const d = document.querySelector('#obt-done');"
            " if (d && d.offsetParent !== null) return true;"
            " const c = document.querySelector('#obt-counter');"
            " return !!c && /Trial [0-9]+ of [0-9]+/.test(c.innerText) && !c.innerText.includes(before); }",
            arg=counter, timeout=WAIT_MS)
    page.wait_for_selector("#obt-done", state="visible", timeout=WAIT_MS)
    code = re.search(r"[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}", page.locator("#obt-done").inner_text())
    assert code, page.locator("#obt-done").inner_text()
    total = int(re.search(r"of (\d+)", counters[0]).group(1))
    assert len(counters) == total

    # every response this browser received: page, config, event stream, audio — no system or file name
    secrets = _system_secrets(app["ws"])
    audio = [(url, headers, body) for url, headers, body in seen if re.search(r"/stim/[^/]+$", url)]
    assert len({url for url, _, _ in audio}) == 2 * total  # a fresh URL for every clip
    for url, headers, body in seen:
        for secret in secrets:
            assert secret not in url, (url, secret)
            assert secret.encode() not in body, (url, secret)
        assert "filename" not in headers.get("content-disposition", "")
    for url, headers, _body in audio:
        assert re.fullmatch(r".*/stim/[A-Za-z0-9_-]{32}", url) and headers["content-type"] == "audio/wav"

    from db.models import Rater, Rating, Trial
    from pipelines.jobs import database

    with database(app["ws"]).session() as s:
        rater = s.scalar(select(Rater).where(Rater.invite_token == app["invite"]))
        scores = s.scalars(select(Rating.score).join(Trial).where(Trial.rater_id == rater.id)).all()
    assert sorted(scores) == [2] * total + [4] * total  # no rating lost
    assert rater.native_speaker is True and rater.languages == ["pt-BR"]
    context.close()


def _open_admin(browser, base):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(base)
    page.get_by_role("tab", name="Admin").click()
    page.locator("#obt-password input").fill(PASSWORD)
    page.locator("#obt-login-btn").click()
    page.wait_for_selector("#obt-admin-panel", state="visible", timeout=WAIT_MS)
    return page


def test_a_researcher_logs_in_launches_a_job_and_sees_it_finish(app, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(app["base"])
    page.get_by_role("tab", name="Admin").click()
    page.locator("#obt-password input").fill("wrong")
    page.locator("#obt-login-btn").click()
    page.wait_for_function("() => document.querySelector('#obt-admin-status').innerText.includes('wrong password')",
                           timeout=WAIT_MS)
    assert not page.locator("#obt-admin-panel").is_visible()
    page.close()

    page = _open_admin(browser, app["base"])
    page.locator("#obt-console").get_by_text("Advanced: job console").click()  # folded away by default
    assert not page.locator("#obt-cancel").is_enabled()  # no job selected: nothing to cancel
    kind = page.locator("#obt-job-kind input")
    kind.click()
    page.get_by_role("option", name="extract").click()
    page.wait_for_function("() => document.querySelector('#obt-job-params').innerText.includes('encoder')",
                           timeout=WAIT_MS)
    editor = page.locator("#obt-job-params .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    editor.fill('{"corpus": "demo", "encoder": "mfcc"}')
    page.locator("#obt-launch").click()
    # the launched job is selected: its live state shows under the table (no "queued" message to go stale)
    page.wait_for_function("() => /Job [0-9]+: extract/.test(document.querySelector('#obt-job-info').innerText)",
                           timeout=WAIT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#obt-jobs [role=row]')].some(r => {"
        " const cells = r.innerText.split('\\n').map(x => x.trim()).filter(x => x);"
        " return cells[1] === 'extract' && cells[2] === 'done'; })", timeout=WAIT_MS)
    page.locator("#obt-jobs [role=row]", has_text="extract").first.get_by_text("extract", exact=True).click()
    page.wait_for_function("() => document.querySelector('#obt-job-log pre').innerText.trim().endsWith('job finished')",
                           timeout=WAIT_MS)  # the END of the log
    page.wait_for_function("() => document.querySelector('#obt-job-info').innerText.includes('stores')",
                           timeout=WAIT_MS)  # the artifacts
    assert not page.locator("#obt-cancel").is_enabled()  # a finished job cannot be cancelled
    store = Path(app["ws"].root) / "features" / "demo" / "mfcc" / "L-"
    assert (store / "index.parquet").exists()
    page.close()


def test_results_and_csv_export_show_the_ratings_to_researchers_only(app, browser):
    page = _open_admin(browser, app["base"])
    page.get_by_role("tab", name="Results").click()  # the results load by themselves: no refresh, no show button
    page.wait_for_function("() => document.querySelector('#obt-results-study input')?.value === 'pilot'",
                           timeout=WAIT_MS)
    page.wait_for_selector("#obt-results-links a[data-kind='ratings']", timeout=WAIT_MS)
    assert "Mean opinion score per system" in page.locator("#obt-results-tables").inner_text()
    href = page.locator("#obt-results-links a[data-kind='ratings']").get_attribute("href")
    with page.expect_download() as info:
        page.locator("#obt-results-links a[data-kind='ratings']").click()
    csv_text = Path(info.value.path()).read_text()
    header = csv_text.splitlines()[0].split(",")
    for column in ("study", "rater", "utterance", "system", "score", "trial", "position", "preference", "served_at",
                   "submitted_at"):
        assert column in header
    assert len(csv_text.strip().splitlines()) == 1 + 8  # the rater's 4 trials x 2 clips
    import httpx

    assert httpx.get(f"{app['base']}/{href}").status_code == 404  # one-time link
    page.close()
