"""After every decision the officer reads in words what happened (never a bare code); the route form starts
with no agency chosen and a route without one is refused on the page; a closed message shows its outcome,
not a ticking time left. All over HTTP against the officers' pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.broker.messages.spoc_builders import drain
from tests.contact_points.test_ui_pages import _request, log_in
from tests.factories import Region


def _decide(client: TestClient, message_id: str, csrf: str, **form: str) -> str:
    """POST a decision from the message page, follow the redirect, return the page the officer lands on."""
    response = client.post(
        f"/ui/messages/{message_id}/decide", data={**form, "csrf": csrf}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    landed = client.get(response.headers["location"])
    assert landed.status_code == 200
    text: str = landed.text
    return text


def _status(html: str) -> str:
    found = re.search(r'<p class="ok" role="status">(.*?)</p>', html, re.S)
    assert found is not None, "no confirmation on the page"
    return found.group(1)


def _inbound_for_mk(client: TestClient, region: Region, **build: object) -> str:
    message_id = _request(client, region, category="fraud", **build)
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    _decide(client, message_id, csrf, action="approve")
    drain(client)
    return message_id


def test_every_decision_says_in_words_what_happened(client: TestClient, region: Region) -> None:
    outbound = _request(client, region, category="fraud")
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    assert "Approved and forwarded to North Macedonia (MK)." in _status(
        _decide(client, outbound, csrf, action="approve")
    )

    confidential = _request(client, region, category="money-laundering", classification="CONFIDENTIAL")
    csrf = log_in(client, "rs-officer2", region.password("rs-officer2"))
    first = _status(_decide(client, confidential, csrf, action="approve"))
    assert "First approval recorded; a second, different officer must approve" in first

    rejected = _request(client, region, category="fraud")
    said = _status(_decide(client, rejected, csrf, action="reject", reason="no legal ground given"))
    assert "Rejected; RS-MUP is told the grounds." in said

    returned = _request(client, region, category="fraud")
    said = _status(_decide(client, returned, csrf, action="return", reason="name the account"))
    assert "Returned to RS-MUP for clarification" in said

    routed = _inbound_for_mk(client, region)
    refused = _inbound_for_mk(client, region)
    accepted = _inbound_for_mk(client, region)
    csrf = log_in(client, "mk-officer", region.password("mk-officer"))
    assert "Routed to MK-MOI" in _status(
        _decide(client, routed, csrf, action="route", route_to_agency="MK-MOI")
    )
    said = _status(
        _decide(client, refused, csrf, action="refuse", refusal_ground="judicial-authorisation-refused")
    )
    assert said.startswith("Refused on the ground: ")
    assert "judicial-authorisation-refused" not in said  # the ground's label, not its code
    assert "Accepted; route it to the competent agency" in _status(
        _decide(client, accepted, csrf, action="accept")
    )
    assert "Assigned to mk-officer." in _status(
        _decide(client, accepted, csrf, action="assign", assign_to="mk-officer")
    )
    refused_page = client.get(f"/ui/messages/{refused}").text
    assert "judicial-authorisation-refused" not in refused_page  # the timeline names the ground in words

    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    provided = client.post(
        "/ui/provide",
        data={
            "destination_country": "MK",
            "category": "cybercrime",
            "classification": "RESTRICTED",
            "information": "A botnet controller runs from a host in Skopje.",
            "csrf": csrf,
        },
    )
    assert "Submitted for review: another officer of RS-SPOC must approve it" in _status(provided.text)


def test_a_crafted_link_confirms_nothing(client: TestClient, region: Region) -> None:
    log_in(client, "rs-officer", region.password("rs-officer"))
    for query in ("done=approve", "done=approve&m=00000000-0000-4000-8000-000000000000", "done=<b>x</b>"):
        assert 'class="ok"' not in client.get(f"/ui/queue?{query}").text


def test_the_route_form_starts_with_no_agency_and_a_route_without_one_is_refused(
    client: TestClient, region: Region
) -> None:
    message_id = _inbound_for_mk(client, region)
    csrf = log_in(client, "mk-officer", region.password("mk-officer"))
    page = client.get(f"/ui/messages/{message_id}").text
    route_form = page[page.index('name="route_to_agency"') :]
    route_form = route_form[: route_form.index("</select>")]
    options = re.findall(r'<option value="([^"]*)"( selected)?', route_form)
    assert options[0] == ("", " selected")
    assert [value for value, selected in options if selected] == [""]
    assert "MK-BP" in [
        value for value, _ in options
    ]  # the alphabetically first agency is offered, not chosen
    refused = client.post(
        f"/ui/messages/{message_id}/decide", data={"action": "route", "route_to_agency": "", "csrf": csrf}
    )
    assert refused.status_code == 400
    assert "Choose the agency to route the message to" in refused.text
    assert "destination review" in client.get(f"/ui/messages/{message_id}").text


def test_a_closed_message_shows_its_outcome_not_a_countdown(client: TestClient, region: Region) -> None:
    message_id = _request(client, region, category="fraud")
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    open_page = client.get(f"/ui/messages/{message_id}").text
    assert "data-deadline=" in open_page
    _decide(client, message_id, csrf, action="reject", reason="no legal ground given")
    page = client.get(f"/ui/messages/{message_id}").text
    assert re.search(r"closed: rejected on \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    assert "data-deadline=" not in page
    queue = client.get("/ui/queue?status=rejected").text
    row = queue[queue.index(f"/ui/messages/{message_id}") - 3000 : queue.index(f"/ui/messages/{message_id}")]
    row = row[row.rindex("<tr") :]
    assert "closed: rejected on" in row
    assert "data-deadline" not in row
