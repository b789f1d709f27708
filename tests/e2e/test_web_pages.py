"""The pages in a real browser: Debian's headless Chromium, driven by Playwright, against the
service run by uvicorn on a free loopback port over a generated West Mercia history.

A VLO signs in by pasting a token, sees their open alerts oldest first (with JavaScript
switched off: the pages must work without it), marks one done, and it leaves the inbox.
An analyst opens a return and sees both charts; a unit reads its caseload on a phone-sized
screen. Screenshots land in ``test-artifacts/`` for a person to look at.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``, which
``scripts/browser`` installs (``scripts/test`` runs it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from consumers.interchange import InvalidDocument, parse_document
from infra.bootstrap import Tracker, bootstrap
from infra.generator import generate_history
from infra.http.access import Role
from infra.http.app import create_app
from infra.http.pages import COOKIE
from infra.http.services import Services
from projections.victim_alerts.projection import alerts_for, open_alert_counts
from tests.conftest import free_port, settings_for
from tests.http_support import OPERATOR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 390, "height": 844}


@dataclass
class Live:
    base_url: str
    tracker: Tracker
    tokens: dict[str, str]
    vlo: str


def _ingest_generated(tracker: Tracker) -> None:
    facts = []
    for line in generate_history("WM", 2002, 2006, 80, seed=11, invalid_lines=False):
        try:
            facts.append(parse_document(line))
        except InvalidDocument:
            continue
    service = tracker.ingest_service()
    for start in range(0, len(facts), 500):
        service.ingest(list(enumerate(facts[start : start + 500], start=start)))
    tracker.catch_up()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tracker = bootstrap(settings_for("sqlite", tmp_path_factory.mktemp("web")))
    _ingest_generated(tracker)
    app = create_app(tracker)
    services: Services = app.state.services
    with tracker.views.transaction() as tx:
        busiest = [name for name, open_, _ in open_alert_counts(tx) if name.startswith("VLO")]
    assert busiest, "the generated history raised no VLO alerts"
    vlo = busiest[0]
    tokens = {
        "vlo": services.issue_token(OPERATOR, Role.VLO, vlo, "Val Officer").secret,
        "analyst": services.issue_token(OPERATOR, Role.ANALYST, "*", "Ann Analyst").secret,
        "unit": services.issue_token(OPERATOR, Role.UNIT, "WM", "West Mercia unit").secret,
    }
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", tracker, tokens, vlo)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        tracker.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with scripts/browser (scripts/test does)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _sign_in(page: Any, live: Live, who: str) -> None:
    page.goto(f"{live.base_url}/login")
    page.fill("#token", live.tokens[who])
    page.click("main button[type=submit]")


def test_a_vlo_signs_in_sees_their_alerts_marks_one_done_and_it_leaves_the_inbox(
    browser: Any, live: Live
) -> None:
    # No JavaScript at all: the inbox must be usable without it.
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    _sign_in(page, live, "vlo")
    page.wait_for_url("**/pages/inbox")

    with live.tracker.views.transaction() as tx:
        expected = [a.alert.alert_id for a in alerts_for(tx, live.vlo)]
    shown = [
        str(element.get_attribute("id")).removeprefix("alert-")
        for element in page.locator("li.alert").all()
    ]
    assert shown == expected  # every open alert, oldest first
    assert len(shown) >= 2
    assert page.locator("h1").inner_text() == f"Inbox of {live.vlo}"
    assert page.locator("li.alert .tell").first.inner_text().startswith("Tell the victim:")
    page.screenshot(path=str(ARTIFACTS / "vlo-inbox.png"), full_page=True)

    first = shown[0]
    page.locator(f"#alert-{first} button").click()
    page.wait_for_url("**/pages/inbox?done=*")
    assert page.locator(f"#alert-{first}").count() == 0
    assert page.locator("li.alert").count() == len(shown) - 1
    assert first in page.locator(".notice").inner_text()
    page.screenshot(path=str(ARTIFACTS / "vlo-inbox-after-done.png"), full_page=True)

    with live.tracker.views.transaction() as tx:
        done = [a for a in alerts_for(tx, live.vlo, include_done=True) if a.alert.alert_id == first]
    assert done[0].done_by == "Val Officer"
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    context.close()


def test_an_analyst_opens_a_return_and_sees_both_charts(browser: Any, live: Live) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, live, "analyst")
    page.wait_for_url("**/pages/returns")
    page.select_option("#area", "WM")
    page.fill("#year", "2004")
    page.click("main button[type=submit]")
    page.wait_for_url("**/pages/areas/WM/returns/2004")

    assert page.locator("h1").inner_text().startswith("MAPPA statistical return 2004/05")
    charts = page.locator("figure svg")
    assert charts.count() == 2
    for index in range(2):
        box = charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
    captions = " ".join(page.locator("figure").all_inner_texts())
    assert "Chart 1" in captions and "Chart 2" in captions
    assert "document.cookie" not in page.content()
    assert page.evaluate("document.cookie") == ""  # the session cookie is out of scripts' reach
    page.screenshot(path=str(ARTIFACTS / "analyst-return.png"), full_page=True)
    context.close()


def test_a_unit_reads_its_caseload_on_a_phone(browser: Any, live: Live) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    _sign_in(page, live, "unit")
    page.wait_for_url("**/pages/areas/WM/caseload")
    assert page.locator("h1").inner_text() == "Caseload of West Mercia"
    assert page.locator("table").count() >= 2
    # Nothing is wider than the screen but the scrolling tables themselves.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "unit-caseload.png"), full_page=True)
    context.close()
