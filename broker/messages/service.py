"""Submission, the state machine and the worker steps (forward, deliver) of a message.

Every function here flushes and never commits: the caller's unit of work makes the state change, its
custody step, its audit entry and its outbox row one atomic step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import Context
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, Actor, record
from broker.crosscheck.content import check_payload
from broker.crypto import countersign, digest, open_with_any, verify_envelope
from broker.db import Base, insert_all, new_row, utcnow
from broker.delivery.models import InboxItem
from broker.directory.models import Agency, ContactPoint
from broker.directory.service import contact_point_for, get_agency
from broker.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    PolicyRefused,
    SpocError,
    VerificationError,
)
from broker.hop.events import announce
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import clock_of, deadline_event, deadline_row, iso, pause_clock, set_clock
from broker.messages.deadlines import Clock, legal_period
from broker.messages.models import CustodyStep, Message
from broker.messages.states import ALLOWED, AWAITING_CLARIFICATION, State
from broker.messages.timing import DEFAULT_WINDOW, CreatedWindow
from broker.outbox.service import enqueue
from broker.policy.service import check_accreditation, legal_basis
from schemas.envelope import Envelope, RoutingHeader
from schemas.hop import EventKind

ANSWER_TYPES = frozenset({"response", "clarification", "acknowledgement"})


def signing_view(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The header and payload exactly as the sender sent them (not as we would re-serialise them)."""
    return raw["header"], raw["payload"]


def message_digest(raw: Mapping[str, Any]) -> str:
    header, payload = signing_view(raw)
    core = {k: payload[k] for k in ("protected", "iv", "ciphertext", "tag", "aad") if k in payload}
    return digest({"header": header, "payload": core})


def submit(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    agency: Agency,
    raw: Mapping[str, Any],
    actor: Actor,
    supersedes: Message | None = None,
    window: CreatedWindow = DEFAULT_WINDOW,
) -> Message:
    """Verify, check policy, store and queue a message posted by ``agency``.

    ``raw`` is the envelope as received (a JSON object); it is validated against the schema here and its
    signature is verified over the received header and ciphertext, so a sender's serialisation choices
    (time formats, key order) never break a valid signature. ``supersedes`` is the returned message this
    one amends (see :func:`resubmit`).
    """
    envelope = _verified(keys, agency=agency, raw=raw, window=window)
    return _accept(session, keys, envelope=envelope, raw=raw, actor=actor, supersedes=supersedes)


def _verified(
    keys: DatabaseKeyStore, *, agency: Agency, raw: Mapping[str, Any], window: CreatedWindow
) -> Envelope:
    """The envelope, if it fits the schema, names ``agency`` as sender, was created within ``window`` of its
    receipt, carries ``agency``'s valid signature by a key that is current *now* (not at the ``created_at``
    the sender chose) and ``agency`` may send at its classification."""
    envelope = Envelope.model_validate(raw)
    now = utcnow()
    header = envelope.header
    if header.sender_agency != agency.id:
        raise NotPermitted(
            f"authenticated as {agency.id} but the header names {header.sender_agency} as sender"
        )
    if header.origin_country != agency.country:
        raise NotPermitted(f"{agency.id} sends from {agency.country}, not {header.origin_country}")
    window.check(header.created_at, now=now)
    raw_header, raw_payload = signing_view(raw)
    verify_envelope(
        raw_header,
        raw_payload,
        envelope.signature,
        resolve=lambda kid: keys.resolve_at(kid, party_id=agency.id, at=now),
    )
    check_accreditation(agency, header.classification, role="send")
    return envelope


def admit_one(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    agency: Agency,
    raw: Mapping[str, Any],
    window: CreatedWindow = DEFAULT_WINDOW,
) -> Admitted:
    """Every check of :func:`submit` for one envelope, read-only: the message ready to be stored (by
    :func:`store_admitted`, after checking it is not stored already), or the refusal raised."""
    envelope = _verified(keys, agency=agency, raw=raw, window=window)
    return _admit(session, keys, envelope=envelope, raw=raw, supersedes=None)


