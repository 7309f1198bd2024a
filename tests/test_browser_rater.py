"""The rater's screens in a real browser (Playwright + Debian's Chromium), on a phone and on a desktop.

After every submit the new trial's "Trial n of N" heading must be on screen (a phone used to stay scrolled
down at the button), locked rating options must be disabled before both clips were played, feedback must
appear next to the button that caused it, and a rater with no block left is told the study is full
without a completion code. Screenshots of every screen go to screenshots/ (see app_helpers.screenshot).
"""

from __future__ import annotations

import re

import pytest
from app_helpers import BROWSER_MARKS, SCREEN_SIZES, WAIT_SECONDS, fill_profile, screenshot, served_app

pytestmark = BROWSER_MARKS
sync_api = pytest.importorskip("playwright.sync_api")
WAIT_MS = int(WAIT_SECONDS * 1000)
CODE = re.compile(r"[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}")
HEADING_IN_VIEW = """(before) => {
  const h = document.querySelector('#obt-counter .obt-trial-title');
  if (!h || h.textContent === before) return false;
  const r = h.getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
}"""
GRADIO_INTERNALS = re.compile(r"processing|queue:|\d+\.\d+/\d+\.\d+\s*s|Error", re.I)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from db.protocol import next_trial
    from db.studies import register_rater
    from obt_eval.workspace import Workspace
    from pipelines.jobs import database
    from webapp.sample import make_sample_study

    root = tmp_path_factory.mktemp("rater") / "ws"
    ws = Workspace.at(root)
    main = make_sample_study(ws, utterances=2, seconds=0.4, raters=2, target_ratings=2)
    assert main["summary"]["blocks"] == 2  # one block for the phone rater, one for the desktop rater
    full = make_sample_study(ws, name="tiny", utterances=2, seconds=0.4, raters=2, target_ratings=1)
    assert full["summary"]["blocks"] == 1
    holder, late = (i["invite_token"] for i in full["invites"])
    with database(ws).session() as s:  # the first rater of "tiny" takes its only block
        register_rater(s, holder, native_speaker=True, linguist=False, languages=["pt"], consent=True)
        assert next_trial(s, holder) is not None
    with served_app(root) as (base, config):
        yield {"base": base, "invites": [i["invite_token"] for i in main["invites"]], "late": late}


def _page(browser, size: str):
    phone = size == "phone"
    context = browser.new_context(viewport=SCREEN_SIZES[size], is_mobile=phone, has_touch=phone,
                                  device_scale_factor=2 if phone else 1)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return context, page


def _tap(page, selector: str, phone: bool) -> None:
    if phone:
        page.locator(selector).tap()
    else:
        page.locator(selector).click()


def _profile(page) -> None:
    page.wait_for_selector("#obt-profile", state="visible", timeout=WAIT_MS)
    fill_profile(page)


