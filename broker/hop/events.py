"""Events that cross between nodes: what one contact point did to a message that the other node must learn.

A message crosses once (``broker.hop.service``); what happens to it afterwards happens on one node only: the
requested contact point accepts, routes or refuses it on an Art. 6 ground, asks for clarification, extends the
deadline; the requester's agency asks the provider of H2 information to pass it on and the provider grants or
denies; the requester amends a returned request. On one node the other side sees these at once; across nodes
each is an **event**: a small statement signed by the acting contact point's key (``spoc-event+jws``, the RFC
8785 form of :class:`schemas.hop.EventStatement`), queued as a ``hops`` row in the decision's transaction and
sent by the hop's outbox (``broker.hop.outbound``: lease, backoff, dead letter) to ``/v1/hop/events`` of the
node the message crossed to or from. The receiving node checks it and applies it to its copy
(``broker.hop.event_intake``). docs/hop-events.md describes the bytes.

Signed at the decision, not at sending: every retry carries the same bytes, so the receiver's idempotency by
event id can tell a retry (same digest) from a forgery or a replay with other content (a conflict).

This module only makes events (it is imported by ``broker.messages`` and ``contact_points``, so it imports
nothing of theirs); checking and applying an event that arrives is ``broker.hop.event_intake``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.crypto import digest
from broker.crypto.countersign import sign_event
from broker.db import utcnow
from broker.directory.service import contact_point_for
from broker.hop.models import Hop
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from schemas.hop import EVENT_FIELDS, ORIGIN_KINDS, EventKind

__all__ = ["EVENTS_PATH", "Crossing", "acting_country", "announce", "counterpart_country", "event_statement"]

EVENTS_PATH: Final = "/v1/hop/events"


class Crossing(Protocol):
    """What the countries of an event depend on: the message's two countries (a :class:`Message`, or a row
    of its columns)."""

    @property
    def origin_country(self) -> str: ...
    @property
    def destination_country(self) -> str: ...


def acting_country(message: Crossing, kind: EventKind) -> str:
    """The country whose contact point makes events of ``kind`` about ``message``."""
    return message.origin_country if kind in ORIGIN_KINDS else message.destination_country


def counterpart_country(message: Crossing, kind: EventKind) -> str:
    """The country whose node learns of events of ``kind`` about ``message``."""
    return message.destination_country if kind in ORIGIN_KINDS else message.origin_country


def event_statement(
    message: Message,
    kind: EventKind,
    *,
    contact_point: str,
    actor: str,
    fields: Mapping[str, Any],
    event_id: str | None = None,
) -> dict[str, Any]:
    """The statement of an event (unsigned): checked against the kind's closed fields first, so this node
    never signs what its peer must refuse. ``None`` fields are left out (absent, not ``null``)."""
    present = {k: v for k, v in fields.items() if v is not None}
    EVENT_FIELDS[kind].model_validate(present)
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "kind": str(kind),
        "message_id": message.id,
        "digest": message.digest,
        "contact_point": contact_point,
        "actor": actor[:64],
        "at": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "fields": present,
    }


def announce(
    session: Session,
    keys: DatabaseKeyStore,
    message: Message,
    kind: EventKind,
    *,
    actor: str,
    fields: Mapping[str, Any],
    event_id: str | None = None,
) -> Hop | None:
    """Queue the event ``kind`` about ``message`` for the node on the other side, signed now by the acting
    contact point; None when there is no other node to tell (both contact points are held here, a hub or the
    embedded demo, or the message never crossed). The caller's transaction commits it with the decision."""
    other_cp = contact_point_for(session, counterpart_country(message, kind)).id
    if keys.holds(other_cp):
        return None
    peer = session.scalar(
        select(Hop.peer_node).where(Hop.message_id == message.id, Hop.event_id.is_(None)).limit(1)
    )
    if peer is None:
        return None
    acting_cp = contact_point_for(session, acting_country(message, kind)).id
    statement = event_statement(
        message, kind, contact_point=acting_cp, actor=actor, fields=fields, event_id=event_id
    )
    row = Hop(
        message_id=message.id,
        direction="out",
        peer_node=peer,
        digest=digest(statement),
        event_id=statement["event_id"],
        event_kind=str(kind),
        event=sign_event(statement, key=keys.signing_key(acting_cp)),
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def is_counterpart_remote(
    session: Session, keys: DatabaseKeyStore, message: Message, kind: EventKind
) -> bool:
    """Whether the other side of ``kind`` lives on another node (its notifications are then made there)."""
    return not keys.holds(contact_point_for(session, counterpart_country(message, kind)).id)