def submit_batch(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    agency: Agency,
    raws: Sequence[Mapping[str, Any]],
    actor: Actor,
    window: CreatedWindow = DEFAULT_WINDOW,
) -> list[Message | SpocError]:
    """Submit many envelopes of one agency in one unit of work: for each, the stored message or the error
    that refused it, in order.

    Every envelope gets exactly the checks of :func:`submit` and is accepted or refused on its own: the
    checks only read, so a refused envelope leaves nothing behind and the next one goes on. What a batch
    saves is everything around them: one request signature, one transaction, one query for ids already
    stored, and one set-based INSERT per table for the whole batch (:func:`_store`) instead of a dozen
    statements and the unit of work's bookkeeping per message.
    """
    outcomes: list[Admitted | SpocError] = []
    in_batch: set[str] = set()
    with session.no_autoflush:
        for raw in raws:
            try:
                envelope = _verified(keys, agency=agency, raw=raw, window=window)
                admitted = _admit(session, keys, envelope=envelope, raw=raw, supersedes=None)
                if admitted.message.id in in_batch:
                    raise Conflict(f"message {admitted.message.id} appears twice in this batch")
                in_batch.add(admitted.message.id)
                outcomes.append(admitted)
            except ValidationError as exc:
                outcomes.append(
                    InvalidInput(
                        "the envelope does not match the schema",
                        errors=[
                            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                            for e in exc.errors(include_url=False, include_input=False)[:50]
                        ],
                    )
                )
            except SpocError as exc:
                if exc.status >= 500:  # the exchange's own failure (Unavailable): the whole request fails
                    raise
                outcomes.append(exc)
    stored = set(session.scalars(select(Message.id).where(Message.id.in_(in_batch)))) if in_batch else set()
    results: list[Message | SpocError] = []
    to_store: list[Admitted] = []
    for outcome in outcomes:
        if isinstance(outcome, SpocError):
            results.append(outcome)
        elif outcome.message.id in stored:
            results.append(Conflict(f"message {outcome.message.id} was already submitted"))
        else:
            to_store.append(outcome)
            results.append(outcome.message)
    _store(session, to_store, actor=actor)
    return results


def submit_from_contact_point(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    contact_point: ContactPoint,
    raw: Mapping[str, Any],
    actor: Actor,
    composed_by: int,
    window: CreatedWindow = DEFAULT_WINDOW,
) -> Message:
    """Store a message the contact point itself sends (an officer's own-initiative provision, Art. 7).

    The envelope is signed with the contact point's key, held by the broker; it then goes through the same
    checks and the same outbound review as an agency's message. ``composed_by`` (the officer's user id) is
    kept so that the author cannot also be its approver.
    """
    envelope = Envelope.model_validate(raw)
    header = envelope.header
    if header.sender_agency != contact_point.id or header.origin_country != contact_point.country:
        raise NotPermitted(f"{contact_point.id} sends only in its own name, from {contact_point.country}")
    now = utcnow()
    window.check(header.created_at, now=now)
    raw_header, raw_payload = signing_view(raw)
    verify_envelope(
        raw_header,
        raw_payload,
        envelope.signature,
        resolve=lambda kid: keys.resolve_at(kid, party_id=contact_point.id, at=now),
    )
    return _accept(
        session, keys, envelope=envelope, raw=raw, actor=actor, supersedes=None, composed_by=composed_by
    )


def resubmit(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    agency: Agency,
    original_id: str,
    raw: Mapping[str, Any],
    actor: Actor,
    window: CreatedWindow = DEFAULT_WINDOW,
) -> Message:
    """The sender's amended version of a message returned for clarification.

    The amendment is a new message (new id, new signature: the envelope is evidence and is never
    rewritten) in the same conversation, to the same country, of the same type; it goes through review
    again. The returned message becomes ``superseded`` and keeps its history; the deadline clock runs on
    from where it stopped.
    """
    original = session.get(Message, original_id)
    if original is None or original.sender_agency != agency.id:
        raise NotFound(f"no message {original_id}")
    if original.state not in AWAITING_CLARIFICATION:
        raise Conflict(
            f"message {original.id} is {original.state}; only a message returned for clarification "
            "can be resubmitted"
        )
    header = Envelope.model_validate(raw).header
    same = {
        "type": (header.type, original.type),
        "conversation_id": (str(header.conversation_id), original.conversation_id),
        "destination_country": (header.destination_country, original.destination_country),
        "in_reply_to": (str(header.in_reply_to) if header.in_reply_to else None, original.in_reply_to),
    }
    for name, (new, old) in same.items():
        if new != old:
            raise InvalidInput(f"an amended message keeps the {name} of the original ({old}), not {new}")
    amended = submit(session, keys, agency=agency, raw=raw, actor=actor, supersedes=original, window=window)
    # Returned by the destination's contact point on another node: that node learns the original is replaced.
    announce(session, keys, original, EventKind.SUPERSEDED, actor=agency.id, fields={"by": amended.id})
    return amended


