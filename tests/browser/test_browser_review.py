"""Officers at work in a real browser (Debian's chromium, a real uvicorn server, the test database).

An officer logs in, finds the urgent request at the top of the outbound queue, opens it and approves it;
a CONFIDENTIAL request needs a second, different officer (four eyes); an uncleared officer sees metadata
only; a POST without the CSRF token is refused; the queue shows new work without a reload. The queue and
message pages are saved as docs/screenshots/queue.png and message.png.

The messages are made over HTTP by the Slovenian police's agency client: SI's outbound queue is used by
these tests only, so "at the top" is a fact about this run.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_sessionmaker, unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.messages.work import drain
from tests.factories import Region

pytestmark = pytest.mark.browser

# The README's screenshots are refreshed with SPOC_UPDATE_SCREENSHOTS=1; otherwise they are still taken
# (the code path runs) but into a temporary folder, so a test run leaves the work tree as it was.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("SPOC_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="spoc-screenshots-"))
)
URGENT_DIRECT = {
    "level": "urgent",
    "urgency_reason": "threat-to-life-or-physical-integrity",
    "urgency_explanation": "A missing 15-year-old was last seen in a van with Croatian plates near Obrežje.",
    "information_access": "direct",
}


def _agency(live_server: str, region: Region, agency_id: str = "SI-POL") -> AgencyClient:
    return AgencyClient(live_server, region.seed.agencies[agency_id])


def _submit(client: AgencyClient, payload: bytes, **build: Any) -> str:
    envelope = client.build(payload=payload, destination_country="HR", **build)
    message_id: str = client.submit(envelope)["message_id"]
    return message_id


def _inbound_for_si(live_server: str, region: Region, settings: Settings, engine: Engine) -> str:
    """An urgent request from the Croatian police, approved by HR and forwarded into SI's inbound queue."""
    with _agency(live_server, region, "HR-POL") as croatia:
        envelope = croatia.build(
            payload=b'{"q": "SIM cards bought with the same passport"}',
            destination_country="SI",
            category="trafficking-in-human-beings",
            priority={**URGENT_DIRECT, "information_access": "indirect"},
        )
        message_id: str = croatia.submit(envelope)["message_id"]
    with OfficerClient(live_server, "hr-officer", region.password("hr-officer")) as hr:
        hr.decide(message_id, "approve")
    with unit_of_work(make_sessionmaker(engine)) as session:  # what the worker does
        drain(session, DatabaseKeyStore(session, MasterKey.from_secret(settings.master_key_secret())))
    return message_id


