"""The pull inbox: delivery at-least-once, de-duplicated at the receiver; acknowledgements idempotent."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor
from broker.client.agency import ClientError
from broker.crypto import KeyPair
from broker.crypto.countersign import sign_receipt
from broker.delivery.models import InboxItem
from broker.delivery.service import acknowledge, pending_items
from broker.directory.service import get_agency
from broker.errors import InvalidInput, NotFound, VerificationError
from broker.keys.service import DatabaseKeyStore
from broker.messages.service import deliver
from broker.messages.states import State
from tests.broker.messages.spoc_builders import (
    audit_entries,
    delivered_message,
    drain,
    receipt_for,
    routed_message,
    submit_as,
)
from tests.factories import Region, agency_client, officer_client


def _items(session: Session, message_id: str) -> list[InboxItem]:
    return list(session.scalars(select(InboxItem).where(InboxItem.message_id == message_id)).all())


def test_delivering_twice_leaves_one_inbox_item(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = routed_message(db, keys, region)
    deliver(db, message.id)
    deliver(db, message.id)
    [item] = _items(db, message.id)
    assert item.agency_id == "AL-ASP"
    assert message.state == State.DELIVERED
    assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_DELIVERED)) == 1


def test_a_redelivery_of_a_routed_message_does_not_duplicate_the_item(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    """The receiver de-duplicates even if the state change of a first delivery was lost."""
    message = routed_message(db, keys, region)
    db.add(InboxItem(agency_id="AL-ASP", message_id=message.id))
    db.flush()
    deliver(db, message.id)
    assert len(_items(db, message.id)) == 1
    assert message.state == State.DELIVERED


def test_a_message_not_routed_is_not_delivered(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL", destination_agency="AL-ASP")
    deliver(db, message.id)
    assert _items(db, message.id) == []
    assert message.state == State.ORIGIN_REVIEW


def test_acknowledging_twice_is_harmless(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = delivered_message(db, keys, region)
    agency = get_agency(db, "AL-ASP")
    actor = Actor("AL-ASP", "agency")
    assert [m.id for _, m in pending_items(db, agency, limit=500)].count(message.id) == 1

    first_receipt = receipt_for(region, "AL-ASP", message)
    first = acknowledge(db, keys, agency, message.id, receipt=first_receipt, actor=actor)
    acked_at = first.acked_at
    second = acknowledge(
        db, keys, agency, message.id, receipt=receipt_for(region, "AL-ASP", message), actor=actor
    )

    assert acked_at is not None
    assert second.id == first.id
    assert second.acked_at == acked_at
    assert second.receipt == first_receipt  # the first receipt is kept
    assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_ACKNOWLEDGED)) == 1
    assert message.id not in [m.id for _, m in pending_items(db, agency, limit=500)]


def test_an_agency_cannot_acknowledge_another_agencys_message(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = delivered_message(db, keys, region)
    with pytest.raises(NotFound):
        acknowledge(
            db,
            keys,
            get_agency(db, "AL-BMP"),
            message.id,
            receipt=receipt_for(region, "AL-BMP", message),
            actor=Actor("AL-BMP", "agency"),
        )
    [item] = _items(db, message.id)
    assert item.acked_at is None
    assert audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_ACKNOWLEDGED) == []


def test_a_receipt_for_other_bytes_or_signed_by_another_key_is_refused(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = delivered_message(db, keys, region)
    agency = get_agency(db, "AL-ASP")
    actor = Actor("AL-ASP", "agency")
    wrong_bytes = receipt_for(region, "AL-ASP", message, digest="sha-256:00")
    with pytest.raises(InvalidInput):
        acknowledge(db, keys, agency, message.id, receipt=wrong_bytes, actor=actor)
    statement = {"type": "receipt", "message_id": message.id, "digest": message.digest, "agency": "AL-ASP"}
    other_key = KeyPair.from_private_jwk(region.seed.agencies["AL-BMP"].signing_key)
    signed_by_other = sign_receipt(statement, key=other_key)
    with pytest.raises(VerificationError):
        acknowledge(db, keys, agency, message.id, receipt=signed_by_other, actor=actor)
    [item] = _items(db, message.id)
    assert item.acked_at is None


def test_inbox_over_http(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(payload=b'{"q": "plates"}', destination_country="AL", category="vehicle-crime")
    message_id = asker.submit(envelope)["message_id"]
    officer_client(region, "xk-officer", client).decide(message_id, "approve")
    drain(client)
    officer_client(region, "al-officer", client).decide(message_id, "route", route_to_agency="AL-ASP")
    drain(client)
    drain(client)  # a second run of the worker delivers nothing twice

    owner = agency_client(region, "AL-ASP", client)
    items = [i for i in owner.inbox(limit=500) if i["message_id"] == message_id]
    assert len(items) == 1
    other = agency_client(region, "AL-BMP", client)
    assert message_id not in [i["message_id"] for i in other.inbox(limit=500)]

    opened = owner.open(items[0])
    with pytest.raises(ClientError) as foreign:
        other.ack(opened)
    assert foreign.value.status == 404

    owner.ack(opened)
    owner.ack(opened)  # harmless the second time
    assert message_id not in [i["message_id"] for i in owner.inbox(limit=500)]
    status = asker.status(message_id)
    assert status["state"] == "delivered"
    assert [r["agency"] for r in status["receipts"]] == ["AL-ASP"]
