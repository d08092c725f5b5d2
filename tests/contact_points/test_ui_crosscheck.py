"""The message page over HTTP: structured content as labelled fields, and the cross-check's links — metadata
for every officer of the contact point, content only for an officer cleared for it."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from tests.broker.crosscheck.scenario import Linked, two_countries_ask
from tests.broker.messages.spoc_builders import committed, officer_headers
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


def test_the_api_lists_links_as_metadata_and_reads_content_only_within_clearance(
    client: TestClient, region: Region, linked: Linked
) -> None:
    """``GET /v1/cp/messages/{id}/links``: the same links the page shows, metadata only; the content of the
    linked message is read at its ``content_url``, which refuses (and audits) an uncleared officer."""
    restricted = officer_headers(client, region, "mk-officer")  # RESTRICTED
    answer = client.get(f"/v1/cp/messages/{linked.earlier}/links", headers=restricted)
    assert answer.status_code == 200, answer.text
    # (the module's earlier tests linked other pairs of the same person: this pair's link is among them)
    (link,) = [x for x in answer.json()["links"] if x["message"]["message_id"] == linked.incoming]
    assert link["basis_text"].startswith("same name")
    assert link["message"]["origin_country"] == "ME"
    assert set(link) == {"message", "basis", "basis_text", "earlier", "linked_at", "content_url"}
    assert SECRET not in answer.text
    assert "Станковић" not in answer.text
    assert "Stanković" not in answer.text
    content = client.get(link["content_url"], headers=restricted).json()
    assert content["readable"] is False
    assert content["payload_b64"] is None

    cleared = officer_headers(client, region, "mk-officer2")  # CONFIDENTIAL
    links = client.get(f"/v1/cp/messages/{linked.incoming}/links", headers=cleared).json()["links"]
    (link,) = [x for x in links if x["message"]["message_id"] == linked.earlier]
    assert link["earlier"] is True
    payload = client.get(link["content_url"], headers=cleared).json()["payload_b64"]
    assert "Stanković" in base64.b64decode(payload).decode()

    # AL sent the earlier request but never held ME's: no link in AL's case file, and ME's message is not
    # named; a message outside the officer's queues is 404, never a hint.
    al = officer_headers(client, region, "al-officer2")
    al_links = client.get(f"/v1/cp/messages/{linked.earlier}/links", headers=al).json()["links"]
    assert linked.incoming not in [x["message"]["message_id"] for x in al_links]
    assert client.get(f"/v1/cp/messages/{linked.incoming}/links", headers=al).status_code == 404
