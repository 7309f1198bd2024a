"""The Results tab in a real browser: it shows the decision summary right after the Admin login with no extra
click, refreshes by itself as ratings arrive, has readable tables and plots, separate CSV downloads, and no
screen wider than a 390 px phone. Screenshots of each part go to screenshots/ (see app_helpers.screenshot).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from app_helpers import (
    BROWSER_MARKS,
    SCREEN_SIZES,
    WAIT_SECONDS,
    researcher_page,
    screenshot,
    screenshot_dir,
    served_app,
)

pytestmark = BROWSER_MARKS
sync_api = pytest.importorskip("playwright.sync_api")
WAIT_MS = int(WAIT_SECONDS * 1000)
NOT_WIDER = "document.documentElement.scrollWidth <= window.innerWidth"
SUMMARY_SAYS = "(text) => (document.querySelector('#obt-results-summary')?.innerText || '').includes(text)"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from study_helpers import simulate_raters

    from obt_eval.workspace import Workspace
    from pipelines.jobs import database
    from webapp.sample import make_sample_study

    root = tmp_path_factory.mktemp("results") / "ws"
    ws = Workspace.at(root)
    make_sample_study(ws, name="empty", utterances=2, seconds=0.3, raters=2)  # invited, nobody rated yet
    made = make_sample_study(ws, utterances=6, seconds=0.3, raters=0, target_ratings=6, trials_per_block=6)
    assert made["summary"]["blocks"] >= 6
    db = database(ws)
    simulate_raters(db, 4, {"mms-300m": 1.0}, seed=3, study="pilot")
    with served_app(root) as (base, config):
        yield {"base": base, "ws": ws, "db": db}


def _researcher(browser, base: str, size: str):
    phone = size == "phone"
    return researcher_page(browser, base, viewport=SCREEN_SIZES[size], is_mobile=phone, has_touch=phone,
                           device_scale_factor=2 if phone else 1)


def _summary_text(page) -> str:
    return page.locator("#obt-results-summary").inner_text()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_results_show_the_decision_first_without_extra_clicks_and_fit_the_screen(app, browser, size):
    context, page = _researcher(browser, app["base"], size)
    page.get_by_role("tab", name="Results").click()
    # no Refresh, no Show: the summary arrives because the researcher opened the tab
    page.wait_for_selector("#obt-results-summary .obt-verdict", timeout=WAIT_MS)
    assert "not logged in" not in page.locator("#obt-tab-results").inner_text()
    summary = _summary_text(page)
    assert "mms-300m" in summary and "MOS" in summary and "95 % CI" in summary and "p-value" in summary.lower()
    assert "4 raters" in summary.replace("\n", " ")
    assert "Screened out" in summary or "No rater flagged" in summary
    assert page.evaluate(NOT_WIDER), page.evaluate("document.documentElement.scrollWidth")
    screenshot(page, f"results-summary-{size}")

    # tables: human column names, headers never broken one letter per line, long model formulas wrapped
    page.wait_for_selector("#obt-results-tables table", timeout=WAIT_MS)
    headers = page.locator("#obt-results-tables th").all_inner_texts()
    for name in ("MOS (1–5)", "95 % CI", "Ratings", "Difference A − B (MOS points)", "p (Holm)"):
        assert name in headers, headers
    narrowest = page.evaluate("Math.min(...[...document.querySelectorAll('#obt-results-tables th')]"
                              ".map(th => th.getBoundingClientRect().width))")
    assert narrowest >= 60  # a header one letter wide was ~15 px
    cut = page.evaluate("[...document.querySelectorAll('#obt-results-tables td')]"
                        ".filter(td => td.scrollWidth > td.clientWidth + 1).map(td => td.innerText)")
    assert cut == []  # no cell is clipped (formulas wrap inside their cell)
    assert page.evaluate(NOT_WIDER)
    page.locator("#obt-results-tables").scroll_into_view_if_needed()
    page.locator("#obt-results-tables").screenshot(path=str(screenshot_dir() / f"results-tables-{size}.png"))

    # plots: real images, as wide as their box at most, nothing cropped by the page
    page.wait_for_selector("#obt-results-plots img", timeout=WAIT_MS)
    sizes = page.evaluate("[...document.querySelectorAll('#obt-results-plots img')].map(i => [i.naturalWidth,"
                          " i.getBoundingClientRect().right, window.innerWidth])")
    assert len(sizes) == 2 and all(w > 300 and right <= inner for w, right, inner in sizes), sizes
    page.locator("#obt-results-plots").scroll_into_view_if_needed()
    page.locator("#obt-results-plots").screenshot(path=str(screenshot_dir() / f"results-plots-{size}.png"))
    assert page.evaluate(NOT_WIDER)
    context.close()


def test_results_refresh_by_themselves_and_offer_each_table_as_its_own_csv(app, browser):
    from study_helpers import simulate_raters

    context, page = _researcher(browser, app["base"], "desktop")
    page.get_by_role("tab", name="Results").click()
    page.wait_for_function(SUMMARY_SAYS, arg="4 raters", timeout=WAIT_MS)
    kinds = page.eval_on_selector_all("#obt-results-links a", "els => els.map(a => a.dataset.kind)")
    assert {"ratings", "systems", "comparisons", "screening", "json"} <= set(kinds)
    link = "#obt-results-links a[data-kind='systems']"
    used = page.locator(link).get_attribute("href")
    with page.expect_download() as info:
        page.locator(link).click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert {r["system"] for r in rows} >= {"xlsr53", "mms-300m"} and all(1 <= float(r["mos"]) <= 5 for r in rows)
    # the used link is renewed on the page (each link works once)
    page.wait_for_function("([sel, used]) => { const a = document.querySelector(sel);"
                           " return !!a && a.getAttribute('href') !== used; }", arg=[link, used], timeout=WAIT_MS)

    simulate_raters(app["db"], 1, {"mms-300m": 1.0}, seed=9, study="pilot")  # a fifth rater finishes a block
    # no click: the tab's timer noticed the new ratings
    page.wait_for_function(SUMMARY_SAYS, arg="5 raters", timeout=WAIT_MS)
    context.close()


def test_the_results_tab_says_what_to_do_when_not_logged_in(app, browser):
    page = browser.new_page(viewport=SCREEN_SIZES["phone"])
    page.set_default_timeout(WAIT_MS)
    page.goto(app["base"])
    page.get_by_role("tab", name="Results").click()
    page.wait_for_function("() => (document.querySelector('#obt-results-status')?.innerText || '').includes('Admin')",
                           timeout=WAIT_MS)
    assert not page.locator("#obt-results-summary").is_visible() and not page.locator("#obt-results-study").is_visible()
    assert "mms-300m" not in page.content()
    assert page.evaluate(NOT_WIDER)
    screenshot(page, "results-logged-out-phone")
    page.close()


def test_a_study_without_ratings_says_what_to_do_next(app, browser):
    context, page = _researcher(browser, app["base"], "phone")
    page.get_by_role("tab", name="Results").click()
    page.wait_for_selector("#obt-results-summary .obt-verdict", timeout=WAIT_MS)  # the newest study: pilot
    page.locator("#obt-results-study input").click()
    page.get_by_role("option", name="empty").click()
    page.wait_for_function(SUMMARY_SAYS, arg="No ratings yet", timeout=WAIT_MS)
    text = _summary_text(page)
    assert "share the invitations from the Admin tab" in text and "2 raters invited" in text
    assert page.locator("#obt-results-tables").inner_text().strip() == ""
    assert page.locator("#obt-results-links a").count() == 0
    assert page.evaluate(NOT_WIDER)
    screenshot(page, "results-empty-phone")
    context.close()
