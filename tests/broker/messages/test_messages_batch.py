"""Batch submission through the service: each envelope gets every check of a single submission and is
stored or refused on its own, with the same rows and audit entries as if it had come alone."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.directory.service import get_agency
from broker.errors import Conflict, InvalidInput, NotPermitted, PolicyRefused, VerificationError
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import DeadlineEvent, Message
from broker.messages.service import custody_of, message_digest, submit, submit_batch
from broker.messages.states import State
from tests.broker.messages.spoc_builders import agency_actor, audit_entries, build_envelope
from tests.factories import Region


def _batch(db: Session, keys: DatabaseKeyStore, raws: list[Any], agency: str = "AL-ASP") -> list[Any]:
    return submit_batch(db, keys, agency=get_agency(db, agency), raws=raws, actor=agency_actor(agency))


def test_every_envelope_of_a_batch_is_stored_as_a_single_submission_would_be(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    raws = [
        build_envelope(keys, region, "AL-ASP", destination_country=cc, category="fraud")
        for cc in ("MK", "HR", "SI")
    ]
    results = _batch(db, keys, raws)

    assert [m.id for m in results] == [r["header"]["message_id"] for r in raws]
    for raw, message in zip(raws, results, strict=True):
        db.expire(message)
        stored = db.get(Message, raw["header"]["message_id"])
        assert stored is not None
        assert stored.state == State.ORIGIN_REVIEW
        assert stored.envelope == raw
        assert stored.digest == message_digest(raw)
        [step] = custody_of(db, stored.id)
        assert (step.seq, step.decision, step.signature) == (0, "submitted", raw["signature"])
        actions = [e.action for e in audit_entries(db, object_id=stored.id)]
        assert actions == [AuditAction.MESSAGE_SUBMITTED, AuditAction.MESSAGE_QUEUED]
        kinds = db.scalars(select(DeadlineEvent.kind).where(DeadlineEvent.message_id == stored.id)).all()
        assert kinds == ["set"]
        assert stored.deadline_at is not None


def test_a_refused_envelope_leaves_nothing_and_does_not_hold_back_the_others(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    good = build_envelope(keys, region, "AL-ASP", destination_country="MK", category="fraud")
    unsigned = build_envelope(keys, region, "AL-ASP", destination_country="MK", category="fraud")
    unsigned["header"]["category"] = "terrorism"  # changed after signing
    other_sender = build_envelope(keys, region, "MK-MOI", destination_country="AL", category="fraud")
    not_covered = build_envelope(
        keys, region, "AL-ASP", destination_country="RS", category="fraud", classification="CONFIDENTIAL"
    )
    not_an_envelope: dict[str, Any] = {"header": {"message_id": str(uuid.uuid4())}}
    last = build_envelope(keys, region, "AL-ASP", destination_country="HR", category="fraud")

    before = db.scalar(select(func.count()).select_from(Message)) or 0
    results = _batch(db, keys, [good, unsigned, other_sender, not_covered, not_an_envelope, 7, last])
    assert db.scalar(select(func.count()).select_from(Message)) == before + 2  # good and last, nothing else

    assert isinstance(results[0], Message)
    assert isinstance(results[1], VerificationError)
    assert isinstance(results[2], NotPermitted)
    assert isinstance(results[3], PolicyRefused)
    assert results[3].extra["reason"] == "classification-not-covered"
    assert isinstance(results[4], InvalidInput)
    assert results[4].extra["errors"]  # the schema errors are named
    assert isinstance(results[5], InvalidInput)
    assert isinstance(results[6], Message)
    for refused in (unsigned, other_sender, not_covered):
        assert db.get(Message, refused["header"]["message_id"]) is None
        assert audit_entries(db, object_id=refused["header"]["message_id"]) == []  # the API audits refusals
    stored = db.scalars(select(Message.id).where(Message.sender_agency.in_(("AL-ASP", "MK-MOI")))).all()
    assert {good["header"]["message_id"], last["header"]["message_id"]} <= set(stored)


def test_a_batch_refuses_a_message_id_already_stored_or_repeated_in_it(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    earlier = build_envelope(keys, region, "AL-ASP", destination_country="MK", category="fraud")
    submit(db, keys, agency=get_agency(db, "AL-ASP"), raw=earlier, actor=agency_actor("AL-ASP"))
    twice = build_envelope(keys, region, "AL-ASP", destination_country="HR", category="fraud")

    results = _batch(db, keys, [earlier, twice, twice])

    assert isinstance(results[0], Conflict)
    assert "already submitted" in results[0].detail
    assert isinstance(results[1], Message)
    assert isinstance(results[2], Conflict)
    assert "twice" in results[2].detail
    count = db.scalars(select(Message.id).where(Message.id == twice["header"]["message_id"])).all()
    assert len(count) == 1


def test_a_batch_applies_the_accreditation_of_the_addressee(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    too_high = build_envelope(
        keys,
        region,
        "AL-ASP",
        destination_country="MK",
        classification="CONFIDENTIAL",
        destination_agency="MK-BP",
    )
    [result] = _batch(db, keys, [too_high])
    assert isinstance(result, PolicyRefused)
    assert result.extra["reason"] == "accreditation"
    assert db.get(Message, too_high["header"]["message_id"]) is None
