"""Reading a message's content: clearance, H3 conditions, and an audit entry for every view.

* An officer below the message's classification sees metadata and a notice; the refused read is audited.
* H3 ("other conditions apply"): before the content, the officer sees the provider's conditions and must
  acknowledge them; the acknowledgement is stored and audited, and only then is the content shown. By
  convention the conditions travel inside the encrypted payload, as the ``conditions`` member of a JSON
  object (so they are as confidential as the content); the server decrypts to show them, and that view
  is audited too (outcome ``conditions-only``).
* Every decryption for a person is an audit entry; content itself never enters the log.
* A message whose content was deleted under the retention rules (``broker.retention``) says so: there is
  nothing left to decrypt, so nothing is read and nothing is audited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import open_sealed
from broker.errors import NotPermitted, SpocError
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import ConditionsAcknowledgement, Message
from broker.policy.service import CONDITIONS, cleared
from contact_points.review.scope import message_in_scope
from schemas.codelists import label


@dataclass(frozen=True)
class Content:
    readable: bool
    notice: str | None
    plaintext: bytes | None
    conditions: str | None = None
    """H3: the provider's conditions, shown before the content (and with it)."""
    acknowledgement_required: bool = False
    deleted_at: datetime | None = None
    """When the content was deleted under the retention rules (then there is none to read)."""


def deleted_notice(when: datetime) -> str:
    """What a message whose content was deleted shows instead of it."""
    return f"Content deleted on {when:%Y-%m-%d} under the retention rules."


def _countries(message: Message) -> list[str]:
    return [message.origin_country, message.destination_country]


def acknowledged(session: Session, user: User, message: Message) -> bool:
    found = session.scalar(
        select(ConditionsAcknowledgement.id).where(
            ConditionsAcknowledgement.message_id == message.id, ConditionsAcknowledgement.user_id == user.id
        )
    )
    return found is not None


def _decrypt(keys: DatabaseKeyStore, message: Message, party: str) -> bytes | None:
    for key in keys.encryption_keys(party):
        try:
            return open_sealed(message.envelope["payload"], key=key)
        except SpocError:
            continue
    return None


def conditions_of(plaintext: bytes) -> str | None:
    """The ``conditions`` member of a JSON-object payload, if there is one."""
    try:
        document = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and isinstance(document.get("conditions"), str):
        text: str = document["conditions"]
        return text
    return None


def read_content(
    session: Session, keys: DatabaseKeyStore, user: User, message_id: str, *, actor: Actor
) -> Content:
    """Decrypt the payload for a cleared officer; every read (and every refused read) is audited."""
    message, cp, _ = message_in_scope(session, user, message_id)
    if message.content_deleted_at is not None:
        when = message.content_deleted_at
        return Content(False, deleted_notice(when), None, deleted_at=when)
    countries = _countries(message)
    if not cleared(user.clearance, message.classification):
        record(
            session,
            actor=actor,
            action=AuditAction.CONTENT_READ,
            object_type="message",
            object_id=message.id,
            countries=countries,
            outcome="denied",
            details={"clearance": user.clearance},
        )
        return Content(False, f"{message.classification} content: your clearance is {user.clearance}", None)
    plaintext = _decrypt(keys, message, cp.id)
    needs_ack = CONDITIONS in message.handling_codes and not acknowledged(session, user, message)
    outcome = "undecryptable" if plaintext is None else "conditions-only" if needs_ack else "ok"
    record(
        session,
        actor=actor,
        action=AuditAction.CONTENT_READ,
        object_type="message",
        object_id=message.id,
        countries=countries,
        outcome=outcome,
    )
    if plaintext is None:
        return Content(False, "the payload could not be decrypted with this contact point's keys", None)
    conditions = conditions_of(plaintext) if CONDITIONS in message.handling_codes else None
    if needs_ack:
        return Content(
            False,
            f"H3 — {label('handling_codes', CONDITIONS)}. Acknowledge the provider's conditions to read it.",
            None,
            conditions=conditions,
            acknowledgement_required=True,
        )
    return Content(True, None, plaintext, conditions=conditions)


def acknowledge_conditions(session: Session, user: User, message_id: str, *, actor: Actor) -> None:
    """Record that ``user`` read and accepts the H3 conditions of the message (idempotent)."""
    message, _, _ = message_in_scope(session, user, message_id)
    if not cleared(user.clearance, message.classification):
        raise NotPermitted(f"reading a {message.classification} message needs clearance at or above it")
    if CONDITIONS not in message.handling_codes or acknowledged(session, user, message):
        return
    session.add(ConditionsAcknowledgement(message_id=message.id, user_id=user.id))
    record(
        session,
        actor=actor,
        action=AuditAction.CONDITIONS_ACKNOWLEDGED,
        object_type="message",
        object_id=message.id,
        countries=_countries(message),
    )
    session.flush()
