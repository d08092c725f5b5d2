"""The other decisions — assign, extend — the decisions open to each officer, H3 conditions, own-initiative
provision and notifications: each a countersigned, audited act with what it needs."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor
from broker.errors import Conflict, InvalidInput, NotPermitted
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_events
from broker.messages.service import custody_of, forward
from broker.messages.states import State
from contact_points.review import notifications
from contact_points.review.content import acknowledge_conditions, read_content
from contact_points.review.own_initiative import provide
from contact_points.review.service import allowed_actions
from tests.broker.messages.spoc_builders import (
    URGENT_DIRECT,
    audit_entries,
    committed,
    decide_as,
    officer_headers,
    submit_as,
    user,
)
from tests.factories import Region


def _actor(db: Session, username: str) -> Actor:
    officer = user(db, username)
    return Actor(officer.username, officer.role)


def test_an_extension_needs_a_coded_reason_and_is_recorded(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", priority=URGENT_DIRECT)
    decide_as(db, keys, "al-officer", message.id, "approve")
    forward(db, keys, message.id)  # only the requested contact point extends its deadline
    before = message.deadline_at
    assert before is not None
    with pytest.raises(ValueError, match="'extend' needs an extension_reason"):
        decide_as(db, keys, "mk-officer", message.id, "extend", extend_hours=4, reason="awaiting a judge")
    decide_as(
        db,
        keys,
        "mk-officer",
        message.id,
        "extend",
        extend_hours=4,
        extension_reason="judicial-authorisation-pending",
        reason="awaiting the investigating judge",
    )
    assert message.deadline_at == before + timedelta(hours=4)
    assert message.extended_seconds == 4 * 3600
    assert message.state == State.DESTINATION_REVIEW
    step = custody_of(db, message.id)[-1]
    assert (step.decision, step.reason, step.party) == (
        "deadline-extended",
        "judicial-authorisation-pending: awaiting the investigating judge",
        "MK-SPOC",
    )
    [event] = [e for e in deadline_events(db, message.id) if e.kind == "extended"]
    assert (event.seconds, event.reason_code, event.reason, event.actor) == (
        4 * 3600,
        "judicial-authorisation-pending",
        "awaiting the investigating judge",
        "mk-officer",
    )
    [entry] = audit_entries(db, object_id=message.id, action=AuditAction.DEADLINE_EXTENDED)
    assert entry.details["seconds"] == 4 * 3600
    assert entry.details["reason_code"] == "judicial-authorisation-pending"


def test_a_message_without_a_deadline_cannot_be_extended(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    notification = submit_as(
        db, keys, region, "AL-ASP", destination_country="MK", message_type="notification"
    )
    decide_as(db, keys, "al-officer", notification.id, "approve")
    forward(db, keys, notification.id)
    assert "extend" not in allowed_actions(db, user(db, "mk-officer"), notification, "inbound", keys=keys)
    with pytest.raises(Conflict, match="no deadline"):
        decide_as(
            db,
            keys,
            "mk-officer",
            notification.id,
            "extend",
            extend_hours=2,
            extension_reason="judicial-authorisation-pending",
        )
    # Art. 6 grounds refuse requests; a notification is not offered "refuse", and decide() refuses it too.
    assert "refuse" not in allowed_actions(db, user(db, "mk-officer"), notification, "inbound", keys=keys)
    with pytest.raises(Conflict, match="only a request is refused"):
        decide_as(db, keys, "mk-officer", notification.id, "refuse", refusal_ground="not-available")


def test_officers_take_messages_and_supervisors_assign_them(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", classification="CONFIDENTIAL")
    decide_as(db, keys, "al-officer2", message.id, "assign", assign_to="al-officer2")
    assert message.assigned_to == user(db, "al-officer2").id
    with pytest.raises(NotPermitted, match="assign messages to themselves"):
        decide_as(db, keys, "al-officer2", message.id, "assign", assign_to="al-supervisor")
    with pytest.raises(InvalidInput, match="not cleared"):
        decide_as(db, keys, "al-supervisor", message.id, "assign", assign_to="al-officer")  # RESTRICTED
    with pytest.raises(InvalidInput, match="not an officer of AL-SPOC"):
        decide_as(db, keys, "al-supervisor", message.id, "assign", assign_to="mk-officer2")
    decide_as(db, keys, "al-supervisor", message.id, "assign", assign_to="al-supervisor")
    assert message.assigned_to == user(db, "al-supervisor").id
    assert [s.decision for s in custody_of(db, message.id)][-2:] == ["assigned", "assigned"]
    entries = audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_ASSIGNED)
    assert [e.details["to"] for e in entries] == ["al-officer2", "al-supervisor"]


def test_the_decisions_offered_are_exactly_the_allowed_ones(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", classification="CONFIDENTIAL")
    assert allowed_actions(db, user(db, "al-officer"), message, "outbound", keys=keys) == []  # not cleared
    officer2 = user(db, "al-officer2")
    assert allowed_actions(db, officer2, message, "outbound", keys=keys) == [
        "approve",
        "reject",
        "return",
        "assign",
    ]
    decide_as(db, keys, "al-officer2", message.id, "approve")
    assert "approve" not in allowed_actions(db, officer2, message, "outbound", keys=keys)  # not twice
    assert "approve" in allowed_actions(db, user(db, "al-supervisor"), message, "outbound", keys=keys)
    decide_as(db, keys, "al-supervisor", message.id, "approve")
    assert allowed_actions(db, user(db, "al-supervisor"), message, "outbound", keys=keys) == []  # forwarded
    forward(db, keys, message.id)
    assert allowed_actions(db, user(db, "mk-officer2"), message, "inbound", keys=keys) == [
        "accept",
        "route",
        "refuse",
        "return",
        "assign",
        "extend",
    ]


def test_h3_conditions_are_shown_and_acknowledged_before_the_content(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    payload = json.dumps({"q": "bank records", "conditions": "Not to be used in court proceedings."}).encode()
    message = submit_as(
        db, keys, region, "AL-ASP", destination_country="MK", handling_codes=("H0", "H3"), payload=payload
    )
    officer = user(db, "al-officer")
    first = read_content(db, keys, officer, message.id, actor=_actor(db, "al-officer"))
    assert (first.readable, first.plaintext, first.acknowledgement_required) == (False, None, True)
    assert first.conditions == "Not to be used in court proceedings."
    acknowledge_conditions(db, officer, message.id, actor=_actor(db, "al-officer"))
    acknowledge_conditions(db, officer, message.id, actor=_actor(db, "al-officer"))  # idempotent
    second = read_content(db, keys, officer, message.id, actor=_actor(db, "al-officer"))
    assert second.readable is True
    assert second.plaintext == payload
    reads = audit_entries(db, object_id=message.id, action=AuditAction.CONTENT_READ)
    assert [r.outcome for r in reads] == ["conditions-only", "ok"]
    assert len(audit_entries(db, object_id=message.id, action=AuditAction.CONDITIONS_ACKNOWLEDGED)) == 1
    other = read_content(db, keys, user(db, "al-officer2"), message.id, actor=_actor(db, "al-officer2"))
    assert other.acknowledgement_required is True  # each officer acknowledges for themselves


def test_an_officer_provides_information_on_own_initiative_and_another_approves_it(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    author = user(db, "al-officer2")
    message = provide(
        db,
        keys,
        author,
        destination_country="MK",
        category="drug-trafficking",
        classification="RESTRICTED",
        handling_codes=["H0"],
        information="A shipment leaves Durrës on Friday.",
        conditions="Do not act before Friday.",
        actor=_actor(db, "al-officer2"),
    )
    assert (message.type, message.sender_agency, message.state) == (
        "notification",
        "AL-SPOC",
        "origin_review",
    )
    assert message.handling_codes == ["H0", "H3"]
    assert message.deadline_at is None
    assert "approve" not in allowed_actions(db, author, message, "outbound", keys=keys)
    acknowledge_conditions(db, author, message.id, actor=_actor(db, "al-officer2"))
    with pytest.raises(Conflict, match="you wrote this provision"):
        decide_as(db, keys, "al-officer2", message.id, "approve")
    acknowledge_conditions(db, user(db, "al-officer"), message.id, actor=_actor(db, "al-officer"))
    decide_as(db, keys, "al-officer", message.id, "approve")  # H3: only after reading its conditions
    assert message.state == State.FORWARDED
    forward(db, keys, message.id)
    mk = user(db, "mk-officer")
    acknowledge_conditions(db, mk, message.id, actor=_actor(db, "mk-officer"))
    content = read_content(db, keys, mk, message.id, actor=_actor(db, "mk-officer"))
    assert content.plaintext is not None
    assert json.loads(content.plaintext)["information"] == "A shipment leaves Durrës on Friday."
    [submitted] = audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_SUBMITTED)
    assert submitted.actor == "al-officer2"


def test_own_initiative_above_ones_clearance_is_refused(db: Session, keys: DatabaseKeyStore) -> None:
    with pytest.raises(NotPermitted):
        provide(
            db,
            keys,
            user(db, "al-officer"),
            destination_country="MK",
            category="fraud",
            classification="CONFIDENTIAL",
            handling_codes=["H0"],
            information="x",
            actor=_actor(db, "al-officer"),
        )


def test_notifications_are_seen_by_their_audience_and_dismissed_with_an_audit_entry(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", classification="CONFIDENTIAL")
    decide_as(db, keys, "al-supervisor", message.id, "assign", assign_to="al-officer2")
    [note] = [n for n in notifications.for_user(db, user(db, "al-officer2")) if n.message_id == message.id]
    assert note.kind == "assigned"
    assert all(n.id != note.id for n in notifications.for_user(db, user(db, "al-officer")))  # addressed
    notifications.notify(
        db, contact_point_id="AL-SPOC", kind="deadline-breach", text="late", audience="supervisor"
    )
    assert any(n.kind == "deadline-breach" for n in notifications.for_user(db, user(db, "al-supervisor")))
    assert not any(n.kind == "deadline-breach" for n in notifications.for_user(db, user(db, "al-officer2")))
    notifications.dismiss(db, user(db, "al-officer2"), note.id, actor=_actor(db, "al-officer2"))
    assert all(n.id != note.id for n in notifications.for_user(db, user(db, "al-officer2")))
    assert audit_entries(db, object_id=str(note.id), action=AuditAction.NOTIFICATION_DISMISSED)


def test_the_api_shows_urgency_custody_signatures_and_allowed_actions(
    client: TestClient, region: Region
) -> None:
    from tests.factories import agency_client

    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(
        payload=b'{"q": "hostage"}', destination_country="MK", category="kidnapping", priority=URGENT_DIRECT
    )
    message_id = asker.submit(envelope)["message_id"]
    headers = officer_headers(client, region, "al-officer")
    detail = client.get(f"/v1/cp/messages/{message_id}", headers=headers).json()
    assert detail["urgency_reason"] == "threat-to-life-or-physical-integrity"
    assert detail["urgency_reason_label"].startswith("Necessary to prevent an imminent threat")
    assert detail["urgency_explanation"] == URGENT_DIRECT["urgency_explanation"]
    assert detail["time_left"].startswith("7 h")
    assert [c["signature"] for c in detail["custody"]] == ["verified"]
    assert detail["allowed_actions"] == ["approve", "reject", "return", "assign"]
    assert [e["kind"] for e in detail["deadline_events"]] == ["set"]
    content = client.get(f"/v1/cp/messages/{message_id}/content", headers=headers).json()
    assert base64.b64decode(content["payload_b64"]) == b'{"q": "hostage"}'
    provided = client.post(
        "/v1/cp/provisions",
        json={"destination_country": "MK", "category": "fraud", "information": "spontaneous tip"},
        headers=headers,
    )
    assert provided.status_code == 201, provided.text
    assert provided.json()["own_initiative"] is True
    with committed(client) as session:
        assert audit_entries(session, object_id=provided.json()["message_id"])


def test_a_cookie_session_needs_the_csrf_header_on_api_writes(client: TestClient, region: Region) -> None:
    login = client.post(
        "/v1/auth/login", json={"username": "al-officer", "password": region.password("al-officer")}
    )
    token, csrf = login.json()["token"], login.json()["csrf_token"]
    client.cookies.set("spoc_session", token)
    try:
        assert client.get("/v1/cp/queues/outbound").status_code == 200  # reads need no token
        refused = client.post(
            "/v1/cp/provisions", json={"destination_country": "MK", "category": "fraud", "information": "x"}
        )
        assert refused.status_code == 403
        assert "X-CSRF-Token" in refused.json()["detail"]
        accepted = client.post(
            "/v1/cp/provisions",
            json={"destination_country": "MK", "category": "fraud", "information": "x"},
            headers={"X-CSRF-Token": csrf},
        )
        assert accepted.status_code == 201
    finally:
        client.cookies.clear()