def _accept(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    envelope: Envelope,
    raw: Mapping[str, Any],
    actor: Actor,
    supersedes: Message | None,
    composed_by: int | None = None,
) -> Message:
    """The checks and the storing every sender shares, after its own signature and accreditation checks."""
    admitted = _admit(session, keys, envelope=envelope, raw=raw, supersedes=supersedes)
    admitted.message.composed_by = composed_by
    return store_one(session, admitted, actor=actor)


def store_one(session: Session, admitted: Admitted, *, actor: Actor) -> Message:
    """Store one admitted message (Conflict if its id is stored already); the message."""
    if session.get(Message, admitted.message.id) is not None:
        raise Conflict(f"message {admitted.message.id} was already submitted")
    _store(session, [admitted], actor=actor)
    return admitted.message


@dataclass(frozen=True)
class Admitted:
    """A message that passed every check of intake and is ready to be stored (nothing written yet)."""

    message: Message
    envelope: Envelope
    legal_basis: str
    original: Message | None
    supersedes: Message | None


def _admit(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    envelope: Envelope,
    raw: Mapping[str, Any],
    supersedes: Message | None,
) -> Admitted:
    """Routing, accreditation of the addressee, the reply rules, the legal basis and the readers: only
    reads, so a refusal here leaves the unit of work as it was (a batch goes on with its next envelope)."""
    header = envelope.header
    origin_cp = contact_point_for(session, header.origin_country)
    destination_cp = contact_point_for(session, header.destination_country)
    # The addressed agency is known and judged where it lives: here on a hub, on its own node otherwise (the
    # destination node checks it again when the hop arrives, ``broker.hop.service.receive``).
    if header.destination_agency is not None and keys.holds(destination_cp.id):
        try:
            target = get_agency(session, header.destination_agency)
        except NotFound as exc:
            raise PolicyRefused(
                f"unknown destination agency {header.destination_agency}", reason="unknown-agency"
            ) from exc
        check_accreditation(target, header.classification, role="receive")
    original = _check_reply(session, sender=header.sender_agency, envelope=envelope)
    agreement = legal_basis(
        session,
        origin=header.origin_country,
        destination=header.destination_country,
        category=header.category,
        classification=header.classification,
        at=utcnow(),  # the legal basis in force on arrival, not the sender's clock
    )
    readers = {r.header.get("kid") for r in envelope.payload.recipients}
    for party in (origin_cp.id, destination_cp.id):
        if keys.public_encryption_key(party).kid not in readers:
            raise PolicyRefused(
                f"the payload is not encrypted to {party}; fetch its key from /v1/directory/parties/{party}/jwks",
                reason="missing-reader",
            )
    # A listed kid proves nothing: the origin contact point vouches for (approves) what it forwards, so it
    # must be able to read it. Its keys are held here (intake runs on the origin's node); a recipient entry
    # with a corrupted wrapped key would otherwise carry content past review to the destination unread.
    try:
        _, plaintext = open_with_any(raw["payload"], keys=keys.encryption_keys(origin_cp.id))
    except VerificationError:
        raise PolicyRefused(
            f"the payload cannot be opened with the key of {origin_cp.id} it names; encrypt the content key "
            f"to {origin_cp.id}'s current key from /v1/directory/parties/{origin_cp.id}/jwks",
            reason="missing-reader",
        ) from None
    check_payload(plaintext)  # content claiming the structured format must fit it (broker.crosscheck.content)
    message = new_message(header, raw, state=State.SUBMITTED, supersedes=supersedes)
    _start_clock(message, header=header, supersedes=supersedes)
    return Admitted(message, envelope, agreement.reference, original, supersedes)


