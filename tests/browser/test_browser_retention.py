"""The compliance review in a real browser (Debian's chromium, a real uvicorn server, the test database).

Three exchanges of Kosovo's case file are made the way users make them (agencies' signed calls, officers'
decisions, the outbox drained as a worker does) and then moved 200 days back in the database, so that they
ended long enough ago to wait for review (tests/broker/retention/scenario.py). An XK officer opens
*Compliance review* from the navigation and finds them; a hold without a reason is stopped by the browser and,
with the ``required`` attribute taken away, refused by the server with the reason shown; a hold with a reason
stands. Another exchange is deleted with the keyboard after its confirmation, and its request's page then says
when the content was deleted and shows none of it. An XK auditor cancels a *Delete now…* (nothing is deleted)
and keeps the third exchange, which leaves the queue. Every page fits a 1366 px laptop screen. The queue and the
deleted message are saved as docs/screenshots/compliance-review.png and content-deleted.png (with
SPOC_UPDATE_SCREENSHOTS=1, see test_browser_review).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from broker.db import make_sessionmaker, unit_of_work
from broker.messages.models import Message
from tests.broker.retention.scenario import (
    Exchange,
    answered_exchange,
    backdate,
    committed,
    person_content,
)
from tests.browser.test_browser_review import SCREENSHOTS, _tab_to, log_in
from tests.factories import Region

pytestmark = pytest.mark.browser

OFFICER = "xk-officer"
ENDED_DAYS_AGO = 200  # past the review queue's 183 days, well inside the 3-year retention period


@dataclass(frozen=True)
class Ended:
    """Exchanges of XK's case file that ended ``ENDED_DAYS_AGO`` days ago: one per test."""

    to_hold: Exchange
    to_delete: Exchange
    to_keep: Exchange


@pytest.fixture(scope="module")
def ended(app: FastAPI, region: Region) -> Iterator[Ended]:
    with TestClient(app) as client:
        made = Ended(
            to_hold=answered_exchange(
                client,
                region,
                sender="XK-KP",
                responder="ME-UP",
                payload=person_content("Extradition file: addresses used in Podgorica since 2021."),
            ),
            to_delete=answered_exchange(
                client,
                region,
                sender="XK-KP",
                responder="MK-MOI",
                payload=person_content("Known vehicles: a grey Škoda Octavia, plates PR-7731-KS."),
                answer=person_content("Registered keeper: a rental firm in Tetovo."),
            ),
            to_keep=answered_exchange(
                client,
                region,
                sender="XK-KP",
                responder="AL-ASP",
                payload=person_content("Phone numbers used at the Vërmica crossing."),
            ),
        )
        for x in (made.to_hold, made.to_delete, made.to_keep):
            backdate(client, x.conversation_id, ENDED_DAYS_AGO)
            _move_deadlines_back(client, x.conversation_id, ENDED_DAYS_AGO)
        yield made


def _move_deadlines_back(client: TestClient, conversation_id: str, days: int) -> None:
    """The requests' deadlines go back with their times (what the message page shows beside them)."""
    with committed(client) as session:
        for message in session.scalars(select(Message).where(Message.conversation_id == conversation_id)):
            if message.deadline_at is not None:
                message.deadline_at -= timedelta(days=days)


def _fits_the_screen(page: Any) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[1] == 1366
    assert widths[0] <= widths[1], f"{page.url} is {widths[0]} px wide in a {widths[1]} px window"


def _open_the_queue(page: Any) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Compliance review").click()
    page.wait_for_url("**/ui/retention")


def _row(page: Any, x: Exchange) -> Any:
    return page.locator(f'[id="x-{x.conversation_id}"]')