def log_in(page: Any, region: Region, username: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(region.password(username))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/queue")


def test_an_officer_finds_the_urgent_request_on_top_opens_it_and_approves_it(
    browser_page: Any, live_server: str, region: Region, settings: Settings, engine: Engine
) -> None:
    page = browser_page
    inbound = _inbound_for_si(live_server, region, settings, engine)
    with _agency(live_server, region) as police:
        _submit(police, b'{"q": "owner of vehicle ZG-1234-AB"}', category="drug-trafficking")
        _submit(
            police,
            b'{"q": "transfers above EUR 10 000 from account SI56 1234"}',
            category="money-laundering",
            classification="CONFIDENTIAL",
        )
        urgent = _submit(
            police,
            b'{"q": "registered keeper and last known address for ZG-4711-KP", "case": "SI-2025-0815"}',
            category="kidnapping",
            priority=URGENT_DIRECT,
        )
        log_in(page, region, "si-officer")
        outbound = page.locator("#h-outbound").locator("xpath=..")
        first = outbound.locator("tbody tr").first
        assert "URGENT" in first.inner_text()
        assert first.locator("a", has_text="Open").get_attribute("href") == f"/ui/messages/{urgent}"
        assert re.search(r"7 h \d+ min", first.inner_text())  # eight hours from submission, ticking
        assert page.locator(f'#h-inbound ~ table a[href="/ui/messages/{inbound}"]').count() == 1
        page.screenshot(path=str(SCREENSHOTS / "queue.png"))

        first.get_by_role("link", name="Open").click()
        page.wait_for_url(f"**/ui/messages/{urgent}")
        assert page.get_by_text("Necessary to prevent an imminent threat to the life").is_visible()
        assert "ZG-4711-KP" in page.locator("pre.payload").inner_text()
        assert page.locator(".sig-ok").first.is_visible()  # the originator's signature, checked

        page.get_by_role("button", name="Approve", exact=True).click()
        page.wait_for_url("**/ui/queue?done=approve&m=*")
        assert police.status(urgent)["state"] == "forwarded"
        assert "Approved and forwarded to Croatia (HR)." in page.get_by_role("status").first.inner_text()
        assert page.locator(f'#queue-live a[href="/ui/messages/{urgent}"]').count() == 0  # left the queue

    # The inbound request from Croatia: three hops, each signature checked; the inbound decisions.
    page.goto(f"/ui/messages/{inbound}")
    assert page.locator(".sig-ok").count() == 3
    assert page.get_by_role("button", name="Route").is_visible()
    assert page.locator(
        'select[name="refusal_ground"]'
    ).is_visible()  # refusal grounds of Art. 6, a closed list
    page.screenshot(path=str(SCREENSHOTS / "message.png"), full_page=True)


def test_four_eyes_and_an_uncleared_officer_in_the_browser(
    chromium: Any, browser_page: Any, live_server: str, region: Region
) -> None:
    with _agency(live_server, region) as police:
        secret = _submit(
            police,
            b'{"q": "accounts held by the suspect", "iban": "SI56 0000 0000 0000 000"}',
            category="money-laundering",
            classification="CONFIDENTIAL",
        )
        low = browser_page
        log_in(low, region, "si-officer")  # cleared RESTRICTED
        low.goto(f"/ui/messages/{secret}")
        assert low.get_by_text("Metadata only.").is_visible()
        assert "CONFIDENTIAL content: your clearance is RESTRICTED" in low.locator("main").inner_text()
        assert low.locator("pre.payload").count() == 0
        assert low.locator("#h-decide").count() == 0  # no decisions for what one cannot read

        first = chromium.new_context(base_url=live_server)
        try:
            page = first.new_page()
            log_in(page, region, "si-officer2")  # CONFIDENTIAL
            page.goto(f"/ui/messages/{secret}")
            assert "SI56" in page.locator("pre.payload").inner_text()
            page.get_by_role("button", name="Approve", exact=True).click()
            page.wait_for_url("**/ui/queue?done=approve&m=*")
            assert police.status(secret)["state"] == "origin_review"
            page.goto(f"/ui/messages/{secret}")
            assert "si-officer2" in page.locator("dl.meta").inner_text()  # approved by
            assert page.get_by_role("button", name="Approve").count() == 0  # not twice by the same officer
            assert page.get_by_role("button", name="Give second approval").count() == 0
        finally:
            first.close()

        second = chromium.new_context(base_url=live_server)
        try:
            page = second.new_page()
            log_in(page, region, "si-supervisor")
            page.goto(f"/ui/messages/{secret}")
            page.get_by_role("button", name="Give second approval").click()
            page.wait_for_url("**/ui/queue?done=approve&m=*")
            assert police.status(secret)["state"] == "forwarded"
        finally:
            second.close()


def test_a_post_without_the_csrf_token_is_refused(
    browser_page: Any, live_server: str, region: Region
) -> None:
    page = browser_page
    with _agency(live_server, region) as police:
        message_id = _submit(police, b'{"q": "csrf"}', category="fraud")
        log_in(page, region, "si-officer")
        forged = page.request.post(f"/ui/messages/{message_id}/decide", form={"action": "approve"})
        assert forged.status == 403
        assert "CSRF" in forged.text()
        assert police.status(message_id)["state"] == "origin_review"
        page.goto(f"/ui/messages/{message_id}")
        token = page.locator('input[name="csrf"]').first.get_attribute("value")
        wrong = page.request.post(
            f"/ui/messages/{message_id}/decide", form={"action": "approve", "csrf": token[::-1]}
        )
        assert wrong.status == 403
        assert police.status(message_id)["state"] == "origin_review"


def test_the_queue_shows_new_work_without_a_reload(
    browser_page: Any, live_server: str, region: Region
) -> None:
    page = browser_page
    with _agency(live_server, region) as police:
        log_in(page, region, "si-officer")
        page.evaluate("window.__same_page = true")
        arrived = _submit(police, b'{"q": "new work"}', category="cybercrime")
        page.locator(f'a[href="/ui/messages/{arrived}"]').wait_for(timeout=15_000)
        assert page.evaluate("window.__same_page") is True  # swapped in place, not reloaded
        assert "Updated at" in page.locator("#live-status").inner_text()


def _tab_to(page: Any, script: str, *, most: int = 300) -> None:
    """Press Tab until ``script`` (a JS expression on document.activeElement ``el``) is true."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const el = document.activeElement; return Boolean({script}); }})()"):
            return
    raise AssertionError(f"Tab never reached an element where {script}")


def test_an_officer_can_do_the_whole_job_with_the_keyboard(
    browser_page: Any, live_server: str, region: Region
) -> None:
    page = browser_page
    with _agency(live_server, region) as police:
        urgent = _submit(police, b'{"q": "keyboard only"}', category="kidnapping", priority=URGENT_DIRECT)
        page.goto("/ui/login")
        assert page.evaluate("document.activeElement.name") == "username"  # focused on arrival
        page.keyboard.type("si-officer")
        page.keyboard.press("Tab")
        page.keyboard.type(region.password("si-officer"))
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui/queue")
        page.keyboard.press("Tab")  # the first stop of the page is the skip link
        assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

        _tab_to(page, f"el.getAttribute('href') === '/ui/messages/{urgent}'")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/ui/messages/{urgent}")
        _tab_to(page, "el.tagName === 'BUTTON' && el.textContent.trim() === 'Approve'")
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui/queue?done=approve&m=*")
        assert police.status(urgent)["state"] == "forwarded"
        assert "Approved and forwarded to Croatia (HR)." in page.get_by_role("status").first.inner_text()