def new_message(
    header: RoutingHeader, raw: Mapping[str, Any], *, state: State, supersedes: Message | None = None
) -> Message:
    """The row of a message as received now: its routing metadata from the verified header, the envelope as
    sent and its digest. Intake (state ``submitted``) and the hop from another node (``forwarded``) share it.
    Built by ``new_row`` (no per-attribute events: a tenth of the constructor's cost)."""
    return new_row(
        Message,
        id=str(header.message_id),
        conversation_id=str(header.conversation_id),
        in_reply_to=str(header.in_reply_to) if header.in_reply_to else None,
        type=header.type,
        sender_agency=header.sender_agency,
        origin_country=header.origin_country,
        destination_country=header.destination_country,
        destination_agency=header.destination_agency,
        category=header.category,
        classification=header.classification,
        handling_codes=list(header.handling_codes),
        priority_level=header.priority.level,
        state=state,
        envelope=dict(raw),
        digest=message_digest(raw),
        received_at=utcnow(),
        supersedes=supersedes.id if supersedes is not None else None,
        paused_seconds=0,
        extended_seconds=0,
    )


def _store(session: Session, batch: Sequence[Admitted], *, actor: Actor) -> None:
    """Write admitted messages with their audit entries, first custody steps and deadline events (see
    :func:`store_admitted`), all on behalf of ``actor``."""
    store_admitted(session, [(admitted, actor, None) for admitted in batch])


def store_admitted(session: Session, batch: Sequence[tuple[Admitted, Actor, Context | None]]) -> None:
    """Write admitted messages, each on behalf of its actor, with their audit entries, first custody steps
    and deadline events.

    Set-based: one INSERT per table for the whole batch (``broker.db.insert_all``), not the unit of work's
    per-object flush; the messages stay in the session as persistent objects, as written. A message is
    queued for review before its row is first written: one INSERT in state origin-review, not an INSERT
    and an UPDATE; both steps keep their audit entries, in order, message after message (an amendment's
    and an answer's entries about the original follow the entries of the message that caused them).
    Audit entries go through ``broker.audit.service.record`` and are written by the closing flush; a
    message's entries are made in its ``Context`` when it has one (another request's, in a group commit:
    its client request id, ``broker.audit.service.CLIENT_REQUEST_ID``).
    """
    messages: list[Message] = []
    dependents: list[list[Base]] = [[], []]  # custody steps, deadline events: after the message rows
    with session.no_autoflush:
        for admitted, actor, context in batch:
            if context is None:
                _stage(session, admitted, actor, messages, dependents)
            else:
                context.run(_stage, session, admitted, actor, messages, dependents)
    insert_all(session, messages, keep=True)
    for rows in dependents:
        insert_all(session, rows)
    session.flush()


def _stage(
    session: Session, admitted: Admitted, actor: Actor, messages: list[Message], dependents: list[list[Base]]
) -> None:
    """One message of :func:`store_admitted`: its audit entries and state, its rows collected, unwritten."""
    message, envelope, original = admitted.message, admitted.envelope, admitted.original
    record(
        session,
        actor=actor,
        action=AuditAction.MESSAGE_SUBMITTED,
        object_type="message",
        object_id=message.id,
        countries=_countries(message),
        details={
            "type": message.type,
            "category": message.category,
            "classification": message.classification,
            "legal_basis": admitted.legal_basis,
            "digest": message.digest,
        },
    )
    transition(
        session, message, State.ORIGIN_REVIEW, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED, flush=False
    )
    messages.append(message)
    dependents[0].append(
        new_row(
            CustodyStep,
            message_id=message.id,
            seq=0,
            party=envelope.header.sender_agency,
            actor=envelope.header.sender_agency,
            decision="submitted",
            to_state=State.SUBMITTED,
            signature=envelope.signature,
        )
    )
    if message.deadline_at is not None:
        dependents[1].append(deadline_row(message, "set", actor=actor))
    if admitted.supersedes is not None:
        _supersede(session, admitted.supersedes, message, actor=actor)
    if original is not None and original.state == State.DELIVERED and message.type != "clarification":
        transition(
            session,
            original,
            State.ANSWERED,
            actor=actor,
            action=AuditAction.MESSAGE_ANSWERED,
            details={"answer": message.id},
            flush=False,
        )


