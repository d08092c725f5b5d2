"""The worker's steps on a batch of outbox rows, set-based (``broker.messages.work``): the same outcome as the
rows one at a time — states, custody steps, audit entries, inbox items — and, when the batch cannot be done
as a whole, each row alone."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.crypto import verify_countersignature
from broker.delivery.models import InboxItem
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import custody_of
from broker.messages.states import State
from broker.messages.work import batch_handlers, prefetch, process
from broker.outbox import service as outbox
from broker.outbox.models import OutboxItem
from tests.broker.messages.spoc_builders import audit_entries, decide_as, submit_as
from tests.factories import Region


def _approved(db: Session, keys: DatabaseKeyStore, region: Region, count: int) -> list[Message]:
    messages = [submit_as(db, keys, region, "XK-KP", destination_country="AL") for _ in range(count)]
    for message in messages:
        decide_as(db, keys, "xk-officer", message.id, "approve")
    return messages


def _rows(db: Session, kind: str, messages: list[Message]) -> list[int]:
    ids = [m.id for m in messages]
    return list(
        db.scalars(
            select(OutboxItem.id).where(
                OutboxItem.kind == kind, OutboxItem.message_id.in_(ids), OutboxItem.done_at.is_(None)
            )
        )
    )


def _as_a_batch(db: Session, keys: DatabaseKeyStore, rows: list[int]) -> int:
    """The rows through the set-based step only: a row left to the one-by-one step would fail."""

    def one_by_one(_session: Session, row: OutboxItem) -> None:
        raise AssertionError(f"row {row.id} was not done by the batch")

    return outbox.process(
        db,
        rows,
        {"forward": one_by_one, "deliver": one_by_one},
        prefetch=prefetch,
        batch_handlers=batch_handlers(keys),
    )


def test_a_batch_of_forwards_is_received_as_one_at_a_time_would_be(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    messages = _approved(db, keys, region, 3)
    rows = _rows(db, "forward", messages)
    assert _as_a_batch(db, keys, rows) == 3
    for message in messages:
        assert message.state == State.DESTINATION_REVIEW
        *before, received = custody_of(db, message.id)
        assert (received.seq, received.party, received.decision) == (
            before[-1].seq + 1,
            "AL-SPOC",
            "received",
        )
        assert (received.from_state, received.to_state) == (State.FORWARDED, State.DESTINATION_REVIEW)
        statement = verify_countersignature(
            received.signature, resolve=lambda kid: keys.resolve(kid, party_id="AL-SPOC")
        )
        assert (statement["message_id"], statement["digest"], statement["seq"]) == (
            message.id,
            message.digest,
            received.seq,
        )
        assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_RECEIVED)) == 1
    assert process(db, keys, rows) == 0  # done rows are skipped: nothing twice
    # The objects are in line with their rows (version included): the next decision is an ordinary one.
    decide_as(db, keys, "al-officer", messages[0].id, "route", route_to_agency="AL-ASP")
    assert messages[0].state == State.ROUTED


def test_a_batch_of_deliveries_puts_each_message_in_its_inbox_once(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    messages = _approved(db, keys, region, 3)
    assert _as_a_batch(db, keys, _rows(db, "forward", messages)) == 3
    for message in messages:
        decide_as(db, keys, "al-officer", message.id, "route", route_to_agency="AL-ASP")
    rows = _rows(db, "deliver", messages)
    assert _as_a_batch(db, keys, rows) == 3
    for message in messages:
        assert message.state == State.DELIVERED
        items = db.scalars(select(InboxItem).where(InboxItem.message_id == message.id)).all()
        assert [(i.agency_id, i.channel, i.status) for i in items] == [("AL-ASP", "pull", "delivered")]
        assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_DELIVERED)) == 1
    assert process(db, keys, rows) == 0
    count = (
        select(func.count()).select_from(InboxItem).where(InboxItem.message_id.in_([m.id for m in messages]))
    )
    assert db.scalar(count) == 3


def test_a_batch_that_cannot_be_done_whole_is_done_row_by_row(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    """One message changed by another transaction after the batch read it: the set-based step refuses to
    overwrite it and is undone; then each row goes alone, and that one finds nothing to do."""
    messages = _approved(db, keys, region, 3)
    rows = _rows(db, "forward", messages)
    moved = messages[1]
    db.execute(
        update(Message)
        .where(Message.id == moved.id)
        .values(state=State.REJECTED, version=Message.version + 1)
        .execution_options(synchronize_session=False)
    )  # behind the session's back: its object still says forwarded
    assert process(db, keys, rows) == 3
    db.refresh(moved)
    assert moved.state == State.REJECTED
    assert [s.decision for s in custody_of(db, moved.id)][-1] != "received"
    assert audit_entries(db, object_id=moved.id, action=AuditAction.MESSAGE_RECEIVED) == []
    for message in (messages[0], messages[2]):
        assert message.state == State.DESTINATION_REVIEW
        assert [s.decision for s in custody_of(db, message.id)][-1] == "received"
        assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_RECEIVED)) == 1
