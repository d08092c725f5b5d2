"""Deleting the content of exchanges, irrevocably and set-based: a few statements per batch, whatever its size.

**What is deleted**, for every message of the exchanges given (each not yet deleted, none under a legal hold):

* the envelope's payload — the JWE: ciphertext, IV, tag, protected header, every wrapped content key — and
  the originator's signature over it (``messages.envelope`` keeps ``{"spoc", "header"}``); the header's one
  free text, the urgency explanation, goes too (its reason code stays). Attachments travel inside the
  payload, so they go with it; no decrypted copy is ever stored;
* the cross-check's keyed selector hashes (``forget_selectors``) and its links to and from the messages
  (which cases share a person is itself derived from the content); the officers' notifications about them,
  and the cross-check's notices on other messages that name them;
* the free text of the requests for onward dissemination (purpose, decision reason) and of the deadline
  events (reason; the Art. 5(2) reason code stays);
* the signed event statements sent to or received from another node (``hops.event``), reduced to their
  detached form (protected header and signature; their digest stays for reconciliation);
* the outbox rows and any remaining Idempotency-Key record naming the messages.

Deliveries not yet taken by their agency are withdrawn (``superseded``: nothing is left to deliver), and a hop
to a peer still waiting to be sent is dead-lettered with the reason.

**What stays**: the routing metadata (type, countries, agencies, category, classification, handling codes,
priority, times, states, digest), the chain of custody with its countersignatures — the signed record of who
decided what, whose reasons and grounds are also in the audit log — deadline events, approvals, deliveries and
their receipts, hop digests and receipts, the cross-check's scan counts, and the audit log, which holds no
content and still verifies. Every message deleted is one ``retention:deleted`` audit entry (its id, its
conversation, the basis; never content).

The function flushes and never commits; the caller's unit of work makes a batch all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, delete, func, literal_column, or_, select, update
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crosscheck.models import CrosscheckLink
from broker.crosscheck.service import forget_selectors
from broker.db import JSONType, utcnow
from broker.delivery.models import DeliveryStatus, InboxItem
from broker.hop.models import Hop
from broker.messages.models import (
    DeadlineEvent,
    DisseminationRequest,
    IdempotencyRecord,
    Message,
    ReviewNotification,
)
from broker.outbox.models import OutboxItem
from broker.retention.exchanges import held_among, lock_messages

__all__ = ["Basis", "Deleted", "delete_content", "detached"]

Basis = Literal["period", "review"]
"""Why content was deleted: its retention period ended, or a compliance review decided so."""

HOP_DEAD_REASON = "content deleted under the retention rules before it was sent"


@dataclass(frozen=True)
class Deleted:
    """What one call deleted: the conversations and messages, and the held conversations it left alone."""

    conversations: list[str] = field(default_factory=list)
    messages: int = 0
    selectors: int = 0
    links: int = 0
    skipped_held: list[str] = field(default_factory=list)


def _stripped_envelope(dialect: str) -> ColumnElement[Any]:
    """SQL: the envelope without its payload, signature and urgency explanation (the routing header stays)."""
    if dialect == "postgresql":
        # A constant expression (no input in it): jsonb minus two keys, minus one path.
        return literal_column(
            "((messages.envelope - 'payload') - 'signature') #- '{header,priority,urgency_explanation}'",
            JSONType,
        )
    return func.json_remove(
        Message.envelope, "$.payload", "$.signature", "$.header.priority.urgency_explanation", type_=JSONType
    )


def detached(token: str) -> str:
    """A compact JWS without its payload (``header..signature``, RFC 7515 Appendix F): it no longer says what
    was signed, and it still verifies against the statement for whoever holds that (the peer node)."""
    protected, _, rest = token.partition(".")
    _, _, signature = rest.partition(".")
    return f"{protected}..{signature}"


def delete_content(
    session: Session,
    conversation_ids: Sequence[str],
    *,
    basis: Basis,
    actor: Actor,
    now: datetime | None = None,
) -> Deleted:
    """Delete the content of the exchanges ``conversation_ids`` (see the module docstring); held ones are left
    alone and named in ``skipped_held``. Idempotent: messages already deleted are not touched again."""
    if not conversation_ids:
        return Deleted()
    now = now or utcnow()
    lock_messages(session, conversation_ids)  # a hold committed before this lock is seen below
    held = held_among(session, conversation_ids)
    wanted = [c for c in conversation_ids if c not in held]
    rows = (
        session.execute(
            select(Message.id, Message.conversation_id, Message.origin_country, Message.destination_country)
            .where(Message.conversation_id.in_(wanted), Message.content_deleted_at.is_(None))
            .order_by(Message.id)
        ).all()
        if wanted
        else []
    )
    ids = [r.id for r in rows]
    if not ids:
        return Deleted(skipped_held=sorted(held))
    dialect = session.get_bind().dialect.name
    session.execute(
        update(Message)
        .where(Message.id.in_(ids))
        .values(
            envelope=_stripped_envelope(dialect),
            content_deleted_at=now,
            content_deletion=basis,
            version=Message.version + 1,  # a concurrent ORM write of an old copy fails (StaleDataError)
        )
        .execution_options(synchronize_session=False)
    )
    selectors = forget_selectors(session, ids)
    _forget_link_notices(session, ids)
    links = session.execute(
        delete(CrosscheckLink).where(
            or_(CrosscheckLink.message_id.in_(ids), CrosscheckLink.linked_message_id.in_(ids))
        )
    )
    session.execute(delete(ReviewNotification).where(ReviewNotification.message_id.in_(ids)))
    session.execute(
        update(DisseminationRequest)
        .where(DisseminationRequest.message_id.in_(ids))
        .values(purpose="", decision_reason=None)
    )
    session.execute(update(DeadlineEvent).where(DeadlineEvent.message_id.in_(ids)).values(reason=None))
    _detach_events(session, ids)
    session.execute(
        update(Hop)
        .where(
            Hop.message_id.in_(ids),
            Hop.direction == "out",
            Hop.receipt.is_(None),
            Hop.dead_at.is_(None),
        )
        .values(dead_at=now, next_attempt_at=None, last_error=HOP_DEAD_REASON)
    )
    session.execute(
        update(InboxItem)
        .where(
            InboxItem.message_id.in_(ids),
            InboxItem.acked_at.is_(None),
            InboxItem.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.DEAD]),
        )
        .values(status=DeliveryStatus.SUPERSEDED, next_attempt_at=None, leased_until=None)
    )
    session.execute(delete(OutboxItem).where(OutboxItem.message_id.in_(ids)))
    session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.response["message_id"].as_string().in_(ids))
    )
    for row in rows:
        record(
            session,
            actor=actor,
            action=AuditAction.RETENTION_DELETED,
            object_type="message",
            object_id=row.id,
            countries=[row.origin_country, row.destination_country],
            details={"conversation": row.conversation_id, "basis": basis},
        )
    session.flush()
    session.expire_all()  # ORM copies loaded before the UPDATE would show the content that is gone
    return Deleted(
        conversations=sorted({r.conversation_id for r in rows}),
        messages=len(ids),
        selectors=selectors,
        links=int(getattr(links, "rowcount", 0) or 0),
        skipped_held=sorted(held),
    )


def _forget_link_notices(session: Session, ids: Sequence[str]) -> None:
    """Delete the cross-check's notices on *other* messages that name one of ``ids`` (a link's notice goes to
    the holder of the earlier message and names the new one by its short id): one query, one DELETE."""
    deleted = set(ids)
    pairs = {
        (other, this[:8])
        for this, other in session.execute(
            select(CrosscheckLink.message_id, CrosscheckLink.linked_message_id).where(
                CrosscheckLink.message_id.in_(ids)
            )
        )
        if other not in deleted
    }
    if pairs:
        session.execute(
            delete(ReviewNotification).where(
                ReviewNotification.kind == "crosscheck-link",
                or_(
                    *(
                        and_(ReviewNotification.message_id == other, ReviewNotification.text.contains(short))
                        for other, short in sorted(pairs)
                    )
                ),
            )
        )


def _detach_events(session: Session, ids: Sequence[str]) -> None:
    """Reduce the signed event statements of the messages to their detached form (one executemany)."""
    events = session.execute(
        select(Hop.id, Hop.event).where(Hop.message_id.in_(ids), Hop.event.is_not(None))
    ).all()
    changed = [{"id": hop_id, "event": detached(token)} for hop_id, token in events if token]
    if changed:
        session.execute(update(Hop), changed)
