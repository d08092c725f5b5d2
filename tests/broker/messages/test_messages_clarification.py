"""The clarification loop: a contact point returns a message, the sender amends and resubmits it, the
history is kept and the deadline clock stops in between (Directive (EU) 2023/977 Art. 6(3))."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.directory.service import get_agency
from broker.errors import Conflict, InvalidInput, NotFound
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_events
from broker.messages.models import Message, ReviewNotification
from broker.messages.service import custody_of, forward, resubmit
from broker.messages.states import State
from contact_points.review.service import message_in_scope, queue
from tests.broker.messages.spoc_builders import (
    URGENT_DIRECT,
    agency_actor,
    agency_http,
    audit_entries,
    build_envelope,
    decide_as,
    drain,
    officer_headers,
    submit_as,
    user,
)
from tests.factories import Region, agency_client


def _amend(
    db: Session, keys: DatabaseKeyStore, region: Region, original: Message, **envelope: Any
) -> Message:
    raw = build_envelope(
        keys,
        region,
        original.sender_agency,
        destination_country=original.destination_country,
        conversation_id=original.conversation_id,
        payload=b'{"q": "who owns the van", "plate": "PR-123-AB"}',
        **envelope,
    )
    return resubmit(
        db,
        keys,
        agency=get_agency(db, original.sender_agency),
        original_id=original.id,
        raw=raw,
        actor=agency_actor(original.sender_agency),
    )


def test_a_returned_request_stops_its_clock_and_the_amendment_runs_it_on(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    original = submit_as(db, keys, region, "XK-KP", destination_country="AL", priority=URGENT_DIRECT)
    assert original.deadline_at == original.received_at + timedelta(hours=8)
    decide_as(db, keys, "xk-officer", original.id, "return", reason="name the vehicle")
    assert original.state == State.RETURNED
    assert original.paused_at is not None
    original.paused_at -= timedelta(hours=2)  # the sender took two hours to clarify
    db.flush()

    amended = _amend(db, keys, region, original, priority=URGENT_DIRECT)

    assert amended.state == State.ORIGIN_REVIEW
    assert amended.supersedes == original.id
    assert amended.conversation_id == original.conversation_id
    assert original.state == State.SUPERSEDED
    assert amended.deadline_at is not None
    stood = amended.deadline_at - (original.received_at + timedelta(hours=8))
    assert timedelta(hours=2) <= stood <= timedelta(hours=2, seconds=5)  # deadline moved by the pause
    assert amended.clock_started_at == original.received_at  # still from the first submission
    assert amended.paused_at is None
    assert [e.kind for e in deadline_events(db, original.id)] == ["set", "paused"]
    assert [e.kind for e in deadline_events(db, amended.id)] == ["set", "resumed"]
    # history kept: the original keeps its envelope, custody and audit trail
    assert [s.decision for s in custody_of(db, original.id)] == ["submitted", "returned"]
    assert custody_of(db, original.id)[-1].reason == "name the vehicle"
    assert audit_entries(db, object_id=original.id, action=AuditAction.DEADLINE_PAUSED)
    assert audit_entries(db, object_id=original.id, action=AuditAction.MESSAGE_SUPERSEDED)
    [resubmitted] = audit_entries(db, object_id=amended.id, action=AuditAction.MESSAGE_RESUBMITTED)
    assert resubmitted.details == {"supersedes": original.id}


def test_an_amendment_may_change_the_priority_counted_from_the_first_submission(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    original = submit_as(db, keys, region, "XK-KP", destination_country="AL", priority=URGENT_DIRECT)
    decide_as(db, keys, "xk-officer", original.id, "return", reason="is it really urgent?")
    amended = _amend(db, keys, region, original)  # normal priority now: 7 days
    assert amended.deadline_at is not None
    assert original.received_at + timedelta(days=7) <= amended.deadline_at
    assert amended.deadline_at - (original.received_at + timedelta(days=7)) < timedelta(seconds=5)


def test_the_destination_asks_for_clarification_and_sees_the_amendment_after_origin_review(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    original = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    decide_as(db, keys, "xk-officer", original.id, "approve")
    forward(db, keys, original.id)
    decide_as(db, keys, "al-officer", original.id, "return", reason="which of the two vans?")
    assert original.state == State.CLARIFICATION_REQUESTED
    assert original.paused_at is not None
    assert custody_of(db, original.id)[-1].decision == "clarification-requested"
    note = db.scalar(
        select(ReviewNotification).where(
            ReviewNotification.message_id == original.id, ReviewNotification.kind == "clarification"
        )
    )
    assert note is not None
    assert note.contact_point_id == "XK-SPOC"  # the requesting contact point is told
    assert message_in_scope(db, user(db, "al-officer"), original.id)[2] == "inbound"

    amended = _amend(db, keys, region, original)
    assert amended.state == State.ORIGIN_REVIEW  # the amendment is reviewed again by the origin
    assert amended.id not in [m.id for m in queue(db, user(db, "al-officer"), "inbound", limit=500)]
    decide_as(db, keys, "xk-officer", amended.id, "approve")
    forward(db, keys, amended.id)
    inbound = [m.id for m in queue(db, user(db, "al-officer"), "inbound", limit=500)]
    assert amended.id in inbound
    # The superseded original stays visible to the destination, which had received it.
    assert message_in_scope(db, user(db, "al-officer"), original.id)[0].state == State.SUPERSEDED


def test_a_message_returned_by_the_origin_never_reaches_the_destination(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    original = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    decide_as(db, keys, "xk-officer", original.id, "return", reason="incomplete")
    _amend(db, keys, region, original)
    with pytest.raises(NotFound):
        message_in_scope(db, user(db, "al-officer"), original.id)


def test_only_the_sender_resubmits_only_a_returned_message_and_keeps_the_conversation(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    pending = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    with pytest.raises(Conflict, match="only a message returned for clarification"):
        _amend(db, keys, region, pending)
    decide_as(db, keys, "xk-officer", pending.id, "return", reason="incomplete")
    raw = build_envelope(
        keys, region, "XK-BP", destination_country="AL", conversation_id=pending.conversation_id
    )
    with pytest.raises(NotFound):
        resubmit(
            db,
            keys,
            agency=get_agency(db, "XK-BP"),
            original_id=pending.id,
            raw=raw,
            actor=agency_actor("XK-BP"),
        )
    raw = build_envelope(keys, region, "XK-KP", destination_country="AL")  # a new conversation
    with pytest.raises(InvalidInput, match="conversation_id"):
        resubmit(
            db,
            keys,
            agency=get_agency(db, "XK-KP"),
            original_id=pending.id,
            raw=raw,
            actor=agency_actor("XK-KP"),
        )
    assert pending.state == State.RETURNED


def test_the_sender_learns_what_to_clarify_and_resubmits_over_the_api(
    client: TestClient, region: Region
) -> None:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(payload=b'{"q": "van"}', destination_country="AL", category="migrant-smuggling")
    message_id = asker.submit(envelope)["message_id"]
    headers = officer_headers(client, region, "xk-officer")
    returned = client.post(
        f"/v1/cp/messages/{message_id}/decisions",
        json={"action": "return", "reason": "Which van? Give the plate."},
        headers=headers,
    )
    assert returned.status_code == 200
    status = asker.status(message_id)
    assert status["state"] == "returned"
    assert status["clarification_request"] == "Which van? Give the plate."
    assert status["deadline_paused"] is True

    amended = asker.build(
        payload=b'{"q": "van", "plate": "PR-123-AB"}',
        destination_country="AL",
        category="migrant-smuggling",
        conversation_id=envelope["header"]["conversation_id"],
    )
    http = agency_http(client, region, "XK-KP")
    response = http.post(
        f"/v1/messages/{message_id}/resubmissions", json=amended, headers={"Idempotency-Key": "amend-1"}
    )
    assert response.status_code == 202, response.text
    new_id = response.json()["message_id"]
    again = http.post(
        f"/v1/messages/{message_id}/resubmissions", json=amended, headers={"Idempotency-Key": "amend-1"}
    )
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert asker.status(message_id)["superseded_by"] == new_id
    assert asker.status(new_id)["supersedes"] == message_id
    assert asker.status(new_id)["state"] == "origin_review"
    twice = http.post(f"/v1/messages/{message_id}/resubmissions", json=amended)
    assert twice.status_code == 409
    drain(client)
