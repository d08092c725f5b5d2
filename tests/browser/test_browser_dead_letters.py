"""An officer retries a dead letter from its page in a real browser (Debian's chromium, a real uvicorn
server, the test database): told on the queue, opens "Dead letters" from the navigation, clicks Retry,
reads what happened. The page is saved as docs/screenshots/dead-letters.png (see test_browser_review)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_sessionmaker, unit_of_work, utcnow
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.delivery.push import dead_letter
from broker.delivery.service import start_delivery
from broker.directory.models import Agency
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.work import drain
from tests.browser.test_browser_review import SCREENSHOTS, log_in
from tests.factories import Region

pytestmark = pytest.mark.browser


def _dead_letter(live_server: str, region: Region, settings: Settings, engine: Engine) -> str:
    """RS-MUP → MK, approved, routed to MK-MOI, whose push was given up after the last try."""
    maker = make_sessionmaker(engine)
    master = MasterKey.from_secret(settings.master_key_secret())
    with AgencyClient(live_server, region.seed.agencies["RS-MUP"]) as police:
        envelope = police.build(
            payload=b'{"q": "registered keeper of SK-4471-AB"}', destination_country="MK", category="fraud"
        )
        message_id: str = police.submit(envelope)["message_id"]
    with OfficerClient(live_server, "rs-officer", region.password("rs-officer")) as rs:
        rs.decide(message_id, "approve")
    with unit_of_work(maker) as session:
        drain(session, DatabaseKeyStore(session, master))
    with OfficerClient(live_server, "mk-officer", region.password("mk-officer")) as mk:
        mk.decide(message_id, "route", route_to_agency="MK-MOI")
    with unit_of_work(maker) as session:  # what the push worker does after its last failed attempt
        message, agency = session.get(Message, message_id), session.get(Agency, "MK-MOI")
        assert message is not None
        assert agency is not None
        item = start_delivery(session, message, agency, channel=Channel.PUSH)
        item.attempts, item.last_error = 8, "timeout: ConnectTimeout"
        dead_letter(session, item, message, now=utcnow())
    with unit_of_work(maker) as session:
        drain(session, DatabaseKeyStore(session, master))
    return message_id


def test_an_officer_retries_a_dead_letter_from_the_page(
    browser_page: Any, live_server: str, region: Region, settings: Settings, engine: Engine
) -> None:
    message_id = _dead_letter(live_server, region, settings, engine)
    page = browser_page
    log_in(page, region, "mk-officer")
    assert page.get_by_text(f"Delivery of request {message_id[:8]} to MK-MOI failed").is_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters").click()
    page.wait_for_url("**/ui/deliveries")
    row = page.locator(f"#dead-{message_id}")
    assert "timeout: ConnectTimeout" in row.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "dead-letters.png"), full_page=True)
    row.get_by_role("button", name="Retry").click()
    page.wait_for_url("**/ui/deliveries?done=retry*")
    assert "Delivery to MK-MOI started again to its pull inbox." in page.get_by_role("status").inner_text()
    assert page.locator(f"#dead-{message_id}").count() == 0
    with unit_of_work(make_sessionmaker(engine)) as session:
        item = session.scalar(
            select(InboxItem).where(InboxItem.message_id == message_id, InboxItem.agency_id == "MK-MOI")
        )
        assert item is not None
        assert item.status != DeliveryStatus.DEAD
