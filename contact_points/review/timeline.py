"""A message's timeline for the officer: each hop of the chain of custody with its signature checked, and
the history of its deadline, and of the conversation it belongs to (amendments, answers).

Signature status is computed on every view, from the parties' registered keys: the first hop is the
originator's detached signature of the envelope; each later hop is a contact point's countersignature,
which must also name this message, its digest, its position and its decision. Once the content was deleted
under the retention rules the originator's signature has nothing left to cover: that step says so
(``content-deleted``); the contact points' countersignatures name the digest, which stays, and still verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from broker.crypto import verify_countersignature, verify_envelope
from broker.directory.models import ContactPoint
from broker.errors import SpocError
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import CustodyStep, Message
from broker.messages.service import custody_of
from contact_points.review.scope import in_scope


@dataclass(frozen=True)
class Hop:
    seq: int
    at: datetime
    party: str
    actor: str
    decision: str
    from_state: str | None
    to_state: str
    reason: str | None
    refusal_ground: str | None
    signature: str  # verified | invalid | content-deleted
    detail: str = ""


def _created_at(header: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(header["created_at"]).replace("Z", "+00:00"))


def _check(keys: DatabaseKeyStore, message: Message, step: CustodyStep) -> tuple[str, str]:
    if step.seq == 0 and message.content_deleted_at is not None:
        return "content-deleted", (
            f"the content was deleted on {message.content_deleted_at:%Y-%m-%d} under the retention rules: "
            "the originator's signature of it can no longer be checked"
        )
    try:
        if step.seq == 0:
            header, payload = message.envelope["header"], message.envelope["payload"]
            verify_envelope(
                header,
                payload,
                step.signature,
                resolve=lambda kid: keys.resolve_at(kid, party_id=step.party, at=_created_at(header)),
            )
            return "verified", "originator's signature of the envelope"
        statement = verify_countersignature(
            step.signature, resolve=lambda kid: keys.resolve(kid, party_id=step.party)
        )
    except SpocError as exc:
        return "invalid", exc.detail
    expected = {
        "message_id": message.id,
        "digest": message.digest,
        "seq": step.seq,
        "party": step.party,
        "decision": step.decision,
    }
    wrong = [name for name, value in expected.items() if statement.get(name) != value]
    if wrong:
        return "invalid", f"the countersignature states another {', '.join(wrong)}"
    return "verified", f"countersigned by {step.party}"


def hops(session: Session, keys: DatabaseKeyStore, message: Message) -> list[Hop]:
    """Every custody step of ``message``, oldest first, each with its signature checked."""
    out = []
    for step in custody_of(session, message.id):
        status, detail = _check(keys, message, step)
        out.append(
            Hop(
                seq=step.seq,
                at=step.at,
                party=step.party,
                actor=step.actor,
                decision=step.decision,
                from_state=step.from_state,
                to_state=step.to_state,
                reason=step.reason,
                refusal_ground=step.refusal_ground,
                signature=status,
                detail=detail,
            )
        )
    return out


def conversation(session: Session, message: Message, cp: ContactPoint) -> Sequence[Message]:
    """The other messages of the conversation (amendments, answers, follow-ups) that ``cp``'s officers may
    see, oldest first.

    Scoped exactly as a message itself (:func:`~contact_points.review.scope.in_scope`, both queues): the
    ``conversation_id`` is chosen by the sender, so anyone can put a message into any conversation, and
    listing it unscoped would show other countries' messages, ids and live states (even ones stopped in
    another country's origin review) to whoever opens a message sharing the id.
    """
    return session.scalars(
        select(Message)
        .where(
            Message.conversation_id == message.conversation_id,
            Message.id != message.id,
            or_(in_scope(cp, "outbound"), in_scope(cp, "inbound")),
        )
        .order_by(Message.received_at)
    ).all()
