"""An officer opens an incoming request and sees the earlier linked request from another country (a real
browser on a real server). Saved as docs/screenshots/linked.png with SPOC_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from sqlalchemy import Engine

from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_sessionmaker
from tests.broker.crosscheck.scenario import two_countries_ask
from tests.browser.test_browser_review import SCREENSHOTS, log_in
from tests.factories import Region

pytestmark = pytest.mark.browser


def test_an_incoming_request_shows_the_earlier_linked_request(
    browser_page: Any, live_server: str, region: Region, settings: Settings, engine: Engine
) -> None:
    with contextlib.ExitStack() as stack:

        def agency(agency_id: str) -> AgencyClient:
            return stack.enter_context(AgencyClient(live_server, region.seed.agencies[agency_id]))

        def officer(username: str) -> OfficerClient:
            return stack.enter_context(OfficerClient(live_server, username, region.password(username)))

        linked = two_countries_ask(
            agency,
            officer,
            make_sessionmaker(engine),
            MasterKey.from_secret(settings.master_key_secret()),
            latin=("Marko", "Jovanović"),
            cyrillic=("Марко", "Јовановић"),
            year=1985,
            secret_detail="Uses a second phone when crossing at Dobrakovo.",
        )

    page = browser_page
    log_in(page, region, "mk-officer2")
    page.goto(f"/ui/messages/{linked.incoming}")
    section = page.locator("section#links")
    section.wait_for()
    assert "Јовановић" in page.locator(".payload-fields").inner_text()  # the request as ME wrote it
    card = section.get_by_role("article", name=re.compile(f"Linked request {linked.earlier[:8]}"))
    text = card.inner_text()
    assert "AL-ASP (AL)" in text
    assert "same name" in text
    assert "held before this one" in text
    assert "Jovanović" in text  # the earlier request's content, as AL wrote it: this officer is cleared
    card.get_by_role("link", name=re.compile(linked.earlier[:8])).wait_for()
    page.screenshot(path=str(SCREENSHOTS / "linked.png"), full_page=True)
    card.get_by_role("link", name=re.compile(linked.earlier[:8])).click()
    page.wait_for_url(f"**/ui/messages/{linked.earlier}")
    assert "Linked messages" in page.content()
