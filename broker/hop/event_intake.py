"""An event from a peer node (``POST /v1/hop/events``): checked against the directory, then applied here.

The peer's transport signature is verified before this runs (``broker.hop.api``). Then, each refusal with its
own ``reason`` (problem+json, audited ``hop:refused`` by the route, nothing stored):

1. ``malformed-event``: the body is ``{"event": "<compact JWS>"}``;
2. ``wrong-country``: the contact point the event names is one the sending node serves (per the directory);
3. ``event-signature``: the JWS (``typ`` ``spoc-event+jws``) verifies under that contact point's directory
   signing keys and its payload is the canonical form of the statement;
4. ``malformed-event``: the statement fits :class:`schemas.hop.EventStatement` and the kind's closed fields;
5. ``unknown-message``: the message exists here, with the digest the event names (else ``wrong-digest``);
6. ``kind-not-permitted``: the acting contact point is the side that makes this kind (the destination's
   contact point refuses, routes, extends…; the origin's grants, denies, amends) and this node holds the
   other side: a requester cannot "refuse" its own request;
7. ``not-counterpart``: the message crossed between this node and the sending node (a ``hops`` row);
8. ``event-replayed`` (409): the event id was received before with other content; the same event again gets
   the same receipt, stored once;
9. ``event-state`` (409): the event does not fit the message's state here (it is already refused, say).

Applying it is what the decision does on one node, on this node's copy: the state (walked through the states
in between when events overtook each other), a custody step whose signature is the event token as it came
(``spoc-event+jws``: the acting contact point's own statement, verifiable from the directory), the audit entry
with the acting contact point as actor, the deadline, the dissemination request, and the notifications to this
node's officers. Functions flush, never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import PublicKey, digest
from broker.crypto.countersign import sign_transport_receipt, statement_of, verify_event
from broker.db import utcnow
from broker.directory.service import contact_point_for
from broker.errors import Conflict, NotFound, PolicyRefused, SpocError
from broker.hop.events import acting_country, counterpart_country
from broker.hop.models import Hop
from broker.hop.service import advance, this_node
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import extend_deadline
from broker.messages.models import CustodyStep, DisseminationRequest, Message
from broker.messages.notifications import notify
from broker.messages.states import State
from broker.policy.service import NO_ONWARD_DISSEMINATION
from broker.region.sync import TRANSPORT_PARTY
from schemas.codelists import label
from schemas.hop import EVENT_FIELDS, EventKind, EventStatement
from schemas.region import DirectoryNode, RegionDirectory

__all__ = ["claimed_of", "receive_event"]


def _refuse(reason: str, detail: str) -> PolicyRefused:
    return PolicyRefused(detail, reason=reason)


def claimed_of(body: Mapping[str, Any]) -> dict[str, str]:
    """What a refused event claimed to be (unverified, for the refusal's audit entry; never its fields)."""
    token = body.get("event")
    try:
        statement = statement_of(token) if isinstance(token, str) else {}
    except SpocError:
        statement = {}
    return {
        k: str(statement[k])[:64]
        for k in ("event_id", "kind", "message_id", "contact_point")
        if statement.get(k) is not None
    }


def receive_event(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    directory: RegionDirectory,
    sender: DirectoryNode,
    body: Mapping[str, Any],
    request_id: str | None,
) -> str:
    """Check and apply an event from ``sender`` (its transport signature already verified); the receipt."""
    token = body.get("event")
    if set(body) != {"event"} or not isinstance(token, str):
        raise _refuse("malformed-event", 'an event hop is {"event": "<compact JWS>"}')
    claimed = claimed_of(body).get("contact_point")
    cp = next((c for c in sender.contact_points if c.id == claimed), None)
    if cp is None:
        raise _refuse(
            "wrong-country", f"node {sender.node_id} does not serve the contact point the event names"
        )
    keys_of_cp = {k.kid: k for k in (PublicKey.from_jwk(j) for j in cp.signing_keys)}

    def resolve(kid: str) -> PublicKey:
        if kid not in keys_of_cp:
            raise NotFound("not a key of this contact point")
        return keys_of_cp[kid]

    try:
        raw = verify_event(token, resolve=resolve)
    except SpocError as exc:
        raise _refuse("event-signature", f"the event is not signed by {cp.id}") from exc
    try:
        statement = EventStatement.model_validate(raw)
    except ValidationError:
        raise _refuse("malformed-event", "the event does not match its schema") from None
    if statement.contact_point != cp.id:  # (the resolver only knew cp's keys; said for the reader)
        raise _refuse("event-signature", f"the event is not signed by {statement.contact_point}")
    message = session.get(Message, str(statement.message_id))
    if message is None:
        raise _refuse("unknown-message", f"no message {statement.message_id} crossed to this node")
    if statement.digest != message.digest:
        raise _refuse("wrong-digest", f"the event names other bytes than message {message.id}")
    kind = statement.kind
    if cp.country != acting_country(message, kind) or not keys.holds(
        contact_point_for(session, counterpart_country(message, kind)).id
    ):
        raise _refuse(
            "kind-not-permitted",
            f"{cp.id} does not make '{kind}' events about message {message.id} for this node",
        )
    crossed = session.scalar(
        select(Hop.id)
        .where(
            Hop.message_id == message.id,
            Hop.event_id.is_(None),
            Hop.peer_node == sender.node_id,
            or_(Hop.direction == "in", Hop.receipt.is_not(None)),
        )
        .limit(1)
    )
    if crossed is None:
        raise _refuse(
            "not-counterpart", f"message {message.id} did not cross between this node and {sender.node_id}"
        )
    event_id, event_digest = str(statement.event_id), digest(raw)
    seen = session.scalar(select(Hop).where(Hop.event_id == event_id, Hop.direction == "in"))
    if seen is not None:
        if seen.digest != event_digest or seen.peer_node != sender.node_id or seen.receipt is None:
            raise Conflict(
                f"event {event_id} was received before with other content", reason="event-replayed"
            )
        return seen.receipt
    actor = Actor(cp.id, "contact-point", request_id)
    _apply(session, message, statement, token, actor=actor)
    now = utcnow()
    receipt = sign_transport_receipt(
        {
            "event_id": event_id,
            "message_id": message.id,
            "digest": event_digest,
            "from_node": sender.node_id,
            "to_node": this_node(session, directory).node_id,
            "received_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
        key=keys.signing_key(TRANSPORT_PARTY),
    )
    session.add(
        Hop(
            message_id=message.id,
            direction="in",
            peer_node=sender.node_id,
            digest=event_digest,
            event_id=event_id,
            event_kind=str(kind),
            event=token,
            receipt=receipt,
            at=now,
        )
    )
    record(
        session,
        actor=actor,
        action=AuditAction.HOP_RECEIVED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        details={
            "from_node": sender.node_id,
            "digest": event_digest,
            "event_id": event_id,
            "kind": str(kind),
            "message_digest": message.digest,
            "officer": statement.actor,
        },
    )
    session.flush()
    return receipt


# --- applying: what the decision does on one node, on this node's copy ------------------------------------


def _custody(
    session: Session,
    message: Message,
    statement: EventStatement,
    token: str,
    *,
    decision: str,
    from_state: str,
    reason: str | None = None,
    refusal_ground: str | None = None,
) -> None:
    """The acting contact point's decision in this node's chain of custody, its event token as signature."""
    seq = (
        session.scalar(select(func.max(CustodyStep.seq)).where(CustodyStep.message_id == message.id)) or 0
    ) + 1
    session.add(
        CustodyStep(
            message_id=message.id,
            seq=seq,
            party=statement.contact_point,
            actor=statement.actor,
            decision=decision,
            from_state=from_state,
            to_state=message.state,
            reason=reason,
            refusal_ground=refusal_ground,
            signature=token,
        )
    )
    session.flush()


def _apply(
    session: Session, message: Message, statement: EventStatement, token: str, *, actor: Actor
) -> None:
    kind, fields = statement.kind, statement.fields
    model = EVENT_FIELDS[kind].model_validate(fields)
    before = str(message.state)
    here = contact_point_for(session, counterpart_country(message, kind)).id
    officer = {"officer": statement.actor, "event_id": str(statement.event_id)}

    def custody(decision: str, **more: Any) -> None:
        _custody(session, message, statement, token, decision=decision, from_state=before, **more)

    if kind == EventKind.ACCEPTED:
        advance(session, message, State.DESTINATION_REVIEW, actor=actor)
        custody("accepted")
        record(
            session,
            actor=actor,
            action=AuditAction.MESSAGE_ACCEPTED,
            object_type="message",
            object_id=message.id,
            countries=[message.origin_country, message.destination_country],
            details=officer,
        )
    elif kind == EventKind.ROUTED:
        agency = str(fields["agency"])
        if not agency.startswith(message.destination_country + "-") or (
            message.destination_agency not in (None, agency)
        ):
            raise _refuse(
                "malformed-event", f"{agency} is not the agency message {message.id} may be routed to"
            )
        advance(session, message, State.ROUTED, actor=actor, details={"agency": agency, **officer})
        message.destination_agency = agency
        custody("routed")
    elif kind == EventKind.REFUSED:
        ground, reason = str(fields["refusal_ground"]), fields.get("reason")
        if message.type != "request":
            raise _refuse(
                "kind-not-permitted",
                f"only a request is refused on an Art. 6 ground; this is a {message.type}",
            )
        advance(session, message, State.REFUSED, actor=actor, details={"ground": ground, **officer})
        custody("refused", reason=reason, refusal_ground=ground)
        notify(
            session,
            contact_point_id=here,
            kind="refused",
            message_id=message.id,
            text=f"{message.destination_country} refused {message.type} {message.id} of {message.sender_agency}: "
            f"{label('refusal_grounds', ground)}" + (f" ({reason})" if reason else ""),
        )
    elif kind == EventKind.CLARIFICATION_REQUESTED:
        reason = str(fields["reason"])
        advance(
            session,
            message,
            State.CLARIFICATION_REQUESTED,
            actor=actor,
            details={"reason": reason, **officer},
        )
        custody("clarification-requested", reason=reason)
        notify(
            session,
            contact_point_id=here,
            kind="clarification",
            message_id=message.id,
            text=f"{message.destination_country} asks {message.sender_agency} to clarify {message.id}: {reason}",
        )
    elif kind == EventKind.DEADLINE_EXTENDED:
        code, seconds, reason = str(fields["extension_reason"]), int(fields["seconds"]), fields.get("reason")
        if message.deadline_at is None:
            raise Conflict(f"message {message.id} has no deadline here", reason="event-state")
        longer = extend_deadline(
            session, message, by=timedelta(seconds=seconds), reason_code=code, reason=reason, actor=actor
        )
        custody("deadline-extended", reason=code + (f": {reason}" if reason else ""))
        notify(
            session,
            contact_point_id=here,
            kind="deadline-extended",
            message_id=message.id,
            text=f"{message.destination_country} extended the deadline of {message.type} {message.id} of "
            f"{message.sender_agency} by {seconds // 3600} h, to {longer.deadline_at:%Y-%m-%d %H:%M} UTC: "
            f"{label('deadline_extension_reasons', code)}" + (f" ({reason})" if reason else ""),
        )
    elif kind == EventKind.SUPERSEDED:
        by = str(fields["by"])
        advance(session, message, State.SUPERSEDED, actor=actor, details={"by": by, **officer})
        custody("superseded", reason=f"by {by}")
    elif kind == EventKind.DISSEMINATION_REQUESTED:
        _dissemination_requested(session, message, statement, actor=actor, provider=here)
    else:  # granted or denied, by the provider
        _dissemination_decided(session, message, statement, token, actor=actor, before=before, model=model)


def _dissemination_requested(
    session: Session, message: Message, statement: EventStatement, *, actor: Actor, provider: str
) -> None:
    """An agency of the other node asks this node's contact point, the provider, to pass H2 information on."""
    fields = statement.fields
    requested_by = str(fields["requested_by"])
    if NO_ONWARD_DISSEMINATION not in message.handling_codes:
        raise _refuse(
            "kind-not-permitted", f"message {message.id} is not H2: passing it on needs no permission"
        )
    if not requested_by.startswith(message.destination_country + "-") or message.destination_agency not in (
        None,
        requested_by,
    ):
        raise _refuse("kind-not-permitted", f"message {message.id} was not delivered to {requested_by}")
    row = DisseminationRequest(
        message_id=message.id,
        requested_by=requested_by,
        recipient_country=str(fields["recipient_country"]),
        recipient_agency=fields.get("recipient_agency"),
        purpose=str(fields["purpose"]),
        state="pending",
        requested_at=utcnow(),
        event_id=str(statement.event_id),
    )
    session.add(row)
    session.flush()
    target = row.recipient_agency or row.recipient_country
    record(
        session,
        actor=actor,
        action=AuditAction.DISSEMINATION_REQUESTED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country, row.recipient_country],
        details={"request": row.id, "by": requested_by, "to": target, "event_id": row.event_id},
    )
    notify(
        session,
        contact_point_id=provider,
        kind="dissemination",
        message_id=message.id,
        text=f"{requested_by} asks to pass on H2 information of {message.id} to {target}: {row.purpose}",
    )


def _dissemination_decided(
    session: Session,
    message: Message,
    statement: EventStatement,
    token: str,
    *,
    actor: Actor,
    before: str,
    model: Any,
) -> None:
    """The provider's answer to a request this node sent it: the request here takes it, with its custody step."""
    grant = statement.kind == EventKind.DISSEMINATION_GRANTED
    row = session.scalar(
        select(DisseminationRequest).where(
            DisseminationRequest.event_id == str(model.request), DisseminationRequest.message_id == message.id
        )
    )
    if row is None:
        raise _refuse(
            "unknown-message", f"no request for onward dissemination {model.request} of {message.id}"
        )
    if row.state != "pending":
        if row.state == ("granted" if grant else "denied"):
            return
        raise Conflict(f"dissemination request {model.request} was already {row.state}", reason="event-state")
    row.state = "granted" if grant else "denied"
    row.decided_at = utcnow()
    row.decided_by = f"{statement.contact_point}/{statement.actor}"[:64]
    row.decision_reason = model.reason
    record(
        session,
        actor=actor,
        action=AuditAction.DISSEMINATION_GRANTED if grant else AuditAction.DISSEMINATION_DENIED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country, row.recipient_country],
        details={"request": row.id, "by": row.requested_by, "reason": model.reason, "event_id": row.event_id},
    )
    _custody(
        session,
        message,
        statement,
        token,
        decision="dissemination-granted" if grant else "dissemination-denied",
        from_state=before,
        reason=f"request {row.id} of {row.requested_by} to {row.recipient_agency or row.recipient_country}"
        + (f": {model.reason}" if model.reason else ""),
    )
    here = contact_point_for(session, message.destination_country).id
    notify(
        session,
        contact_point_id=here,
        kind="dissemination",
        message_id=message.id,
        text=f"{message.origin_country} {'granted' if grant else 'denied'} {row.requested_by}'s request to pass on "
        f"{message.id} to {row.recipient_agency or row.recipient_country}",
    )
