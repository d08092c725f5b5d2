"""Scope (DESIGN §5): an officer sees only its own contact point's queues; an agency only its messages."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.errors import NotFound, NotPermitted
from broker.keys.service import DatabaseKeyStore
from contact_points.review.service import message_in_scope, queue
from tests.broker.messages.spoc_builders import (
    URGENT_DIRECT,
    agency_http,
    decide_as,
    drain,
    officer_headers,
    submit_as,
    user,
)
from tests.factories import Region, agency_client, officer_client


def _xk_to_al(client: TestClient, region: Region, *, destination_agency: str | None = None) -> str:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(
        payload=b'{"q": "van"}',
        destination_country="AL",
        category="migrant-smuggling",
        destination_agency=destination_agency,
    )
    message_id: str = asker.submit(envelope)["message_id"]
    return message_id


def test_officers_of_other_contact_points_get_404(client: TestClient, region: Region) -> None:
    message_id = _xk_to_al(client, region)
    for outsider in ("rs-officer", "mk-supervisor"):
        headers = officer_headers(client, region, outsider)
        for path in (f"/v1/cp/messages/{message_id}", f"/v1/cp/messages/{message_id}/content"):
            response = client.get(path, headers=headers)
            assert response.status_code == 404, (outsider, path)
            assert response.headers["content-type"].startswith("application/problem+json")
        decision = client.post(
            f"/v1/cp/messages/{message_id}/decisions", json={"action": "approve"}, headers=headers
        )
        assert decision.status_code == 404
        for direction in ("outbound", "inbound"):
            listed = client.get(f"/v1/cp/queues/{direction}", params={"limit": 500}, headers=headers)
            assert listed.status_code == 200
            assert message_id not in [m["message_id"] for m in listed.json()]
    assert agency_client(region, "XK-KP", client).status(message_id)["state"] == "origin_review"


def test_queues_hold_only_the_contact_points_own_messages(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    xk, al, rs = user(db, "xk-officer"), user(db, "al-officer"), user(db, "rs-officer")
    assert message.id in [m.id for m in queue(db, xk, "outbound", limit=500)]
    assert message.id not in [m.id for m in queue(db, al, "inbound", limit=500)]  # not forwarded yet
    for officer in (al, rs):
        assert message.id not in [m.id for m in queue(db, officer, "outbound", limit=500)]
    with pytest.raises(NotFound):
        message_in_scope(db, rs, message.id)


@pytest.mark.parametrize("username", ["al-auditor", "regional-auditor", "admin"])
def test_auditors_and_admins_have_no_queues(db: Session, username: str) -> None:
    with pytest.raises(NotPermitted):
        queue(db, user(db, username), "outbound")


@pytest.mark.parametrize("username", ["al-auditor", "regional-auditor", "admin"])
def test_non_officers_cannot_call_officer_endpoints(
    client: TestClient, region: Region, username: str
) -> None:
    message_id = _xk_to_al(client, region)
    headers = officer_headers(client, region, username)
    calls = [
        client.get("/v1/cp/queues/outbound", headers=headers),
        client.get(f"/v1/cp/messages/{message_id}", headers=headers),
        client.get(f"/v1/cp/messages/{message_id}/content", headers=headers),
        client.post(f"/v1/cp/messages/{message_id}/decisions", json={"action": "approve"}, headers=headers),
    ]
    assert [c.status_code for c in calls] == [403, 403, 403, 403]


def test_agency_tokens_and_no_token_cannot_call_officer_endpoints(client: TestClient, region: Region) -> None:
    message_id = _xk_to_al(client, region)
    for http in (agency_http(client, region, "XK-KP"), client):
        assert http.get("/v1/cp/queues/outbound").status_code == 401
        assert http.get(f"/v1/cp/messages/{message_id}").status_code == 401
        assert (
            http.post(f"/v1/cp/messages/{message_id}/decisions", json={"action": "approve"}).status_code
            == 401
        )
    assert agency_client(region, "XK-KP", client).status(message_id)["state"] == "origin_review"


def test_officer_tokens_cannot_call_agency_endpoints(client: TestClient, region: Region) -> None:
    message_id = _xk_to_al(client, region)
    headers = officer_headers(client, region, "xk-supervisor")
    assert client.get(f"/v1/messages/{message_id}", headers=headers).status_code == 401
    assert client.get("/v1/inbox", headers=headers).status_code == 401


@pytest.mark.parametrize("outsider", ["XK-BP", "AL-BMP", "RS-MUP"])
def test_an_agency_cannot_see_a_message_it_neither_sent_nor_received(
    client: TestClient, region: Region, outsider: str
) -> None:
    message_id = _xk_to_al(client, region, destination_agency="AL-ASP")
    response = agency_http(client, region, outsider).get(f"/v1/messages/{message_id}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_an_agency_cannot_see_the_inbox_of_another(client: TestClient, region: Region) -> None:
    message_id = _xk_to_al(client, region)
    officer_client(region, "xk-officer", client).decide(message_id, "approve")
    drain(client)
    officer_client(region, "al-officer", client).decide(message_id, "route", route_to_agency="AL-ASP")
    drain(client)
    assert message_id in [i["message_id"] for i in agency_client(region, "AL-ASP", client).inbox(limit=500)]
    for other in ("AL-CUS", "XK-KP"):
        assert message_id not in [
            i["message_id"] for i in agency_client(region, other, client).inbox(limit=500)
        ]


# --- the destination contact point before the message reaches it -------------------------------------


@pytest.mark.parametrize("stop", ["origin_review", "rejected"])
def test_destination_officer_cannot_see_a_message_the_origin_has_not_forwarded(
    db: Session, keys: DatabaseKeyStore, region: Region, stop: str
) -> None:
    """Origin review is a gate: a cleared AL officer must not open (or decrypt) an XK request still in XK's
    outbound review, or one XK's contact point rejected. It is not, and never was, in AL's queues: 404."""
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    if stop == "rejected":
        decide_as(db, keys, "xk-officer", message.id, "reject", reason="insufficient grounds")
    with pytest.raises(NotFound):
        message_in_scope(db, user(db, "al-officer2"), message.id)


def test_destination_agency_sees_no_status_before_delivery(client: TestClient, region: Region) -> None:
    """Status is for "a message this agency sent (or that was delivered to it)": being named as destination
    agency of a message still in the sender's review is not enough."""
    message_id = _xk_to_al(client, region, destination_agency="AL-ASP")
    response = agency_http(client, region, "AL-ASP").get(f"/v1/messages/{message_id}")
    assert response.status_code == 404


def test_the_queue_puts_the_nearest_deadline_first(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    normal = submit_as(db, keys, region, "ME-UP", destination_country="MK")
    urgent = submit_as(db, keys, region, "ME-UP", destination_country="MK", priority=URGENT_DIRECT)
    notification = submit_as(db, keys, region, "ME-UP", destination_country="MK", message_type="notification")
    ids = [m.id for m in queue(db, user(db, "me-officer"), "outbound", limit=500)]
    assert ids.index(urgent.id) < ids.index(normal.id) < ids.index(notification.id)  # no deadline: last
