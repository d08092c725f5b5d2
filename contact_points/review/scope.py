"""Who sees what: an officer sees the messages of its own contact point, and only those (DESIGN §5).

Outbound: every message sent from the contact point's country. Inbound: messages to its country once
the origin contact point has let them go; a message still in (or stopped at) origin review is not, and
never was, in the destination's queues. Out of scope is ``NotFound``, never a hint that it exists.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.directory.models import ContactPoint
from broker.errors import NotFound, NotPermitted
from broker.messages.models import CustodyStep, Message
from broker.messages.states import State

Direction = Literal["outbound", "inbound"]
OFFICER_ROLES = ("officer", "supervisor")
# Until the origin contact point forwards a message, the destination contact point does not know of it.
NOT_YET_FORWARDED = frozenset(
    {State.SUBMITTED, State.ORIGIN_REVIEW, State.REJECTED, State.RETURNED, State.SUPERSEDED}
)
AWAITING: dict[Direction, State] = {"outbound": State.ORIGIN_REVIEW, "inbound": State.DESTINATION_REVIEW}


def officer_contact_point(session: Session, user: User) -> ContactPoint:
    if user.role not in OFFICER_ROLES or user.contact_point_id is None:
        raise NotPermitted("only contact-point officers have queues")
    cp = session.get(ContactPoint, user.contact_point_id)
    if cp is None:
        raise NotPermitted("the officer's contact point does not exist")
    return cp


def _reached(cp: ContactPoint) -> ColumnElement[bool]:
    """The destination contact point countersigned a step of the message (it received it)."""
    return exists(
        select(CustodyStep.id).where(CustodyStep.message_id == Message.id, CustodyStep.party == cp.id)
    )


def in_scope(cp: ContactPoint, direction: Direction) -> ColumnElement[bool]:
    """The SQL condition of one of a contact point's two queues (every state, not only awaiting review)."""
    if direction == "outbound":
        return Message.origin_country == cp.country
    superseded_after_reaching_us = and_(Message.state == State.SUPERSEDED, _reached(cp))
    return and_(
        Message.destination_country == cp.country,
        or_(not_(Message.state.in_([str(s) for s in NOT_YET_FORWARDED])), superseded_after_reaching_us),
    )


def message_in_scope(
    session: Session, user: User, message_id: str
) -> tuple[Message, ContactPoint, Direction]:
    """The message if it is in one of the officer's queues (or was): NotFound otherwise, never a hint."""
    cp = officer_contact_point(session, user)
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no message {message_id}")
    if message.origin_country == cp.country:
        return message, cp, "outbound"
    if message.destination_country == cp.country:
        if message.state not in NOT_YET_FORWARDED:
            return message, cp, "inbound"
        reached = session.scalar(
            select(CustodyStep.id)
            .where(CustodyStep.message_id == message.id, CustodyStep.party == cp.id)
            .limit(1)
        )
        if message.state == State.SUPERSEDED and reached is not None:
            return message, cp, "inbound"
    raise NotFound(f"no message {message_id}")