def _start_clock(message: Message, *, header: RoutingHeader, supersedes: Message | None) -> None:
    """Start the deadline clock, or, for an amendment, run on the clock of the message it amends."""
    period = legal_period(
        message_type=header.type,
        priority_level=header.priority.level,
        information_access=header.priority.information_access,
    )
    if period is None:
        return
    previous = clock_of(supersedes) if supersedes is not None else None
    if previous is None:
        set_clock(message, Clock(started_at=message.received_at, deadline_at=message.received_at + period))
        return
    resumed = previous.resume(message.received_at)
    # The amendment may change the priority: the legal period is the amended one, from the first submission.
    stopped_and_extended = timedelta(seconds=resumed.paused_seconds + resumed.extended_seconds)
    set_clock(message, replace(resumed, deadline_at=resumed.started_at + period + stopped_and_extended))


def _supersede(session: Session, original: Message, amended: Message, *, actor: Actor) -> None:
    stopped = clock_of(original)
    transition(
        session,
        original,
        State.SUPERSEDED,
        actor=actor,
        action=AuditAction.MESSAGE_SUPERSEDED,
        details={"by": amended.id},
        flush=False,
    )
    record(
        session,
        actor=actor,
        action=AuditAction.MESSAGE_RESUBMITTED,
        object_type="message",
        object_id=amended.id,
        countries=_countries(amended),
        details={"supersedes": original.id},
    )
    if stopped is not None and stopped.paused_at is not None and amended.deadline_at is not None:
        seconds = int((amended.received_at - stopped.paused_at).total_seconds())
        deadline_event(session, amended, "resumed", actor=actor, seconds=max(0, seconds))
        record(
            session,
            actor=actor,
            action=AuditAction.DEADLINE_RESUMED,
            object_type="message",
            object_id=amended.id,
            countries=_countries(amended),
            details={"deadline_at": iso(amended.deadline_at), "paused_seconds": max(0, seconds)},
        )


def _check_reply(session: Session, *, sender: str, envelope: Envelope) -> Message | None:
    """The message an answer answers (or a notification refers to), if the sender may refer to it."""
    header = envelope.header
    if header.in_reply_to is None:
        return None
    original = session.get(Message, str(header.in_reply_to))
    if header.type not in ANSWER_TYPES:
        # A notification may refer to a message its sender sent or was delivered (e.g. H2 information it
        # passes on, which ``broker.policy`` then holds until the provider grants it).
        if original is None or sender not in (original.sender_agency, original.destination_agency):
            raise PolicyRefused(
                "in_reply_to names no message this sender sent or received", reason="unknown-original"
            )
        return None
    delivered = original is not None and original.state in (State.DELIVERED, State.ANSWERED)
    if original is None or original.destination_agency != sender or not delivered:
        raise PolicyRefused(
            "in_reply_to names no message delivered to this agency", reason="unknown-original"
        )
    if header.destination_country != original.origin_country:
        raise PolicyRefused(f"an answer goes back to {original.origin_country}", reason="wrong-destination")
    if header.destination_agency != original.sender_agency:
        # Named, not left to routing: without an agency the answer's destination contact point could route it
        # to any agency of its country, and with another one it would reach an agency that never asked.
        raise PolicyRefused(
            f"an answer is addressed to the requester, {original.sender_agency} (destination_agency)",
            reason="wrong-addressee",
        )
    if str(header.conversation_id) != original.conversation_id:
        raise PolicyRefused(
            "an answer keeps the conversation_id of the original", reason="wrong-conversation"
        )
    return original


def _countries(message: Message) -> list[str]:
    return [message.origin_country, message.destination_country]


