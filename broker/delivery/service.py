"""Delivering routed messages to agencies: the outbox step, the pull inbox with leases, acknowledgements.

``deliver`` is the outbox handler of a routed message. It writes the one (agency, message) row: a pull
delivery is in the agency's inbox at once (the message becomes ``delivered``); a push delivery is
``pending`` until the worker's push is acknowledged (``broker.delivery.push``). Running it twice changes
nothing. Every function flushes and never commits.

The pull inbox is a queue with leases: ``lease`` hands out unacknowledged items and hides them from
other readers for a visibility timeout; an item leased and not acknowledged comes back after it, so a
reader that crashed loses nothing and the agency de-duplicates by message id. ``acknowledge`` takes the
agency's signed receipt and removes the item for good.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, Actor, record
from broker.config import Settings
from broker.crypto import statement_of, verify_receipt
from broker.db import insert_all, utcnow
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.directory.models import Agency
from broker.errors import InvalidInput, NotFound
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import CustodyStep, Message
from broker.messages.service import transition, transition_many
from broker.messages.states import State

__all__ = [
    "acknowledge",
    "check_receipt",
    "custody_by_message",
    "deliver",
    "deliver_many",
    "inbox_document",
    "lease",
    "mark_delivered",
    "peek",
    "pending_items",
    "receipts_for",
    "start_delivery",
]


def deliver(session: Session, message_id: str, *, now: datetime | None = None) -> InboxItem | None:
    """The outbox step of a routed message: its delivery row to the addressed agency (idempotent)."""
    message = session.get(Message, message_id)
    if message is None or message.state != State.ROUTED or message.destination_agency is None:
        return None  # already delivered (the task ran twice), or not for delivery
    agency = session.get(Agency, message.destination_agency)
    if agency is None:
        return None
    item = session.scalar(
        select(InboxItem).where(InboxItem.agency_id == agency.id, InboxItem.message_id == message.id)
    )
    if item is not None and item.status != DeliveryStatus.SUPERSEDED:
        return item  # scheduled before: a pending push, a dead letter, or already in the inbox
    channel = Channel.PUSH if agency.push_url else Channel.PULL
    return start_delivery(session, message, agency, channel=channel, item=item, now=now)


def deliver_many(session: Session, message_ids: Sequence[str], *, now: datetime | None = None) -> None:
    """:func:`deliver` for many routed messages (the outbox's batch), set-based: one query for the delivery
    rows written before, one INSERT of the new ones, one UPDATE of the messages delivered to a pull inbox
    (``broker.messages.service.transition_many``). A message with a superseded delivery row (re-routed by
    an officer) takes :func:`deliver`'s own path, one at a time."""
    now = now or utcnow()
    messages = [
        m
        for m in (session.get(Message, i) for i in message_ids)
        if m is not None and m.state == State.ROUTED and m.destination_agency is not None
    ]
    agencies = {m.id: session.get(Agency, m.destination_agency) for m in messages}
    todo = [m for m in messages if agencies[m.id] is not None]
    if not todo:
        return
    existing = {
        (item.agency_id, item.message_id): item
        for item in session.scalars(select(InboxItem).where(InboxItem.message_id.in_([m.id for m in todo])))
    }
    items: list[InboxItem] = []
    pulled: list[Message] = []
    for message in todo:
        agency = agencies[message.id]
        assert agency is not None  # noqa: S101 - filtered above
        item = existing.get((agency.id, message.id))
        if item is not None:
            if item.status == DeliveryStatus.SUPERSEDED:
                deliver(session, message.id, now=now)
            continue  # scheduled before: a pending push, a dead letter, or already in the inbox
        push = bool(agency.push_url)
        items.append(
            InboxItem(
                agency_id=agency.id,
                message_id=message.id,
                channel=Channel.PUSH if push else Channel.PULL,
                status=DeliveryStatus.PENDING if push else DeliveryStatus.DELIVERED,
                delivered_at=now,
                next_attempt_at=now if push else None,
                acked_at=None,
                receipt=None,
                attempts=0,
                leased_until=None,
                lease_count=0,
            )
        )
        if not push:
            pulled.append(message)
    insert_all(session, items)
    transition_many(
        session,
        pulled,
        State.DELIVERED,
        action=AuditAction.MESSAGE_DELIVERED,
        actor=lambda _: SYSTEM,
        details=lambda m: {"agency": m.destination_agency, "channel": "pull"},
    )
    session.flush()


def start_delivery(
    session: Session,
    message: Message,
    agency: Agency,
    *,
    channel: Channel,
    item: InboxItem | None = None,
    now: datetime | None = None,
) -> InboxItem:
    """Write (or reset) the delivery row of ``message`` to ``agency`` over ``channel``.

    Pull: the item is in the inbox and the message is ``delivered`` now. Push: the item is ``pending``
    and due at once; the message stays ``routed`` until the agency's endpoint acknowledges it.
    """
    now = now or utcnow()
    if item is None:
        item = InboxItem(agency_id=agency.id, message_id=message.id)
        session.add(item)
    item.channel = channel
    item.delivered_at = now
    item.acked_at = None
    item.receipt = None
    item.attempts = 0
    item.leased_until = None
    item.lease_count = 0
    if channel == Channel.PULL:
        item.status = DeliveryStatus.DELIVERED
        item.next_attempt_at = None
        session.flush()
        transition(
            session,
            message,
            State.DELIVERED,
            actor=SYSTEM,
            action=AuditAction.MESSAGE_DELIVERED,
            details={"agency": agency.id, "channel": "pull"},
        )
    else:
        item.status = DeliveryStatus.PENDING
        item.next_attempt_at = now
        session.flush()
    return item


# --- the pull inbox ------------------------------------------------------------------------------


def _pullable(agency: Agency) -> Any:
    return (
        InboxItem.agency_id == agency.id,
        InboxItem.channel == Channel.PULL,
        InboxItem.status == DeliveryStatus.DELIVERED,
        InboxItem.acked_at.is_(None),
    )


def lease(
    session: Session, agency: Agency, *, limit: int, visibility_seconds: int, after: int = 0
) -> list[tuple[InboxItem, Message]]:
    """Lease up to ``limit`` unacknowledged, unleased items, oldest first, for ``visibility_seconds``.

    On PostgreSQL concurrent readers of one inbox skip each other's rows (``SKIP LOCKED``), so two
    readers never lease the same item at once.
    """
    now = utcnow()
    query = (
        select(InboxItem)
        .where(*_pullable(agency), InboxItem.id > after)
        .where(or_(InboxItem.leased_until.is_(None), InboxItem.leased_until <= now))
        .order_by(InboxItem.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    items = list(session.scalars(query).all())
    until = now + timedelta(seconds=visibility_seconds)
    for item in items:
        item.leased_until = until
        item.lease_count += 1
    session.flush()
    return _with_messages(session, items)


def peek(session: Session, agency: Agency, *, limit: int, after: int = 0) -> list[tuple[InboxItem, Message]]:
    """Every unacknowledged item (leased or not), oldest first, without leasing anything."""
    items = session.scalars(
        select(InboxItem).where(*_pullable(agency), InboxItem.id > after).order_by(InboxItem.id).limit(limit)
    ).all()
    return _with_messages(session, items)


def pending_items(session: Session, agency: Agency, *, limit: int) -> list[tuple[InboxItem, Message]]:
    """Every unacknowledged item, oldest first (``peek`` from the start)."""
    return peek(session, agency, limit=limit)


def _with_messages(session: Session, items: Sequence[InboxItem]) -> list[tuple[InboxItem, Message]]:
    if not items:
        return []
    ids = {i.message_id for i in items}
    messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    return [(i, messages[i.message_id]) for i in items]


def custody_by_message(session: Session, message_ids: Iterable[str]) -> dict[str, list[CustodyStep]]:
    """The chain of custody of many messages in one query."""
    out: dict[str, list[CustodyStep]] = defaultdict(list)
    ids = set(message_ids)
    if ids:
        for step in session.scalars(
            select(CustodyStep)
            .where(CustodyStep.message_id.in_(ids))
            .order_by(CustodyStep.message_id, CustodyStep.seq)
        ):
            out[step.message_id].append(step)
    return out


def inbox_document(item: InboxItem, message: Message, custody: Sequence[CustodyStep]) -> dict[str, Any]:
    """What an agency receives, pulled or pushed: the envelope exactly as stored, with its custody."""
    return {
        "message_id": message.id,
        "delivered_at": item.delivered_at.isoformat(),
        "envelope": message.envelope,
        "custody": [
            {
                "party": s.party,
                "decision": s.decision,
                "at": s.at.isoformat(),
                "signature": s.signature,
            }
            for s in custody
        ],
    }


# --- acknowledgement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptWindow:
    """How far a receipt's ``received_at`` may lie behind (``past``) and ahead of (``future``) the moment the
    broker takes it. It also may not predate the broker's receipt of the message itself.

    A receipt is made when the agency has opened the message and sent at once (the acknowledgement, or the
    answer to a push); an hour behind covers a receiver that answers a re-sent push with the receipt it gave
    the first time (push retries back off to at most ten minutes). A receipt dated "yesterday" is refused,
    not shown to the sender as signed evidence of a time that cannot be true."""

    past: timedelta = timedelta(hours=1)
    future: timedelta = timedelta(minutes=5)

    @classmethod
    def of(cls, settings: Settings) -> ReceiptWindow:
        return cls(
            past=timedelta(seconds=settings.receipt_max_age_seconds),
            future=timedelta(seconds=settings.envelope_max_future_seconds),
        )


DEFAULT_RECEIPT_WINDOW = ReceiptWindow()


def check_receipt(
    keys: DatabaseKeyStore,
    agency_id: str,
    message: Message,
    receipt: str,
    *,
    window: ReceiptWindow = DEFAULT_RECEIPT_WINDOW,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The receipt must be signed by the agency's current key, name this message, its digest and the agency,
    and say it was received within ``window`` of now; returns its statement."""
    now = now or utcnow()
    statement = verify_receipt(receipt, resolve=lambda kid: keys.resolve_at(kid, party_id=agency_id, at=now))
    expected = {"type": "receipt", "message_id": message.id, "digest": message.digest, "agency": agency_id}
    if any(statement.get(k) != v for k, v in expected.items()):
        raise InvalidInput("the receipt does not name this message, its digest and this agency")
    received_at = _instant(statement.get("received_at"))
    earliest = max(now - window.past, message.received_at - window.future)
    if received_at > now + window.future or received_at < earliest:
        raise InvalidInput(
            f"the receipt says the message was received at {statement['received_at']}; the broker takes "
            f"receipts dated from {earliest.isoformat()} (not before the message reached the broker, at "
            f"most {int(window.past.total_seconds())} s ago) to {(now + window.future).isoformat()}: "
            "sign a receipt with the current time",
            reason="received-at",
        )
    return statement


def _instant(value: object) -> datetime:
    """An RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``), as a UTC datetime."""
    if isinstance(value, str) and value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) and "T" in value.upper() else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(
            "the receipt's received_at must be an RFC 3339 date-time with an offset, e.g. "
            "2026-11-23T10:00:00.000000Z",
            reason="received-at",
        )
    return parsed.astimezone(UTC)


def receipt_statement(receipt: str) -> dict[str, Any]:
    """The statement of a receipt the broker verified when it took it (decoded, not verified again)."""
    return statement_of(receipt)


def mark_delivered(
    session: Session, item: InboxItem, message: Message, *, receipt: str, actor: Actor, channel: str
) -> None:
    """Record an acknowledged delivery: receipt kept (the sender sees it), audited; a push also moves
    the message to ``delivered``. Does nothing the second time."""
    if item.acked_at is not None:
        return
    now = utcnow()
    item.acked_at = now
    item.receipt = receipt
    item.leased_until = None
    if item.status == DeliveryStatus.PENDING:  # a push acknowledged (by its answer or over the API)
        item.status = DeliveryStatus.DELIVERED
        item.delivered_at = now
        item.next_attempt_at = None
        if message.state == State.ROUTED:
            transition(
                session,
                message,
                State.DELIVERED,
                actor=SYSTEM,
                action=AuditAction.MESSAGE_DELIVERED,
                details={"agency": item.agency_id, "channel": channel, "attempts": item.attempts},
            )
    record(
        session,
        actor=actor,
        action=AuditAction.MESSAGE_ACKNOWLEDGED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        details={"receipt": "signed", "channel": channel},
    )
    session.flush()


def acknowledge(
    session: Session,
    keys: DatabaseKeyStore,
    agency: Agency,
    message_id: str,
    *,
    receipt: str,
    actor: Actor,
    window: ReceiptWindow = DEFAULT_RECEIPT_WINDOW,
) -> InboxItem:
    """Take the agency's signed receipt for a delivered message: verified, stored, shown to the sender.

    The receipt must be signed by the agency's own key and name this message, its digest and the agency;
    otherwise it is refused and the message stays in the inbox. Acknowledging twice keeps the first receipt.
    A push still pending (its answer was lost) can be acknowledged here too.
    """
    item = session.scalar(
        select(InboxItem).where(
            InboxItem.agency_id == agency.id,
            InboxItem.message_id == message_id,
            InboxItem.status.in_((DeliveryStatus.DELIVERED, DeliveryStatus.PENDING)),
        )
    )
    message = session.get(Message, message_id)
    if item is None or message is None:
        raise NotFound(f"no message {message_id} in the inbox of {agency.id}")
    if item.acked_at is None:  # acknowledging twice keeps the first receipt, whatever the second says
        check_receipt(keys, agency.id, message, receipt, window=window)
    mark_delivered(session, item, message, receipt=receipt, actor=actor, channel=item.channel)
    return item


def receipts_for(session: Session, message_id: str) -> Sequence[InboxItem]:
    return session.scalars(
        select(InboxItem)
        .where(InboxItem.message_id == message_id, InboxItem.receipt.is_not(None))
        .order_by(InboxItem.acked_at)
    ).all()
