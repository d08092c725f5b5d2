"""H2: requests for onward dissemination, and the provider contact point's grant or denial.

An agency that received H2 information asks the provider for permission to pass it on (to a country,
optionally a named agency of it). The request goes to the contact point of the provider's country, whose
officers grant or deny it — a countersigned, audited decision on the H2 message, with a reason for a
denial. Until it is granted, ``broker.policy.check_onward_dissemination`` holds back the forwarding of
any message that passes the information on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.db import utcnow
from broker.directory.models import ContactPoint
from broker.directory.service import contact_point_for
from broker.errors import Conflict, InvalidInput, NotFound
from broker.hop.events import announce
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import DisseminationRequest, Message
from broker.messages.notifications import notify
from broker.policy.service import NO_ONWARD_DISSEMINATION
from schemas.api import DisseminationRequest as DisseminationRequestOut
from schemas.api import DisseminationRequestBody
from schemas.hop import EventKind


def _countries(message: Message, *more: str) -> list[str]:
    return [message.origin_country, message.destination_country, *more]


def request_dissemination(
    session: Session,
    *,
    agency_id: str,
    message_id: str,
    body: DisseminationRequestBody,
    actor: Actor,
    keys: DatabaseKeyStore | None = None,
) -> DisseminationRequest:
    """An agency that was delivered an H2 message asks its provider for permission to pass it on.

    When the provider's contact point is on another node (``keys`` does not hold it), the request goes there
    as a ``dissemination-requested`` event signed by this node's contact point, whose id the request keeps:
    the provider's grant or denial comes back naming it (``broker.hop.events``)."""
    message = session.get(Message, message_id)
    if message is None or message.destination_agency != agency_id:
        raise NotFound(f"no message {message_id} delivered to {agency_id}")
    if NO_ONWARD_DISSEMINATION not in message.handling_codes:
        raise InvalidInput(f"message {message_id} is not H2: passing it on needs no permission")
    if body.recipient_country == message.origin_country:
        raise InvalidInput("the provider's own country already has the information")
    row = DisseminationRequest(
        message_id=message.id,
        requested_by=agency_id,
        recipient_country=body.recipient_country,
        recipient_agency=body.recipient_agency,
        purpose=body.purpose,
        state="pending",
        requested_at=utcnow(),
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action=AuditAction.DISSEMINATION_REQUESTED,
        object_type="message",
        object_id=message.id,
        countries=_countries(message, body.recipient_country),
        details={
            "request": row.id,
            "by": agency_id,
            "to": body.recipient_agency or body.recipient_country,
        },
    )
    provider = contact_point_for(session, message.origin_country)
    if keys is not None and not keys.holds(provider.id):
        row.event_id = str(uuid.uuid4())
        announce(
            session,
            keys,
            message,
            EventKind.DISSEMINATION_REQUESTED,
            actor=agency_id,
            fields={
                "requested_by": agency_id,
                "recipient_country": body.recipient_country,
                "recipient_agency": body.recipient_agency,
                "purpose": body.purpose,
            },
            event_id=row.event_id,
        )
        return row
    notify(
        session,
        contact_point_id=provider.id,
        kind="dissemination",
        message_id=message.id,
        text=f"{agency_id} asks to pass on H2 information of {message.id} to "
        f"{body.recipient_agency or body.recipient_country}: {body.purpose}",
    )
    return row


def decide_dissemination(
    session: Session,
    message: Message,
    cp: ContactPoint,
    *,
    request_id: int,
    grant: bool,
    reason: str | None,
    actor: Actor,
) -> DisseminationRequest:
    """The provider contact point grants or denies (the caller adds the countersigned custody step)."""
    row = session.get(DisseminationRequest, request_id)
    if row is None or row.message_id != message.id:
        raise NotFound(f"no dissemination request {request_id} for message {message.id}")
    if message.origin_country != cp.country:
        raise Conflict("only the provider's contact point grants or denies onward dissemination")
    if row.state != "pending":
        raise Conflict(f"dissemination request {request_id} was already {row.state}")
    row.state = "granted" if grant else "denied"
    row.decided_at = utcnow()
    row.decided_by = actor.name
    row.decision_reason = reason
    record(
        session,
        actor=actor,
        action=AuditAction.DISSEMINATION_GRANTED if grant else AuditAction.DISSEMINATION_DENIED,
        object_type="message",
        object_id=message.id,
        countries=_countries(message, row.recipient_country),
        details={"request": row.id, "by": row.requested_by, "reason": reason},
    )
    session.flush()
    return row


def requests_for(
    session: Session, message_id: str, *, agency_id: str | None = None, pending_only: bool = False
) -> Sequence[DisseminationRequest]:
    query = select(DisseminationRequest).where(DisseminationRequest.message_id == message_id)
    if agency_id is not None:
        query = query.where(DisseminationRequest.requested_by == agency_id)
    if pending_only:
        query = query.where(DisseminationRequest.state == "pending")
    return session.scalars(query.order_by(DisseminationRequest.id)).all()


def pending_for_contact_point(
    session: Session, cp: ContactPoint, *, limit: int = 100, offset: int = 0
) -> Sequence[DisseminationRequest]:
    """Requests waiting for this contact point as provider, oldest first, one page."""
    return session.scalars(
        select(DisseminationRequest)
        .join(Message, Message.id == DisseminationRequest.message_id)
        .where(Message.origin_country == cp.country, DisseminationRequest.state == "pending")
        .order_by(DisseminationRequest.id)
        .limit(limit)
        .offset(offset)
    ).all()


def as_wire(row: DisseminationRequest) -> DisseminationRequestOut:
    return DisseminationRequestOut(
        id=row.id,
        message_id=row.message_id,
        requested_by=row.requested_by,
        recipient_country=row.recipient_country,
        recipient_agency=row.recipient_agency,
        purpose=row.purpose,
        state=row.state,
        requested_at=row.requested_at,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
    )