def transition(
    session: Session,
    message: Message,
    to: State,
    *,
    actor: Actor,
    action: AuditAction,
    details: dict[str, Any] | None = None,
    flush: bool = True,
) -> None:
    """Move ``message`` to ``to`` if the state machine allows it, with its audit entry.

    ``flush=False`` leaves the write to the caller's next flush (a batch writes many messages in one)."""
    current = State(message.state)
    if to not in ALLOWED[current]:
        raise Conflict(f"message {message.id} is {current}; it cannot become {to}")
    message.state = to
    message.updated_at = utcnow()
    if to in AWAITING_CLARIFICATION:
        pause_clock(session, message, actor=actor, reason=(details or {}).get("reason"))
    record(
        session,
        actor=actor,
        action=action,
        object_type="message",
        object_id=message.id,
        countries=_countries(message),
        details={"from": str(current), "to": str(to), **(details or {})},
    )
    if flush:
        session.flush()


def transition_many(
    session: Session,
    messages: Sequence[Message],
    to: State,
    *,
    action: AuditAction,
    actor: Callable[[Message], Actor],
    details: Callable[[Message], dict[str, Any]] | None = None,
) -> None:
    """:func:`transition` for many messages of one state, set-based: one ``UPDATE … WHERE id IN (…) AND
    state = <their state>`` (compare-and-set, so a message another transaction moved meanwhile is not
    overwritten: then :class:`Conflict` is raised, for the caller's savepoint to undo the statement and the
    caller to take the messages one by one),
    the objects brought in line without a second write, and each message's audit entry (written by the caller's
    next flush). Not for a state that stops the deadline clock (:func:`transition` pauses it)."""
    if not messages:
        return
    current = {State(m.state) for m in messages}
    if len(current) != 1 or to in AWAITING_CLARIFICATION:
        raise ValueError("transition_many moves messages of one state, into a state that keeps the clock")
    (before,) = current
    if to not in ALLOWED[before]:
        raise Conflict(f"a {before} message cannot become {to}")
    now = utcnow()
    ids = [m.id for m in messages]
    with session.no_autoflush:
        moved = session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.state == str(before))
            .values(state=str(to), updated_at=now, version=Message.version + 1)
            .execution_options(synchronize_session=False)
        )
    changed = int(getattr(moved, "rowcount", 0))
    if changed != len(ids):
        raise Conflict(f"{len(ids) - changed} of these messages changed meanwhile")
    for message in messages:
        set_committed_value(message, "state", str(to))
        set_committed_value(message, "updated_at", now)
        set_committed_value(message, "version", message.version + 1)
        record(
            session,
            actor=actor(message),
            action=action,
            object_type="message",
            object_id=message.id,
            countries=_countries(message),
            details={"from": str(before), "to": str(to), **(details(message) if details else {})},
        )


def add_custody(
    session: Session,
    keys: DatabaseKeyStore,
    message: Message,
    *,
    party: str,
    actor: str,
    decision: str,
    from_state: str | None,
    reason: str | None = None,
    refusal_ground: str | None = None,
) -> CustodyStep:
    """Append a hop to the chain of custody, countersigned by ``party`` over the message digest."""
    seq = (
        session.scalar(select(func.max(CustodyStep.seq)).where(CustodyStep.message_id == message.id)) or 0
    ) + 1
    step = custody_step(
        keys,
        message,
        seq=seq,
        party=party,
        actor=actor,
        decision=decision,
        from_state=from_state,
        reason=reason,
        refusal_ground=refusal_ground,
    )
    session.add(step)
    session.flush()
    return step


def custody_step(
    keys: DatabaseKeyStore,
    message: Message,
    *,
    seq: int,
    party: str,
    actor: str,
    decision: str,
    from_state: str | None,
    reason: str | None = None,
    refusal_ground: str | None = None,
) -> CustodyStep:
    """The custody step at position ``seq`` into the message's present state, countersigned by ``party`` over
    the message digest; not added to a session (:func:`add_custody` adds one after the last; a set-based
    step that knows the positions writes many at once)."""
    at = utcnow()
    statement = {
        "message_id": message.id,
        "digest": message.digest,
        "seq": seq,
        "party": party,
        "actor": actor,
        "decision": decision,
        "from": from_state,
        "to": message.state,
        "reason": reason,
        "refusal_ground": refusal_ground,
        "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return new_row(  # no per-attribute events: the constructor cost more than the row's write
        CustodyStep,
        message_id=message.id,
        seq=seq,
        party=party,
        actor=actor,
        decision=decision,
        from_state=from_state,
        to_state=message.state,
        reason=reason,
        refusal_ground=refusal_ground,
        at=at,
        signature=countersign(statement, key=keys.signing_key(party)),
    )


