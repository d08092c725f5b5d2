"""Submission through the service: what is stored, audited and queued, and the rules for answers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.directory.service import get_agency
from broker.errors import NotPermitted, PolicyRefused
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import custody_of, message_digest, submit
from broker.messages.states import State
from broker.outbox.models import OutboxItem
from tests.broker.messages.spoc_builders import (
    agency_actor,
    audit_entries,
    build_envelope,
    decide_as,
    delivered_message,
    submit_as,
)
from tests.factories import Region


def test_a_valid_request_is_stored_in_origin_review_with_custody_and_audit(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    raw = build_envelope(keys, region, "AL-ASP", destination_country="MK", category="fraud")
    message = submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=raw, actor=agency_actor("AL-ASP"))

    assert message.id == raw["header"]["message_id"]
    assert message.state == State.ORIGIN_REVIEW
    assert message.envelope == raw
    assert message.digest == message_digest(raw)
    [step] = custody_of(db, message.id)
    assert (step.seq, step.party, step.decision, step.to_state) == (0, "AL-ASP", "submitted", "submitted")
    assert step.signature == raw["signature"]
    actions = [e.action for e in audit_entries(db, object_id=message.id)]
    assert actions == [AuditAction.MESSAGE_SUBMITTED, AuditAction.MESSAGE_QUEUED]
    [submitted] = audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_SUBMITTED)
    assert submitted.details["legal_basis"] == "DEMO/AL-MK/police-cooperation"
    assert submitted.actor == "AL-ASP"
    assert sorted(submitted.countries) == ["AL", "MK"]


def test_the_audit_entries_of_a_submission_hold_no_content(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", payload=b"SUBJECT-NAME-4711")
    for entry in audit_entries(db, object_id=message.id):
        assert "SUBJECT-NAME-4711" not in str(entry.details)
        assert message.envelope["payload"]["ciphertext"] not in str(entry.details)


def test_nothing_is_queued_for_delivery_before_review(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK")
    assert db.scalars(select(OutboxItem).where(OutboxItem.message_id == message.id)).all() == []


def test_header_naming_another_sender_is_not_permitted(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    raw = build_envelope(keys, region, "AL-ASP", destination_country="MK")
    with pytest.raises(NotPermitted):
        submit(db, keys, agency=get_agency(db, "AL-BMP"), raw=raw, actor=agency_actor("AL-BMP"))
    assert db.get(Message, raw["header"]["message_id"]) is None


def test_destination_agency_must_be_accredited_for_the_classification(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    with pytest.raises(PolicyRefused) as refused:
        submit_as(
            db,
            keys,
            region,
            "AL-ASP",
            destination_country="MK",
            classification="CONFIDENTIAL",
            destination_agency="MK-BP",
        )
    assert refused.value.extra["reason"] == "accreditation"
    assert "MK-BP" in refused.value.detail


# --- answers ------------------------------------------------------------------------------------------


def _answer(
    keys: DatabaseKeyStore, region: Region, original: Message, *, agency: str = "AL-ASP", **overrides: str
) -> dict[str, object]:
    fields: dict[str, Any] = {
        "destination_country": original.origin_country,
        "destination_agency": original.sender_agency,
        "conversation_id": original.conversation_id,
        "in_reply_to": original.id,
    }
    fields.update(overrides)
    return build_envelope(keys, region, agency, message_type="response", category=original.category, **fields)


def test_an_answer_to_a_delivered_request_marks_it_answered(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    original = delivered_message(db, keys, region)
    raw = _answer(keys, region, original)
    answer = submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=raw, actor=agency_actor("AL-ASP"))
    assert answer.state == State.ORIGIN_REVIEW
    assert answer.in_reply_to == original.id
    assert answer.deadline_at is None
    assert original.state == State.ANSWERED
    assert audit_entries(db, object_id=original.id, action=AuditAction.MESSAGE_ANSWERED)


def test_only_the_addressed_agency_may_answer(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    original = delivered_message(db, keys, region)
    raw = _answer(keys, region, original, agency="AL-CUS")
    with pytest.raises(PolicyRefused) as refused:
        submit(db, keys, agency=get_agency(db, "AL-CUS"), raw=raw, actor=agency_actor("AL-CUS"))
    assert refused.value.extra["reason"] == "unknown-original"
    assert original.state == State.DELIVERED


def test_an_answer_goes_back_to_the_origin_country(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    original = delivered_message(db, keys, region)
    raw = _answer(keys, region, original, destination_country="MK", destination_agency="MK-MOI")
    with pytest.raises(PolicyRefused) as refused:
        submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=raw, actor=agency_actor("AL-ASP"))
    assert refused.value.extra["reason"] == "wrong-destination"


def test_an_answer_keeps_the_conversation(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    original = delivered_message(db, keys, region)
    raw = _answer(keys, region, original, conversation_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(PolicyRefused) as refused:
        submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=raw, actor=agency_actor("AL-ASP"))
    assert refused.value.extra["reason"] == "wrong-conversation"


def test_an_answer_to_an_unknown_message_is_refused(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    raw = build_envelope(
        keys,
        region,
        "AL-ASP",
        message_type="response",
        destination_country="XK",
        in_reply_to="00000000-0000-4000-8000-000000000001",
    )
    with pytest.raises(PolicyRefused) as refused:
        submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=raw, actor=agency_actor("AL-ASP"))
    assert refused.value.extra["reason"] == "unknown-original"


@pytest.mark.parametrize("stop", ["origin_review", "rejected"])
def test_an_answer_to_a_request_never_delivered_is_refused(
    db: Session, keys: DatabaseKeyStore, region: Region, stop: str
) -> None:
    """Being named as destination agency is not enough: the request must have reached the agency. Otherwise
    it could "answer" a request its contact point never received, even one the sender's contact point
    rejected."""
    original = submit_as(db, keys, region, "XK-KP", destination_country="AL", destination_agency="AL-ASP")
    if stop == "rejected":
        decide_as(db, keys, "xk-officer", original.id, "reject", reason="wrong agency")
    raw = _answer(keys, region, original)
    with pytest.raises(PolicyRefused) as refused:
        submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=raw, actor=agency_actor("AL-ASP"))
    assert refused.value.extra["reason"] == "unknown-original"
