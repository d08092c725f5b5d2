"""Officers' decisions: each needs what it needs, fits one queue, and only a message awaiting review."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.errors import Conflict, InvalidInput, PolicyRefused
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import custody_of, forward
from broker.messages.states import State
from tests.broker.messages.spoc_builders import (
    audit_entries,
    decide_as,
    drain,
    officer_headers,
    submit_as,
)
from tests.factories import Region, agency_client


def _post_decision(
    client: TestClient, headers: dict[str, str], message_id: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/v1/cp/messages/{message_id}/decisions", json=body, headers=headers)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    payload: dict[str, Any] = response.json()
    return response.status_code, payload


def _xk_request(client: TestClient, region: Region) -> str:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(payload=b'{"q": "van"}', destination_country="AL", category="migrant-smuggling")
    message_id: str = asker.submit(envelope)["message_id"]
    return message_id


MALFORMED_OUTBOUND: list[dict[str, Any]] = [
    {"action": "reject"},
    {"action": "reject", "reason": "   "},
    {"action": "return"},
    {"action": "return", "reason": ""},
    {"action": "approve", "refusal_ground": "minor-offence"},
    {"action": "approve", "route_to_agency": "AL-ASP"},
    {"action": "approve", "refusal_reason": "typo of a member"},
    {"action": "veto"},
]


def test_malformed_outbound_decisions_are_400(client: TestClient, region: Region) -> None:
    """One message in origin review; none of these bodies may move it (checked after each)."""
    message_id = _xk_request(client, region)
    headers = officer_headers(client, region, "xk-officer")
    status_of = agency_client(region, "XK-KP", client)
    for body in MALFORMED_OUTBOUND:
        status, problem = _post_decision(client, headers, message_id, body)
        assert (status, problem["type"]) == (400, "urn:spoc:problem:invalid-input"), body
        assert status_of.status(message_id)["state"] == "origin_review", body


def test_reject_and_return_record_their_reason(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    rejected = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    returned = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    decide_as(db, keys, "xk-officer", rejected.id, "reject", reason="no legal ground stated")
    decide_as(db, keys, "xk-officer", returned.id, "return", reason="name the vehicle")

    assert rejected.state == State.REJECTED
    assert returned.state == State.RETURNED
    assert custody_of(db, rejected.id)[-1].reason == "no legal ground stated"
    assert custody_of(db, returned.id)[-1].decision == "returned"
    [entry] = audit_entries(db, object_id=rejected.id, action=AuditAction.MESSAGE_REJECTED)
    assert entry.details["reason"] == "no legal ground stated"
    assert entry.actor == "xk-officer"


def _in_destination_review(db: Session, keys: DatabaseKeyStore, region: Region, **kw: Any) -> Message:
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL", **kw)
    if kw.get("classification") == "CONFIDENTIAL":  # four eyes, both cleared
        decide_as(db, keys, "xk-officer2", message.id, "approve")
        decide_as(db, keys, "xk-supervisor", message.id, "approve")
    else:
        decide_as(db, keys, "xk-officer", message.id, "approve")
    forward(db, keys, message.id)
    assert message.state == State.DESTINATION_REVIEW
    return message


MALFORMED_INBOUND: list[dict[str, Any]] = [
    {"action": "refuse"},
    {"action": "refuse", "refusal_ground": "we-do-not-feel-like-it"},
    {"action": "refuse", "refusal_ground": "Minor-Offence"},
    {"action": "route"},
    {"action": "route", "route_to_agency": "not an agency id"},
]


def test_malformed_inbound_decisions_are_400(client: TestClient, region: Region) -> None:
    """One message in destination review; none of these bodies may move it (checked after each)."""
    message_id = _xk_request(client, region)
    xk = officer_headers(client, region, "xk-officer")
    assert _post_decision(client, xk, message_id, {"action": "approve"})[0] == 200
    drain(client)
    headers = officer_headers(client, region, "al-officer")
    status_of = agency_client(region, "XK-KP", client)
    for body in MALFORMED_INBOUND:
        status, problem = _post_decision(client, headers, message_id, body)
        assert (status, problem["type"]) == (400, "urn:spoc:problem:invalid-input"), body
        assert status_of.status(message_id)["state"] == "destination_review", body


def test_refuse_with_a_ground_of_article_6(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = _in_destination_review(db, keys, region)
    decide_as(
        db, keys, "al-officer", message.id, "refuse", refusal_ground="minor-offence", reason="fine only"
    )
    assert message.state == State.REFUSED
    step = custody_of(db, message.id)[-1]
    assert (step.party, step.decision, step.refusal_ground, step.reason) == (
        "AL-SPOC",
        "refused",
        "minor-offence",
        "fine only",
    )
    [entry] = audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_REFUSED)
    assert entry.details["ground"] == "minor-offence"


def test_route_to_an_agency_of_another_country_is_invalid(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _in_destination_review(db, keys, region)
    with pytest.raises(InvalidInput, match="MK-MOI"):
        decide_as(db, keys, "al-officer", message.id, "route", route_to_agency="MK-MOI")
    assert message.state == State.DESTINATION_REVIEW
    assert message.destination_agency is None


def test_route_to_an_agency_not_accredited_is_refused(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _in_destination_review(db, keys, region, classification="CONFIDENTIAL")
    with pytest.raises(PolicyRefused) as refused:
        decide_as(db, keys, "al-officer2", message.id, "route", route_to_agency="AL-BMP")
    assert refused.value.extra["reason"] == "accreditation"
    assert message.state == State.DESTINATION_REVIEW


def test_route_and_accreditation_over_the_api(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(
        payload=b'{"q": "van"}',
        destination_country="AL",
        category="migrant-smuggling",
        classification="CONFIDENTIAL",
    )
    message_id = asker.submit(envelope)["message_id"]
    xk = officer_headers(client, region, "xk-officer2")
    assert _post_decision(client, xk, message_id, {"action": "approve"})[1]["state"] == "origin_review"
    xk2 = officer_headers(client, region, "xk-supervisor")
    assert _post_decision(client, xk2, message_id, {"action": "approve"})[1]["state"] == "forwarded"
    drain(client)
    al = officer_headers(client, region, "al-officer2")
    status, problem = _post_decision(client, al, message_id, {"action": "route", "route_to_agency": "XK-KP"})
    assert (status, problem["type"]) == (400, "urn:spoc:problem:invalid-input")
    status, problem = _post_decision(client, al, message_id, {"action": "route", "route_to_agency": "AL-CUS"})
    assert (status, problem["type"], problem["reason"]) == (
        422,
        "urn:spoc:problem:policy-refused",
        "accreditation",
    )
    assert asker.status(message_id)["state"] == "destination_review"
    status, summary = _post_decision(client, al, message_id, {"action": "route", "route_to_agency": "AL-ASP"})
    assert (status, summary["state"], summary["destination_agency"]) == (200, "routed", "AL-ASP")


def test_a_sender_addressed_message_cannot_be_re_addressed(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _in_destination_review(db, keys, region, destination_agency="AL-ASP")
    with pytest.raises(Conflict):
        decide_as(db, keys, "al-officer", message.id, "route", route_to_agency="AL-CUS")
    decide_as(db, keys, "al-officer", message.id, "route", route_to_agency="AL-ASP")
    assert message.state == State.ROUTED


def test_accept_keeps_the_message_in_review_with_a_custody_step(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _in_destination_review(db, keys, region)
    decide_as(db, keys, "al-officer", message.id, "accept")
    assert message.state == State.DESTINATION_REVIEW
    assert [s.decision for s in custody_of(db, message.id)][-1] == "accepted"
    assert audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_ACCEPTED)


@pytest.mark.parametrize(
    ("fields"),
    [
        {"action": "route", "route_to_agency": "AL-ASP"},
        {"action": "refuse", "refusal_ground": "not-available"},
        {"action": "accept"},
    ],
)
def test_inbound_actions_do_not_fit_the_outbound_queue(
    db: Session, keys: DatabaseKeyStore, region: Region, fields: dict[str, Any]
) -> None:
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    action = fields.pop("action")
    with pytest.raises(Conflict):
        decide_as(db, keys, "xk-officer", message.id, action, **fields)
    assert message.state == State.ORIGIN_REVIEW


@pytest.mark.parametrize(
    "fields",
    [{"action": "approve"}, {"action": "reject", "reason": "x"}],
)
def test_outbound_actions_do_not_fit_the_inbound_queue(
    db: Session, keys: DatabaseKeyStore, region: Region, fields: dict[str, Any]
) -> None:
    message = _in_destination_review(db, keys, region)
    action = fields.pop("action")
    with pytest.raises(Conflict):
        decide_as(db, keys, "al-officer", message.id, action, **fields)
    assert message.state == State.DESTINATION_REVIEW


def test_decisions_on_a_message_not_awaiting_review_are_conflicts(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    decide_as(db, keys, "xk-officer", message.id, "approve")
    assert message.state == State.FORWARDED
    for username in ("xk-officer", "xk-supervisor"):
        with pytest.raises(Conflict, match="not awaiting outbound review"):
            decide_as(db, keys, username, message.id, "approve")
    with pytest.raises(Conflict, match="not awaiting inbound review"):  # forwarded, not yet received
        decide_as(db, keys, "al-officer", message.id, "route", route_to_agency="AL-ASP")

    rejected = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    decide_as(db, keys, "xk-officer", rejected.id, "reject", reason="duplicate")
    with pytest.raises(Conflict):
        decide_as(db, keys, "xk-officer", rejected.id, "approve")
    assert rejected.state == State.REJECTED


def test_a_decision_on_a_forwarded_message_is_409_over_the_api(client: TestClient, region: Region) -> None:
    message_id = _xk_request(client, region)
    headers = officer_headers(client, region, "xk-officer")
    assert _post_decision(client, headers, message_id, {"action": "approve"})[0] == 200
    status, problem = _post_decision(client, headers, message_id, {"action": "reject", "reason": "too late"})
    assert (status, problem["type"]) == (409, "urn:spoc:problem:conflict")
    assert agency_client(region, "XK-KP", client).status(message_id)["state"] == "forwarded"
