"""Browser test (Playwright + Debian's Chromium) of the Admin tab's experiments, from the form to a rater's last trial.

A researcher runs the demo preset from the form (tiny vocoders, two study utterances), watches its stages
finish, reads the decision report inside the app, creates the listening study and copies an invitation; a
rater on a phone opens that invitation and completes the study. Every researcher screen is photographed at
1280 × 900 and 390 × 844 (into ``screenshots/``, or ``$OBT_EVAL_SCREENSHOTS``) and checked for sideways
scrolling on the phone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from app_helpers import BROWSER_MARKS, PASSWORD, WAIT_SECONDS, served_app

pytestmark = BROWSER_MARKS
sync_api = pytest.importorskip("playwright.sync_api")
WAIT_MS = int(WAIT_SECONDS * 1000)
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The longest run of sibling elements holding one character each: a string given where a list was expected
# (the old report printed every path letter by letter) makes one run per character of the path.
LETTER_RUN_JS = """(selector) => { let worst = 0;
  for (const el of document.querySelectorAll(selector + ', ' + selector + ' *')) {
    let run = 0;
    for (const child of el.children) {
      if ((child.innerText || '').trim().length === 1) { run += 1; worst = Math.max(worst, run); } else { run = 0; }
    }
  }
  return worst; }"""


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("OBT_EVAL_SCREENSHOTS") or Path(__file__).resolve().parent.parent / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page, name: str, section: str | None = None) -> None:
    """A screenshot of the whole page (or of one `section`) named after the screen and the viewport width,
    once the page has settled."""
    page.wait_for_function("() => !document.querySelector('.pending, .progress-text, .eta-bar')", timeout=WAIT_MS)
    path = str(screenshots_dir() / f"experiment-{name}-{page.viewport_size['width']}.png")
    if section:
        page.locator(section).screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=True)


def no_sideways_scroll(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= inner, f"the page scrolls sideways: {width} px wide in a {inner} px window"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from obt_eval.workspace import Workspace

    root = tmp_path_factory.mktemp("experiment") / "ws"
    private_tmp = tmp_path_factory.mktemp("worker-tmp")
    # Two job slots: the two encoders' stages run side by side. The slots are file locks in the temp folder,
    # shared by every worker of the machine (pipelines.slots); the worker this app starts gets a temp folder
    # of its own, so its jobs never wait behind another test run's jobs on a shared machine.
    changed = {"OBT_EVAL_GPUS": "2", "TMPDIR": str(private_tmp)}
    previous = {key: os.environ.get(key) for key in changed}
    os.environ.update(changed)
    try:
        with served_app(root, start_worker=True) as (base, config):
            yield {"base": base, "config": config, "ws": Workspace.at(root)}
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def researcher(browser, base: str, viewport: dict):
    context = browser.new_context(viewport=viewport, permissions=["clipboard-read", "clipboard-write"],
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base)
    page.get_by_role("tab", name="Admin").click()
    page.locator("#obt-password input").fill(PASSWORD)
    page.locator("#obt-login-btn").click()
    page.wait_for_selector("#obt-admin-panel", state="visible", timeout=WAIT_MS)
    return context, page


def fill_number(page, selector: str, value: str) -> None:
    box = page.locator(f"{selector} input")
    box.fill(value)
    box.blur()


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def phase(what: str, started: list[float] = []) -> None:  # noqa: B006 — the first call's time, kept across calls
    """Say how long each part took (pytest shows it with -s or on a failure; nothing is asserted on time)."""
    started[:1] = started[:1] or [time.monotonic()]
    print(f"[{time.monotonic() - started[0]:6.1f} s] {what}", flush=True)


def test_a_researcher_runs_an_experiment_from_the_form_and_a_rater_completes_its_study(app, browser):
    phase("app served; logging in")
    wide_ctx, wide = researcher(browser, app["base"], WIDE)
    phone_ctx, phone = researcher(browser, app["base"], PHONE)

    # the form: an empty workspace leads with the demo preset, corpora and encoders come from the server
    wide.wait_for_function("() => document.querySelector('#obt-exp-preset input').value.startsWith('demo')",
                           timeout=WAIT_MS)
    assert wide.locator("#obt-exp-name input").input_value() == "demo"
    assert "generated by the demo preset" in wide.locator("#obt-exp-corpus input").input_value()
    labels = wide.locator("#obt-exp-encoders label").all_inner_texts()
    assert any("mms-300m" in t and "CC-BY-NC-4.0" in t for t in labels), labels
    checked = [wide.locator("#obt-exp-encoders label", has_text=n).locator("input").is_checked()
               for n in ("mfcc", "logmel")]
    assert checked == [True, True]
    assert not wide.locator("#obt-exp-cancel").is_enabled()  # nothing selected: no destructive button
    for page in (wide, phone):
        shoot(page, "form")
        no_sideways_scroll(page)

    # a bad value is refused next to the Run button, with what to do, and no traceback
    ks = wide.locator("#obt-exp-ks input")
    ks.fill("fifty")
    wide.locator("#obt-exp-run").click()
    wide.wait_for_function("() => document.querySelector('#obt-exp-msg').innerText.includes('fifty')",
                           timeout=WAIT_MS)
    message = text_of(wide, "#obt-exp-msg")
    assert "write e.g." in message and "Traceback" not in message
    ks.fill("50")
    fill_number(wide, "#obt-exp-steps", "5")
    fill_number(wide, "#obt-exp-utts", "2")
    wide.locator("#obt-exp-run").click()
    phase("experiment started from the form")

    # the stage view follows the run, and the message beside Run follows the experiment's state
    wide.wait_for_function("() => document.querySelector('#obt-exp-msg').innerText.includes('is running')",
                           timeout=WAIT_MS)
    wide.wait_for_selector("#obt-stages tr.obt-stage-running", timeout=WAIT_MS)
    assert wide.locator("#obt-exp-cancel").is_enabled()
    # the phone's page (idle, so not polling, when the run began) shows it after a Refresh and follows it
    phone.locator("#obt-exp-refresh").click()
    phone.wait_for_function("() => document.querySelector('#obt-exp-pick input').value === 'demo'", timeout=WAIT_MS)
    phone.wait_for_selector("#obt-stages tr.obt-stage-running, #obt-stages tr.obt-stage-done", timeout=WAIT_MS)
    for page in (wide, phone):
        shoot(page, "running", "#obt-exp-view")
        no_sideways_scroll(page)
    wide.wait_for_function("() => document.querySelector('#obt-exp-summary').innerText.includes('done:')",
                           timeout=WAIT_MS)
    phase("experiment done")
    rows = wide.locator("#obt-stages tbody tr")
    assert rows.count() >= 10 and wide.locator("#obt-stages tr.obt-stage-done").count() == rows.count()
    assert "finished" in text_of(wide, "#obt-exp-msg")  # no stale "running" message
    assert not wide.locator("#obt-exp-cancel").is_enabled()
    log = wide.locator("#obt-exp-log pre").inner_text().strip()
    assert log.endswith("job finished"), log[-300:]  # the END of the last job's log

    # the decision report, inline, with its plots and its downloads
    wide.locator("#obt-report-btn").click()
    wide.wait_for_selector("#obt-report img[src^='data:image/png;base64,']", timeout=WAIT_MS)
    assert "Which encoder?" in text_of(wide, "#obt-report")
    assert wide.evaluate(LETTER_RUN_JS, "#obt-report-box") < 4
    assert str(app["ws"].root) not in wide.locator("#obt-report-downloads").inner_html()
    link = wide.locator("#obt-report-downloads a", has_text="JSON")
    with wide.expect_download() as info:
        link.click()
    report = json.loads(Path(info.value.path()).read_text())
    assert {c["name"] for c in report["input"]["contenders"]} == {"mfcc", "logmel"}
    phone.wait_for_function("() => !document.querySelector('#obt-report-btn button, #obt-report-btn').disabled",
                            timeout=WAIT_MS)
    phone.locator("#obt-report-btn").click()
    phone.wait_for_selector("#obt-report img", timeout=WAIT_MS)
    for page in (wide, phone):
        shoot(page, "report", "#obt-report-box")
        no_sideways_scroll(page)

    # the listening study: invitations with a Copy button that really copies
    fill_number(wide, "#obt-study-raters", "2")
    wide.locator("#obt-study-btn").click()
    wide.wait_for_function("() => document.querySelectorAll('#obt-invitations button.obt-copy').length === 2",
                           timeout=WAIT_MS)
    first = wide.locator("#obt-invitations button.obt-copy").first
    invite_url = first.get_attribute("data-link")
    assert "?invite=" in invite_url
    first.click()
    wide.wait_for_function("() => document.querySelector('#obt-invitations .obt-copied').innerText === 'Copied'",
                           timeout=WAIT_MS)
    assert wide.evaluate("navigator.clipboard.readText()") == invite_url
    fill_number(phone, "#obt-study-raters", "1")
    phone.locator("#obt-study-btn").click()
    phone.wait_for_selector("#obt-invitations button.obt-copy", timeout=WAIT_MS)
    for page in (wide, phone):
        shoot(page, "invitations", "#obt-study-box")
        no_sideways_scroll(page)

    # the job console, folded away, opens with a valid template and no destructive button armed
    for page in (wide, phone):
        page.locator("#obt-console").get_by_text("Advanced: job console").click()
        page.wait_for_function("() => document.querySelector('#obt-job-params').innerText.includes('seconds')",
                               timeout=WAIT_MS)
        assert page.locator("#obt-job-kind input").input_value() == "selftest"
        assert json.loads(page.locator("#obt-job-params .cm-content").inner_text()) == {"seconds": 3.0,
                                                                                          "fail": False}
        assert not page.locator("#obt-cancel").is_enabled()
        shoot(page, "console", "#obt-console")
        no_sideways_scroll(page)
    # the other folded sections fit a phone too: corpora (with segmentation) and studies
    for section, title in (("#obt-corpora-box", "Corpora"), ("#obt-studies-box", "Studies")):
        phone.locator(section).get_by_text(title, exact=True).first.click()
    phone.get_by_role("tab", name="A folder on the server").click()
    phone.wait_for_selector("#obt-segment-max", state="visible", timeout=WAIT_MS)
    assert "OBT_EVAL_DATA_ROOTS" in text_of(phone, "#obt-corpora-box")
    shoot(phone, "corpora", "#obt-corpora-box")
    no_sideways_scroll(phone)
    wide_ctx.close()
    phone_ctx.close()
    phase("report, study and console checked; a rater starts")

    rated = complete_study_on_a_phone(browser, invite_url)
    from sqlalchemy import select

    from db.models import Rater, Rating, Trial
    from pipelines.jobs import database

    with database(app["ws"]).session() as s:
        rater = s.scalar(select(Rater).where(Rater.invite_token == invite_url.split("?invite=")[1]))
        scores = s.scalars(select(Rating.score).join(Trial).where(Trial.rater_id == rater.id)).all()
    assert sorted(scores) == [3] * rated + [4] * rated  # every trial rated through the invitation, none lost
    phase(f"the rater completed {rated} trials")


def complete_study_on_a_phone(browser, url: str) -> int:
    """A rater opens the invitation on a phone and rates every trial (listening to both clips first); returns
    how many trials they rated."""
    """A rater opens the invitation on a phone and rates every trial (listening to both clips first)."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#obt-profile", state="visible", timeout=WAIT_MS)
    page.locator("#obt-native input[value='Yes']").check()
    page.locator("#obt-linguist input[value='No']").check()
    page.locator("#obt-languages textarea, #obt-languages input").first.fill("pt-BR")
    page.locator("#obt-consent input").check()
    page.locator("#obt-continue").click()
    page.wait_for_selector("#obt-trial", state="visible", timeout=WAIT_MS)
    rated = 0
    for _ in range(40):
        if page.locator("#obt-done").is_visible():
            break
        no_sideways_scroll(page)
        for slot in "AB":
            page.locator(f"button.obt-play[data-slot='{slot}']").tap()
            page.wait_for_selector(f"button.obt-play.obt-played[data-slot='{slot}']", timeout=WAIT_MS)
        page.wait_for_function("() => { const b = document.querySelector('#obt-submit'); return !!b && !b.disabled; }",
                               timeout=WAIT_MS)
        page.locator("#obt-score-a input[value='4']").check()
        page.locator("#obt-score-b input[value='3']").check()
        page.locator("#obt-submit").tap()
        rated += 1
        # the next trial (its clips not played yet) or the end
        page.wait_for_function(
            "() => { const d = document.querySelector('#obt-done');"
            " if (d && d.offsetParent !== null) return true;"
            " return !!document.querySelector('button.obt-play') && !document.querySelector('button.obt-played'); }",
            timeout=WAIT_MS)
    page.wait_for_selector("#obt-done", state="visible", timeout=WAIT_MS)
    assert rated >= 1
    assert "Traceback" not in page.locator("#obt-done").inner_text()
    context.close()
    return rated
