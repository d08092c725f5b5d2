"""The message page over HTTP: structured content as labelled fields, and the cross-check's links — metadata
for every officer of the contact point, content only for an officer cleared for it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from tests.broker.crosscheck.scenario import Linked, two_countries_ask
from tests.broker.messages.spoc_builders import committed
from tests.contact_points.test_ui_pages import log_in
from tests.factories import Region, agency_client, officer_client

SECRET = "Seen with the ME source Hydra-7."


@pytest.fixture
def linked(client: TestClient, region: Region) -> Iterator[Linked]:
    with contextlib.ExitStack() as stack:

        def agency(agency_id: str) -> AgencyClient:
            return stack.enter_context(agency_client(region, agency_id, client))

        def officer(username: str) -> OfficerClient:
            return stack.enter_context(officer_client(region, username, client))

        state = client.app.state  # type: ignore[attr-defined]
        yield two_countries_ask(
            agency,
            officer,
            state.sessionmaker,
            state.master_key,
            latin=("Dejan", "Stanković"),
            cyrillic=("Дејан", "Станковић"),
            year=1984,
            secret_detail=SECRET,
        )


def test_an_officer_without_clearance_sees_the_link_but_not_its_content(
    client: TestClient, region: Region, linked: Linked
) -> None:
    log_in(client, "mk-officer", region.password("mk-officer"))  # RESTRICTED
    page = client.get(f"/ui/messages/{linked.earlier}")
    assert page.status_code == 200
    html = page.text
    assert "Linked messages" in html
    assert f"/ui/messages/{linked.incoming}" in html
    assert "same name" in html
    assert "ME-UP (ME)" in html
    assert "CONFIDENTIAL content: your clearance is RESTRICTED" in html
    assert SECRET not in html
    assert "Станковић" not in html  # how ME wrote the name is content too
    # The page's own content (RESTRICTED, cleared) is shown as labelled fields, not JSON.
    assert "Stanković" in html
    assert "BG 123-AB" in html
    assert '"family_name"' not in html

    with committed(client) as session:
        denied = session.scalar(
            select(AuditEntry).where(
                AuditEntry.object_id == linked.incoming,
                AuditEntry.action == "content:read",
                AuditEntry.actor == "mk-officer",
            )
        )
        assert denied is not None
        assert denied.outcome == "denied"


def test_a_cleared_officer_sees_the_linked_content(
    client: TestClient, region: Region, linked: Linked
) -> None:
    log_in(client, "mk-officer2", region.password("mk-officer2"))  # CONFIDENTIAL
    html = client.get(f"/ui/messages/{linked.incoming}").text
    assert f"/ui/messages/{linked.earlier}" in html
    assert "held before this one" in html
    assert "AL-ASP (AL)" in html
    assert "Станковић" in html  # this message's own content, as ME wrote it
    assert "Stanković" in html  # the linked AL request's content, as AL wrote it
    assert SECRET in html


def test_a_link_stays_in_one_contact_points_case_file(
    client: TestClient, region: Region, linked: Linked
) -> None:
    """AL sent the earlier request but never held ME's: AL's officers see no link to it (a link is made
    among what one contact point holds, under its own key)."""
    log_in(client, "al-officer2", region.password("al-officer2"))
    html = client.get(f"/ui/messages/{linked.earlier}").text
    assert "Stanković" in html
    assert linked.incoming not in html
