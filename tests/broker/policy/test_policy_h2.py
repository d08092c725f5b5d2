"""H2 — no onward dissemination without the provider's permission: forwarding is blocked until granted."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.errors import Conflict, InvalidInput, NotFound, PolicyRefused
from broker.keys.service import DatabaseKeyStore
from broker.messages.dissemination import request_dissemination
from broker.messages.models import DisseminationRequest, Message, ReviewNotification
from broker.messages.service import deliver, forward
from broker.messages.states import State
from broker.policy.service import check_onward_dissemination, onward_source
from contact_points.review.service import allowed_actions
from schemas.api import DisseminationRequestBody
from tests.broker.messages.spoc_builders import (
    agency_actor,
    agency_http,
    audit_entries,
    decide_as,
    drain,
    officer_headers,
    submit_as,
    user,
)
from tests.factories import Region, agency_client, deliver_request


def _delivered_h2(
    db: Session, keys: DatabaseKeyStore, region: Region, codes: tuple[str, ...] = ("H0", "H2")
) -> Message:
    """An AL request carrying H2, delivered to MK-MOI."""
    message = submit_as(
        db,
        keys,
        region,
        "AL-ASP",
        destination_country="MK",
        destination_agency="MK-MOI",
        handling_codes=codes,
    )
    decide_as(db, keys, "al-officer", message.id, "approve")
    forward(db, keys, message.id)
    decide_as(db, keys, "mk-officer", message.id, "route", route_to_agency="MK-MOI")
    deliver(db, message.id)
    return message


def _pass_on(db: Session, keys: DatabaseKeyStore, region: Region, source: Message, to: str = "RS") -> Message:
    """MK-MOI passes the information on to another country: a notification naming the source."""
    return submit_as(
        db, keys, region, "MK-MOI", destination_country=to, message_type="notification", in_reply_to=source.id
    )


def _ask(db: Session, source: Message, country: str = "RS") -> DisseminationRequest:
    body = DisseminationRequestBody(recipient_country=country, purpose="joint investigation with RS police")
    return request_dissemination(
        db, agency_id="MK-MOI", message_id=source.id, body=body, actor=agency_actor("MK-MOI")
    )


def test_forwarding_h2_information_is_blocked_until_the_provider_grants_it(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    source = _delivered_h2(db, keys, region)
    onward = _pass_on(db, keys, region, source)
    assert onward.state == State.ORIGIN_REVIEW  # accepted and held, not lost
    assert onward_source(db, onward) is source

    with db.begin_nested(), pytest.raises(PolicyRefused) as blocked:
        decide_as(db, keys, "mk-officer", onward.id, "approve")
    assert blocked.value.extra["reason"] == "onward-dissemination-not-granted"
    assert onward.state == State.ORIGIN_REVIEW
    assert "approve" not in allowed_actions(db, user(db, "mk-officer"), onward, "outbound", keys=keys)

    asked = _ask(db, source)
    assert asked.state == "pending"
    note = db.scalar(
        select(ReviewNotification).where(
            ReviewNotification.kind == "dissemination", ReviewNotification.message_id == source.id
        )
    )
    assert note is not None
    assert note.contact_point_id == "AL-SPOC"  # the provider's contact point is asked
    assert {"grant", "deny"} <= set(
        allowed_actions(db, user(db, "al-officer"), source, "outbound", keys=keys)
    )
    with pytest.raises(PolicyRefused):
        check_onward_dissemination(db, onward)  # asked is not granted

    decide_as(db, keys, "al-officer", source.id, "grant", dissemination_request=asked.id)
    assert asked.state == "granted"
    assert asked.decided_by == "al-officer"
    assert audit_entries(db, object_id=source.id, action=AuditAction.DISSEMINATION_GRANTED)
    decide_as(db, keys, "mk-officer", onward.id, "approve")
    assert onward.state == State.FORWARDED


def test_a_denial_keeps_it_blocked_and_needs_a_reason(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    source = _delivered_h2(db, keys, region)
    onward = _pass_on(db, keys, region, source)
    asked = _ask(db, source)
    with pytest.raises(ValueError, match="'deny' needs a reason"):
        decide_as(db, keys, "al-officer", source.id, "deny", dissemination_request=asked.id)
    decide_as(
        db, keys, "al-officer", source.id, "deny", dissemination_request=asked.id, reason="ongoing case"
    )
    assert (asked.state, asked.decision_reason) == ("denied", "ongoing case")
    with pytest.raises(Conflict, match="already denied"):
        decide_as(db, keys, "al-officer", source.id, "grant", dissemination_request=asked.id)
    with pytest.raises(PolicyRefused):
        decide_as(db, keys, "mk-officer", onward.id, "approve")


def test_a_grant_covers_only_the_country_it_names(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    source = _delivered_h2(db, keys, region)
    asked = _ask(db, source, country="ME")
    decide_as(db, keys, "al-officer", source.id, "grant", dissemination_request=asked.id)
    with pytest.raises(PolicyRefused):
        check_onward_dissemination(db, _pass_on(db, keys, region, source, to="RS"))
    check_onward_dissemination(db, _pass_on(db, keys, region, source, to="ME"))


def test_only_the_provider_contact_point_grants(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    source = _delivered_h2(db, keys, region)
    asked = _ask(db, source)
    with pytest.raises(Conflict, match="provider"):
        decide_as(db, keys, "mk-officer", source.id, "grant", dissemination_request=asked.id)
    assert asked.state == "pending"


def test_without_h2_or_back_to_the_provider_nothing_is_held(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    plain = _delivered_h2(db, keys, region, codes=("H0",))
    onward = _pass_on(db, keys, region, plain)
    decide_as(db, keys, "mk-officer", onward.id, "approve")
    assert onward.state == State.FORWARDED
    with pytest.raises(InvalidInput, match="not H2"):
        _ask(db, plain)

    source = _delivered_h2(db, keys, region)
    back = _pass_on(db, keys, region, source, to="AL")  # to the provider's own country: not onward
    assert onward_source(db, back) is None


def test_only_the_agency_it_was_delivered_to_may_ask_or_refer_to_it(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    source = _delivered_h2(db, keys, region)
    body = DisseminationRequestBody(recipient_country="RS", purpose="x")
    with pytest.raises(NotFound):
        request_dissemination(
            db, agency_id="MK-CUS", message_id=source.id, body=body, actor=agency_actor("MK-CUS")
        )
    with pytest.raises(PolicyRefused) as refused:
        submit_as(
            db,
            keys,
            region,
            "MK-CUS",
            destination_country="RS",
            message_type="notification",
            in_reply_to=source.id,
        )
    assert refused.value.extra["reason"] == "unknown-original"


def test_dissemination_over_the_api(client: TestClient, region: Region) -> None:
    source_id, _ = deliver_request(
        client,
        region,
        sender="AL-ASP",
        target="MK-MOI",
        category="drug-trafficking",
        handling_codes=("H0", "H2"),
    )
    http = agency_http(client, region, "MK-MOI")
    asked = http.post(
        f"/v1/messages/{source_id}/dissemination-requests",
        json={"recipient_country": "RS", "recipient_agency": "RS-MUP", "purpose": "joint investigation"},
    )
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["id"]
    assert asked.json()["state"] == "pending"
    outsider = agency_http(client, region, "MK-CUS").get(f"/v1/messages/{source_id}/dissemination-requests")
    assert outsider.status_code == 404

    mover = agency_client(region, "MK-MOI", client)
    onward = mover.build(
        payload=b'{"info": "passing it on"}',
        destination_country="RS",
        destination_agency="RS-MUP",
        category="drug-trafficking",
        message_type="notification",
        in_reply_to=source_id,
    )
    onward_id = mover.submit(onward)["message_id"]
    mk = officer_headers(client, region, "mk-officer")
    blocked = client.post(f"/v1/cp/messages/{onward_id}/decisions", json={"action": "approve"}, headers=mk)
    assert (blocked.status_code, blocked.json()["reason"]) == (422, "onward-dissemination-not-granted")

    al = officer_headers(client, region, "al-officer")
    pending = client.get("/v1/cp/dissemination-requests", headers=al).json()
    assert request_id in [r["id"] for r in pending]
    granted = client.post(
        f"/v1/cp/messages/{source_id}/decisions",
        json={"action": "grant", "dissemination_request": request_id},
        headers=al,
    )
    assert granted.status_code == 200, granted.text
    listed = http.get(f"/v1/messages/{source_id}/dissemination-requests").json()
    assert [r["state"] for r in listed] == ["granted"]
    approved = client.post(f"/v1/cp/messages/{onward_id}/decisions", json={"action": "approve"}, headers=mk)
    assert approved.json()["state"] == "forwarded"
    drain(client)