def _no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _heading(page) -> str:
    return page.locator("#obt-counter .obt-trial-title").inner_text()


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_a_rater_sees_each_new_trial_at_the_top_locked_until_played_and_feedback_by_its_button(app, browser, size):
    phone = size == "phone"
    context, page = _page(browser, size)
    page.goto(f"{app['base']}/rate")
    page.wait_for_selector("#obt-landing", state="visible", timeout=WAIT_MS)
    landing = page.locator("#obt-join").inner_text()
    assert "obt-eval" in landing and "Open the invitation link you received" in landing
    screenshot(page, f"rater-landing-{size}")

    page.goto(f"{app['base']}/rate?invite={app['invites'][0 if phone else 1]}")
    page.wait_for_selector("#obt-profile", state="visible", timeout=WAIT_MS)
    assert _no_sideways_scroll(page)
    screenshot(page, f"rater-profile-{size}")
    _profile(page)
    page.wait_for_function(HEADING_IN_VIEW, arg="", timeout=WAIT_MS)
    assert _no_sideways_scroll(page)
    numbers: list[int] = []
    while True:
        heading = _heading(page)
        n, total = map(int, re.fullmatch(r"Trial (\d+) of (\d+)", heading).groups())
        numbers.append(n)
        # locked: every rating option and the submit button disabled, with the reason beside the player
        page.wait_for_function("() => [...document.querySelectorAll('#obt-score-a input, #obt-score-b input')]"
                               ".every(i => i.disabled) && document.querySelector('#obt-submit').disabled",
                               timeout=WAIT_MS)
        assert page.locator("#obt-score-a input").count() == 5
        assert "unlock" in page.locator("#obt-lock").inner_text()
        opacity = page.evaluate("getComputedStyle(document.querySelector('#obt-score-a')).opacity")
        assert float(opacity) < 1  # it LOOKS locked too
        page.locator("#obt-score-a label").first.click(force=True)  # and a tap on a locked option chooses nothing
        assert not page.evaluate("[...document.querySelectorAll('#obt-score-a input')].some(i => i.checked)")
        assert not GRADIO_INTERNALS.search(page.locator("#obt-trial").inner_text())
        if n == 1:
            screenshot(page, f"rater-trial-locked-{size}")
        for slot in "AB":
            _tap(page, f"button.obt-play[data-slot='{slot}']", phone)
            page.wait_for_selector(f"button.obt-play.obt-played[data-slot='{slot}']", timeout=WAIT_MS)
        page.wait_for_function("() => !document.querySelector('#obt-submit').disabled", timeout=WAIT_MS)
        assert "Both recordings played" in page.locator("#obt-lock").inner_text()
        assert float(page.evaluate("getComputedStyle(document.querySelector('#obt-score-a')).opacity")) == 1
        page.locator("#obt-score-a input[value='4']").check()
        if n == 1:  # a submit with one score missing: the reason appears right under the button, on screen
            _tap(page, "#obt-submit", phone)
            page.wait_for_function(
                "() => { const n = document.querySelector('#obt-submit-note .obt-feedback');"
                " if (!n) return false; const r = n.getBoundingClientRect();"
                " return r.top >= 0 && r.bottom <= window.innerHeight; }", timeout=WAIT_MS)
            note = page.locator("#obt-submit-note").inner_text()
            assert "Rate both recordings" in note
            below = page.evaluate("document.querySelector('#obt-submit-note').getBoundingClientRect().top"
                                  " - document.querySelector('#obt-submit').getBoundingClientRect().bottom")
            assert 0 <= below < 60  # next to the button, not somewhere else on the page
            screenshot(page, f"rater-feedback-{size}")
        page.locator("#obt-score-b input[value='2']").check()
        if n == 1:
            screenshot(page, f"rater-trial-unlocked-{size}")
        _tap(page, "#obt-submit", phone)
        page.wait_for_function(
            "(before) => { const d = document.querySelector('#obt-done');"
            " if (d && d.offsetParent !== null) return true;"
            f" return ({HEADING_IN_VIEW})(before); }}", arg=heading, timeout=WAIT_MS)
        if page.locator("#obt-done").is_visible():
            break
        # the new trial: its heading is on screen (checked in the wait), says it saved, and nothing is left over
        assert "Saved" in page.locator("#obt-counter").inner_text()
        assert page.locator("#obt-submit-note").inner_text().strip() == ""
        if n == 1:
            screenshot(page, f"rater-next-trial-{size}")
    assert numbers == list(range(1, total + 1))  # n increments by one, every trial shown once
    done = page.locator("#obt-done").inner_text()
    assert CODE.search(done) and "Thank you" in done
    assert _no_sideways_scroll(page)
    screenshot(page, f"rater-completion-{size}")
    context.close()


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_a_rater_on_a_full_study_is_told_so_and_gets_no_completion_code(app, browser, size):
    context, page = _page(browser, size)
    page.goto(f"{app['base']}/rate?invite={app['late']}")
    page.wait_for_selector("#obt-profile:visible, #obt-done:visible", timeout=WAIT_MS)
    if page.locator("#obt-profile").is_visible():  # the first visit asks for consent; a second one goes on
        _profile(page)
    page.wait_for_selector("#obt-done", state="visible", timeout=WAIT_MS)
    text = page.locator("#obt-done").inner_text()
    assert "This study is full" in text and "contact the researcher" in text
    assert not CODE.search(text) and "completion code" not in text.lower()
    assert not page.locator("#obt-trial").is_visible()
    assert _no_sideways_scroll(page)
    screenshot(page, f"rater-study-full-{size}")
    context.close()
