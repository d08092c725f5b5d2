"""Dead letters in the officers' pages over HTTP: the destination contact point's officers are notified,
see them (and only theirs) under "Dead letters", and retry or re-route them with the same services as
``/v1/cp/deliveries``; another country's officer can neither see nor act on them."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.db import utcnow
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.delivery.push import dead_letter
from broker.delivery.service import start_delivery
from broker.directory.models import Agency
from broker.messages.models import Message
from tests.broker.messages.spoc_builders import committed, drain
from tests.contact_points.test_ui_pages import _csrf, _request, log_in
from tests.factories import Region


def dead_letter_for_mk(client: TestClient, region: Region) -> str:
    """RS-MUP → MK, approved by RS, routed by MK to MK-MOI, whose push was given up after the last try."""
    message_id = _request(client, region, category="fraud")
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    client.post(f"/ui/messages/{message_id}/decide", data={"action": "approve", "csrf": csrf})
    drain(client)
    csrf = log_in(client, "mk-officer", region.password("mk-officer"))
    routed = client.post(
        f"/ui/messages/{message_id}/decide",
        data={"action": "route", "route_to_agency": "MK-MOI", "csrf": csrf},
        follow_redirects=False,
    )
    assert routed.status_code == 303
    with committed(client) as session:  # what the push worker does after its last failed attempt
        message, agency = session.get(Message, message_id), session.get(Agency, "MK-MOI")
        assert message is not None
        assert agency is not None
        item = start_delivery(session, message, agency, channel=Channel.PUSH)
        item.attempts, item.last_error = 8, "HTTP 503 from the endpoint (its answer is not kept)"
        dead_letter(session, item, message, now=utcnow())
    drain(client)
    return message_id


def _status_of(client: TestClient, message_id: str) -> tuple[str, str, str]:
    with committed(client) as session:
        item = session.scalar(
            select(InboxItem).where(
                InboxItem.message_id == message_id, InboxItem.status != DeliveryStatus.SUPERSEDED
            )
        )
        assert item is not None
        return item.agency_id, item.channel, item.status


def test_officers_are_told_see_and_retry_a_dead_letter(client: TestClient, region: Region) -> None:
    message_id = dead_letter_for_mk(client, region)
    log_in(client, "mk-officer", region.password("mk-officer"))
    queue = client.get("/ui/queue").text
    assert f"Delivery of request {message_id[:8]} to MK-MOI failed after 8 attempts" in queue
    assert 'href="/ui/deliveries"' in queue
    page = client.get("/ui/deliveries")
    assert page.status_code == 200
    assert f'id="dead-{message_id}"' in page.text
    assert "HTTP 503 from the endpoint" in page.text
    retried = client.post(
        f"/ui/deliveries/{message_id}/retry", data={"csrf": _csrf(page.text)}, follow_redirects=False
    )
    assert retried.status_code == 303
    landed = client.get(retried.headers["location"]).text
    assert "Delivery to MK-MOI started again to its pull inbox." in landed  # MK-MOI has no push endpoint
    assert f'id="dead-{message_id}"' not in landed
    assert _status_of(client, message_id) == ("MK-MOI", "pull", "delivered")


def test_officers_re_route_a_dead_letter_to_another_agency(client: TestClient, region: Region) -> None:
    message_id = dead_letter_for_mk(client, region)
    csrf = log_in(client, "mk-officer", region.password("mk-officer"))
    page = client.get("/ui/deliveries").text
    row = page[page.index(f'id="dead-{message_id}"') :]
    assert re.search(r'<option value="MK-BP">', row[: row.index("</tr>")])
    rerouted = client.post(
        f"/ui/deliveries/{message_id}/reroute",
        data={"to_agency": "MK-BP", "channel": "pull", "reason": "MOI's endpoint is down", "csrf": csrf},
        follow_redirects=False,
    )
    assert rerouted.status_code == 303, rerouted.text
    assert (
        "Re-routed: delivering to MK-BP to its pull inbox." in client.get(rerouted.headers["location"]).text
    )
    assert _status_of(client, message_id) == ("MK-BP", "pull", "delivered")
    again = client.post(f"/ui/deliveries/{message_id}/retry", data={"csrf": csrf})
    assert again.status_code == 409  # no longer a dead letter: said on the page
    assert "not a dead letter" in again.text


def test_another_countrys_officer_neither_sees_nor_acts_on_them(client: TestClient, region: Region) -> None:
    message_id = dead_letter_for_mk(client, region)
    csrf = log_in(client, "rs-officer", region.password("rs-officer"))
    page = client.get("/ui/deliveries")
    assert page.status_code == 200
    assert message_id not in page.text
    assert f"Delivery of request {message_id[:8]}" not in client.get("/ui/queue").text
    for action, form in (("retry", {}), ("reroute", {"channel": "pull"})):
        refused = client.post(f"/ui/deliveries/{message_id}/{action}", data={**form, "csrf": csrf})
        assert refused.status_code == 404
        assert f"no delivery of message {message_id}" in refused.text
    assert _status_of(client, message_id) == ("MK-MOI", "push", "dead")
    assert client.post(f"/ui/deliveries/{message_id}/retry", data={}).status_code == 403  # CSRF first