def test_an_officer_finds_the_queue_and_sets_a_legal_hold_only_with_a_reason(
    browser_page: Any, region: Region, ended: Ended
) -> None:
    page = browser_page
    log_in(page, region, OFFICER)
    _open_the_queue(page)
    assert page.get_by_role("heading", name="Compliance review", exact=True).is_visible()
    assert "of XK-SPOC's case file that ended 183 days ago or more" in page.locator("main").inner_text()
    for x in (ended.to_hold, ended.to_delete, ended.to_keep):
        row = _row(page, x)
        assert row.is_visible()
        assert row.get_by_role("link", name=x.conversation_id[:8]).is_visible()
        assert x.request_id[:8] in row.inner_text()
        assert x.answer_id[:8] in row.inner_text()
    assert "MK · XK" in _row(page, ended.to_delete).inner_text()  # the countries of the exchange
    _fits_the_screen(page)

    # "Hold" in the queue without a reason: the server refuses it and says why, on the exchange's page
    target = ended.to_hold.conversation_id
    with page.expect_response(f"**/ui/retention/{target}/review") as refused:
        _row(page, ended.to_hold).get_by_role("button", name="Hold").click()
    assert refused.value.status == 422
    assert "a legal hold needs a reason" in page.get_by_role("alert").inner_text()
    assert page.get_by_role("heading", name=f"Exchange {target}").is_visible()

    # the hold form there: the browser stops an empty reason (nothing is sent)...
    form = page.locator("form", has=page.get_by_role("heading", name="Set a legal hold"))
    reason = form.get_by_label("Reason")
    page.evaluate("window.__same_page = true")
    form.get_by_role("button", name="Hold").click()
    assert reason.evaluate("el => el.validity.valueMissing") is True
    assert page.evaluate("window.__same_page") is True  # not submitted
    # ... and without the attribute, the server refuses a reason of blanks
    reason.evaluate("el => el.removeAttribute('required')")
    reason.fill("   ")
    with page.expect_response(f"**/ui/retention/{target}/hold") as refused:
        form.get_by_role("button", name="Hold").click()
    assert refused.value.status == 422
    said = page.get_by_role("alert").inner_text()
    assert "a legal hold needs a reason (the case, the order or the rule that requires it)" in said
    assert page.get_by_role("status").count() == 0  # nothing claims it was done

    form = page.locator("form", has=page.get_by_role("heading", name="Set a legal hold"))
    form.get_by_label("Reason").fill("Extradition proceedings K-44/25 pending in Podgorica")
    form.get_by_role("button", name="Hold").click()
    page.wait_for_url(f"**/ui/retention/{target}?done=hold")
    assert "Legal hold set" in page.get_by_role("status").inner_text()
    assert page.get_by_role("alert").count() == 0
    assert page.locator("h1 .badge", has_text="held").is_visible()
    holds = page.locator("section", has=page.get_by_role("heading", name="Legal holds")).inner_text()
    assert f"{OFFICER} (officer, XK-SPOC)" in holds
    assert "Extradition proceedings K-44/25 pending in Podgorica" in holds
    assert page.get_by_role("button", name="Release").is_visible()  # the officer's own hold
    _fits_the_screen(page)

    # held data cannot be deleted: the confirmation says so and offers no button
    page.goto(f"/ui/retention/{target}?confirm=delete#confirm-delete")
    confirm = page.locator("#confirm-delete")
    assert "under legal hold" in confirm.inner_text()
    assert confirm.get_by_role("button").count() == 0

    page.get_by_role("link", name="Back to the compliance review").first.click()
    page.wait_for_url("**/ui/retention")
    assert _row(page, ended.to_hold).locator(".badge", has_text="held").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "compliance-review.png"), full_page=True)