def custody_of(session: Session, message_id: str) -> Sequence[CustodyStep]:
    return session.scalars(
        select(CustodyStep).where(CustodyStep.message_id == message_id).order_by(CustodyStep.seq)
    ).all()


# --- worker steps: idempotent, called from the outbox -------------------------------------------


def forward(session: Session, keys: DatabaseKeyStore, message_id: str) -> None:
    """The destination contact point receives a forwarded message into its inbound queue."""
    message = session.get(Message, message_id)
    if message is None or message.state != State.FORWARDED:
        return  # already done (task ran twice) or withdrawn
    seq = session.scalar(select(func.max(CustodyStep.seq)).where(CustodyStep.message_id == message.id)) or 0
    session.add(receive_forwarded(session, keys, message, seq=seq + 1))
    session.flush()


def forward_many(session: Session, keys: DatabaseKeyStore, messages: Sequence[Message]) -> None:
    """:func:`forward` for many messages (the outbox's batch), set-based: one query for the custody positions,
    one UPDATE of the states (:func:`transition_many`), one INSERT of the "received" steps. Messages no longer
    forwarded are left alone (done before, or withdrawn)."""
    todo = [m for m in messages if m.state == State.FORWARDED]
    if not todo:
        return
    last: dict[str, int] = dict(
        session.execute(
            select(CustodyStep.message_id, func.max(CustodyStep.seq))
            .where(CustodyStep.message_id.in_([m.id for m in todo]))
            .group_by(CustodyStep.message_id)
        ).all()
    )
    cps = {m.id: contact_point_for(session, m.destination_country).id for m in todo}
    transition_many(
        session,
        todo,
        State.DESTINATION_REVIEW,
        action=AuditAction.MESSAGE_RECEIVED,
        actor=lambda m: Actor(cps[m.id], "contact-point"),
    )
    steps = [
        custody_step(keys, m, seq=(last.get(m.id) or 0) + 1, party=cps[m.id], actor=cps[m.id],
                     decision="received", from_state=State.FORWARDED)
        for m in todo
    ]  # fmt: skip
    insert_all(session, steps)
    session.flush()


def receive_forwarded(session: Session, keys: DatabaseKeyStore, message: Message, *, seq: int) -> CustodyStep:
    """Move a forwarded message into its destination contact point's inbound review: the state change and its
    audit entry (written by the caller's next flush) and that contact point's countersigned "received" step at
    position ``seq``, returned for the caller to write (one at a time, or a batch's in one INSERT).

    The one implementation of receiving, for a forward on this node (:func:`forward`) and for a hop from
    another node (``broker.hop.service``), which writes the message already in its new state."""
    cp = contact_point_for(session, message.destination_country)
    transition(
        session,
        message,
        State.DESTINATION_REVIEW,
        actor=Actor(cp.id, "contact-point"),
        action=AuditAction.MESSAGE_RECEIVED,
        flush=False,
    )
    return custody_step(
        keys, message, seq=seq, party=cp.id, actor=cp.id, decision="received", from_state=State.FORWARDED
    )


def deliver(session: Session, message_id: str) -> None:
    """Put a routed message into its agency's pull inbox; the unique (agency, message) key de-duplicates."""
    message = session.get(Message, message_id)
    if message is None or message.state != State.ROUTED or message.destination_agency is None:
        return
    exists = session.scalar(
        select(InboxItem.id).where(
            InboxItem.agency_id == message.destination_agency, InboxItem.message_id == message.id
        )
    )
    if exists is None:
        session.add(InboxItem(agency_id=message.destination_agency, message_id=message.id))
    transition(
        session,
        message,
        State.DELIVERED,
        actor=SYSTEM,
        action=AuditAction.MESSAGE_DELIVERED,
        details={"agency": message.destination_agency, "channel": "pull"},
    )


def schedule_forward(session: Session, message: Message) -> None:
    enqueue(session, kind="forward", message_id=message.id)


def schedule_delivery(session: Session, message: Message) -> None:
    enqueue(session, kind="deliver", message_id=message.id)
