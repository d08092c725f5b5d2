"""The destination officers' view of deliveries: dead letters and pushes still retrying, and two actions.

A dead letter is a push the worker gave up on (``broker.delivery.push``). It waits in the queue of the
contact point of the message's destination country, with its last error, until an officer of that
contact point either

- **retries** it: the push starts again from attempt 1 (or, if the agency has since withdrawn its
  endpoint, the message goes to its pull inbox), or
- **re-routes** it: to the same agency's pull inbox, or to another competent agency of the country
  (only when the sender did not address an agency itself; the content key is wrapped to the new
  agency with the contact point's key, and the routing is countersigned like the first one).

Scope is part of every query: an officer sees and acts on the deliveries of its own contact point only;
anything else is "not found", never a hint that it exists.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import add_reader
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.delivery.service import start_delivery
from broker.directory.models import Agency, ContactPoint
from broker.directory.service import get_agency
from broker.errors import Conflict, InvalidInput, NotFound, NotPermitted
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import add_custody
from broker.messages.states import State
from broker.policy.service import check_accreditation, cleared

__all__ = ["ListedStatus", "deliveries", "officer_contact_point", "reroute", "retry"]

ListedStatus = Literal["dead", "pending"]


def officer_contact_point(session: Session, user: User) -> ContactPoint:
    if user.role not in ("officer", "supervisor") or user.contact_point_id is None:
        raise NotPermitted("only contact-point officers act on deliveries")
    cp = session.get(ContactPoint, user.contact_point_id)
    if cp is None:
        raise NotPermitted("the officer's contact point does not exist")
    return cp


def deliveries(
    session: Session, user: User, *, status: ListedStatus, limit: int, offset: int
) -> list[tuple[InboxItem, Message]]:
    """Push deliveries of the officer's contact point in ``status``: dead letters newest first, pending
    ones by next attempt."""
    cp = officer_contact_point(session, user)
    order = (
        (InboxItem.last_attempt_at.desc(), InboxItem.id)
        if status == "dead"
        else (InboxItem.next_attempt_at, InboxItem.id)
    )
    rows = session.execute(
        select(InboxItem, Message)
        .join(Message, Message.id == InboxItem.message_id)
        .where(
            InboxItem.status == status,
            InboxItem.channel == Channel.PUSH,
            Message.destination_country == cp.country,
        )
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    ).all()
    return [(item, message) for item, message in rows]


def delivery_in_scope(
    session: Session, cp: ContactPoint, message_id: str
) -> tuple[InboxItem, Message] | None:
    """The current delivery of a message routed by ``cp`` (its country is the destination), or None."""
    row = session.execute(
        select(InboxItem, Message)
        .join(Message, Message.id == InboxItem.message_id)
        .where(
            InboxItem.message_id == message_id,
            Message.destination_country == cp.country,
            InboxItem.status != DeliveryStatus.SUPERSEDED,
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


def _dead_letter(session: Session, user: User, message_id: str) -> tuple[ContactPoint, InboxItem, Message]:
    cp = officer_contact_point(session, user)
    found = delivery_in_scope(session, cp, message_id)
    if found is None:
        raise NotFound(f"no delivery of message {message_id}")
    item, message = found
    if item.status != DeliveryStatus.DEAD or message.state != State.ROUTED:
        raise Conflict(f"the delivery of message {message_id} is {item.status}, not a dead letter")
    if not cleared(user.clearance, message.classification):
        raise NotPermitted(f"acting on a {message.classification} message needs clearance at or above it")
    return cp, item, message


def retry(session: Session, user: User, message_id: str, *, actor: Actor) -> InboxItem:
    """Start a dead letter's delivery again (attempt 1), over the agency's current channel."""
    _, item, message = _dead_letter(session, user, message_id)
    agency = get_agency(session, item.agency_id)
    channel = Channel.PUSH if agency.push_url else Channel.PULL
    _audit(session, actor, message, agency=agency.id, channel=channel, details={"redelivery": "retry"})
    last_error = item.last_error
    start_delivery(session, message, agency, channel=channel, item=item)
    item.last_error = last_error  # kept for the officer's history until the next attempt replaces it
    return item


def reroute(
    session: Session,
    keys: DatabaseKeyStore,
    user: User,
    message_id: str,
    *,
    to_agency: str | None,
    channel: Channel | None,
    reason: str | None,
    actor: Actor,
) -> InboxItem:
    """Deliver a dead letter elsewhere: another agency of the country and/or the pull inbox."""
    cp, item, message = _dead_letter(session, user, message_id)
    target = get_agency(session, to_agency or item.agency_id)
    if target.country != cp.country:
        raise InvalidInput(f"{target.id} is not an agency of {cp.country}")
    if not target.active:
        raise InvalidInput(f"{target.id} is not active")
    chosen = channel or (Channel.PUSH if target.push_url else Channel.PULL)
    if chosen == Channel.PUSH and not target.push_url:
        raise InvalidInput(f"{target.id} has no push endpoint; re-route to its pull inbox")
    previous = item.agency_id
    new_item: InboxItem | None = item
    if target.id != previous:
        addressed = message.envelope.get("header", {}).get("destination_agency")
        if addressed is not None and addressed != target.id:
            raise Conflict(f"the sender addressed {addressed}; the message cannot be re-addressed")
        check_accreditation(target, message.classification, role="receive")
        _wrap_content_key(keys, message, cp, target)
        message.destination_agency = target.id
        item.status = DeliveryStatus.SUPERSEDED
        item.next_attempt_at = None
        # None: start_delivery creates (and adds) the target's row.
        new_item = session.scalar(
            select(InboxItem).where(InboxItem.agency_id == target.id, InboxItem.message_id == message.id)
        )
    add_custody(
        session,
        keys,
        message,
        party=cp.id,
        actor=user.username,
        decision="routed",
        from_state=State.ROUTED,
        reason=reason or f"re-routed after failed delivery to {previous}",
    )
    _audit(
        session,
        actor,
        message,
        agency=target.id,
        channel=chosen,
        details={"redelivery": "re-route", "from_agency": previous},
    )
    return start_delivery(session, message, target, channel=chosen, item=new_item)


def _wrap_content_key(keys: DatabaseKeyStore, message: Message, cp: ContactPoint, target: Agency) -> None:
    payload = message.envelope["payload"]
    kids = {r["header"].get("kid") for r in payload["recipients"]}
    held = next((k for k in keys.encryption_keys(cp.id) if k.kid in kids), None)
    if held is None:
        raise Conflict("this contact point holds no key the payload was encrypted to")
    reader = keys.public_encryption_key(target.id)
    if reader.kid not in kids:
        message.envelope = {**message.envelope, "payload": add_reader(payload, key=held, reader=reader)}


def _audit(
    session: Session, actor: Actor, message: Message, *, agency: str, channel: str, details: dict[str, str]
) -> None:
    # TODO(audit owner): dedicated "delivery:retried" / "message:re-routed" tags; the routing tag until then.
    record(
        session,
        actor=actor,
        action=AuditAction.MESSAGE_ROUTED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        outcome="redelivery",
        details={"agency": agency, "channel": str(channel), **details},
    )