def test_delete_now_with_the_keyboard_after_confirming_leaves_no_content(
    browser_page: Any, region: Region, engine: Engine, ended: Ended
) -> None:
    page = browser_page
    x = ended.to_delete
    log_in(page, region, OFFICER)
    page.goto(f"/ui/messages/{x.request_id}")
    assert "PR-7731-KS" in page.locator(".payload-fields").inner_text()  # the content, before

    page.goto("/ui/queue")
    _tab_to(page, "el.getAttribute('href') === '/ui/retention'")  # Compliance review, in the navigation
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/retention")
    confirm_url = f"/ui/retention/{x.conversation_id}?confirm=delete#confirm-delete"
    _tab_to(page, f"el.getAttribute('href') === '{confirm_url}'")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Delete now…"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{confirm_url}")

    # a confirmation, not yet a deletion; the next Tab stop is its button
    confirm = page.get_by_role("region", name="Delete the content of this exchange now?")
    assert f"request {x.request_id[:8]}, response {x.answer_id[:8]}." in confirm.inner_text()  # which
    assert "The content of its 2 messages is deleted irrevocably." in confirm.inner_text()
    assert _deleted_at(engine, x.request_id) is None
    _fits_the_screen(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Delete the content irrevocably"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/retention/{x.conversation_id}?done=delete")
    assert "the content of the exchange was deleted" in page.get_by_role("status").inner_text()
    deleted_at = _deleted_at(engine, x.request_id)
    assert deleted_at is not None
    assert page.locator("table").inner_text().count("Content deleted on") == 2  # the request and its answer
    assert page.locator("#h-review").count() == 0  # nothing left to review

    _tab_to(page, f"el.getAttribute('href') === '/ui/messages/{x.request_id}'")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/messages/{x.request_id}")
    notice = page.locator("#content-deleted")
    assert notice.is_visible()
    assert f"Content deleted on {deleted_at:%Y-%m-%d} under the retention rules." in notice.inner_text()
    assert page.locator(".payload-fields, pre.payload").count() == 0
    main = page.locator("main").inner_text()
    for gone in ("PR-7731-KS", "Škoda", "Vranješević"):
        assert gone not in main
    retention = page.locator("#retention").inner_text()
    assert "The content of this exchange was deleted under the retention rules." in retention
    assert page.get_by_text("Set a legal hold").count() == 0  # nothing left to hold
    _fits_the_screen(page)
    box = page.locator("#retention").bounding_box()  # the header, the content and the retention: the point
    page.screenshot(
        path=str(SCREENSHOTS / "content-deleted.png"),
        clip={"x": 0, "y": 0, "width": 1366, "height": box["y"] + box["height"] + 16},
    )

    _open_the_queue(page)
    assert _row(page, x).count() == 0  # reviewed: off the queue


def test_cancel_deletes_nothing_and_keep_takes_the_exchange_off_the_queue(
    browser_page: Any, region: Region, engine: Engine, ended: Ended
) -> None:
    page = browser_page
    x = ended.to_keep
    page.goto("/ui/login")  # an auditor of XK: the same queue, for the country
    page.get_by_label("Username").fill("xk-auditor")
    page.get_by_label("Password").fill(region.password("xk-auditor"))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/audit")
    _open_the_queue(page)
    assert "touching XK" in page.locator("main").inner_text()
    _row(page, x).get_by_role("link", name="Delete now…").click()
    page.wait_for_url(f"**/ui/retention/{x.conversation_id}?confirm=delete#confirm-delete")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url("**/ui/retention")
    assert _deleted_at(engine, x.request_id) is None
    assert _row(page, x).is_visible()

    _row(page, x).get_by_label("Reason").fill("Still needed: the Vërmica case is open")
    _row(page, x).get_by_role("button", name="Keep").click()
    page.wait_for_url(f"**/ui/retention/{x.conversation_id}?done=keep")
    assert "the content is kept until its retention period ends" in page.get_by_role("status").inner_text()
    assert _deleted_at(engine, x.request_id) is None
    assert "due for deletion on" in page.locator("dl.meta").inner_text()
    page.get_by_role("link", name="Back to the compliance review").click()
    page.wait_for_url("**/ui/retention")
    assert _row(page, x).count() == 0


def _deleted_at(engine: Engine, message_id: str) -> datetime | None:
    with unit_of_work(make_sessionmaker(engine)) as session:
        return session.scalar(select(Message.content_deleted_at).where(Message.id == message_id))
