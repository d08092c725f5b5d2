"""The hop between nodes (DESIGN §8): the origin node hands an approved message to the destination's node.

Sending (the outbox's ``hop`` step, after the origin contact point's approval): the node builds the hop —
the envelope as the agency signed it, the origin contact point's custody countersignatures, and that contact
point's statement vouching for the agency's key — and POSTs it to the peer named by the regional directory,
signed with RFC 9421 under its transport key (label ``spoc-node``). The peer answers with a transport receipt
signed by its own transport key; the sender checks it against the directory and keeps it. Until then the step
fails and the outbox tries again: at-least-once.

Receiving (``POST /v1/hop/messages``): the node checks the transport signature against the directory (an
unlisted key is refused before anything else), then the evidence (``broker.hop.evidence``), then its own
policy (the agreement as the directory states it, the addressed agency's accreditation), and stores the
message in its inbound review exactly as a local forward would, with every custody step it came with and its
own "received" step. Idempotent by message id: the same hop again gets the same receipt; a different hop
under a stored id is a conflict. Both sides record the hop (``hops``) and an audit entry with the same digest,
so the two logs can be reconciled.

Functions flush, never commit; the API route and the worker's unit of work commit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import PublicKey, countersign, unverified_kid
from broker.crypto.countersign import sign_transport_receipt, verify_transport_receipt
from broker.db import Base, insert_all, new_row, utcnow
from broker.directory.service import contact_point_for, get_agency
from broker.errors import Conflict, NotFound, PolicyRefused, SpocError, Unavailable, VerificationError
from broker.hop.evidence import Evidence, sender_key_statement, verify_evidence
from broker.hop.models import Hop
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_row, set_clock
from broker.messages.deadlines import Clock, legal_period
from broker.messages.models import CustodyStep, DeadlineEvent, Message
from broker.messages.service import ANSWER_TYPES, new_message, receive_forwarded, transition
from broker.messages.states import ALLOWED, State
from broker.policy.service import check_accreditation, legal_basis
from broker.region.service import Current, current
from broker.region.sync import TRANSPORT_PARTY, held_parties
from schemas.region import DirectoryNode, RegionDirectory

__all__ = [
    "HOP_BATCH_PATH",
    "HOP_PATH",
    "HopFailed",
    "advance",
    "check_receipt",
    "hop_body",
    "hop_bytes",
    "is_remote",
    "live_directory",
    "origin_custody",
    "peer_for_kid",
    "problem_reason",
    "receive",
    "receive_batch",
    "safe_reason",
    "sender_key_token",
    "this_node",
    "transport_keys",
]

HOP_PATH: Final = "/v1/hop/messages"
HOP_BATCH_PATH: Final = "/v1/hop/messages/batches"


def live_directory(session: Session) -> Current:
    """The installed directory, if it is still valid: a node whose directory expired cannot know who is
    still a member, so it neither sends nor accepts hops (retryable: a fresh directory fixes it)."""
    installed = current(session)
    if installed is None:
        raise Unavailable("this node has no regional directory; install one (spoc region install)")
    if installed.directory.valid_until <= utcnow():
        raise Unavailable(
            f"this node's regional directory (version {installed.directory.version}) expired at "
            f"{installed.directory.valid_until.isoformat()}; install a newer one"
        )
    return installed


def is_remote(session: Session, keys: DatabaseKeyStore, country: str) -> bool:
    """Whether ``country``'s contact point lives on another node: this node does not hold its signing key.
    (On a hub, or the embedded demo, every contact point is held and nothing is remote.) From the directory
    and key snapshots: no query."""
    return not keys.holds(contact_point_for(session, country).id)


def this_node(session: Session, directory: RegionDirectory) -> DirectoryNode:
    kids = set(
        session.scalars(
            select(PartyKey.kid).where(
                PartyKey.party_id == TRANSPORT_PARTY, PartyKey.private_sealed.is_not(None)
            )
        )
    )
    for node in directory.nodes:
        if kids & {PublicKey.from_jwk(j).kid for j in node.transport_keys}:
            return node
    raise Unavailable("the regional directory does not list this node's transport key")


def peer_for_kid(directory: RegionDirectory, kid: str) -> tuple[DirectoryNode, PublicKey]:
    for node in directory.nodes:
        for jwk in node.transport_keys:
            key = PublicKey.from_jwk(jwk)
            if key.kid == kid:
                return node, key
    raise NotFound("not a transport key of any node in the regional directory")


# --- sending ------------------------------------------------------------------------------------------


def hop_body(
    session: Session,
    keys: DatabaseKeyStore,
    message: Message,
    *,
    sender_key: str | None,
    custody: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What a hop carries (``schemas.hop.HopRequest``). ``custody``: the origin contact point's steps, if the
    caller has them already (:func:`origin_custody`, one query for a batch)."""
    if custody is None:
        custody = origin_custody(session, {message.id: message.origin_country})[message.id]
    if sender_key is None:
        sender_key = sender_key_token(session, keys, message)
    return {"envelope": message.envelope, "custody": list(custody), "sender_key": sender_key}


def hop_bytes(envelope: str, custody: Sequence[str], sender_key: str) -> bytes:
    """:func:`hop_body` serialised, from the envelope's JSON text as the database returns it (PostgreSQL's
    ``jsonb`` output): the envelope is not parsed into objects only to be serialised again. The receiver
    parses the hop and verifies the envelope's signature over its RFC 8785 form, which no spelling of the
    same JSON changes."""
    rest = orjson.dumps({"custody": list(custody), "sender_key": sender_key})
    return b'{"envelope":' + envelope.encode("utf-8") + b"," + rest[1:]


def sender_key_token(session: Session, keys: DatabaseKeyStore, message: Message) -> str:
    """The origin contact point's countersigned statement vouching for the sender agency's keys (its signing
    key, the one the envelope verifies under, and its encryption key, when known)."""
    origin_cp = contact_point_for(session, message.origin_country).id
    agency_kid = unverified_kid(message.envelope["signature"])
    agency_key = keys.resolve(agency_kid, party_id=message.sender_agency)
    try:
        answer_to: PublicKey | None = keys.public_encryption_key(message.sender_agency)
    except NotFound:
        answer_to = None
    statement = sender_key_statement(
        message_id=message.id, agency=message.sender_agency, key=agency_key, encryption_key=answer_to
    )
    return countersign(statement, key=keys.signing_key(origin_cp))


def origin_custody(session: Session, origins: Mapping[str, str]) -> dict[str, list[str]]:
    """The origin contact point's custody countersignatures (seq 1, 2, …) of each message (``origins``: message
    id -> its origin country), in one query."""
    found: dict[str, list[str]] = {message_id: [] for message_id in origins}
    if not found:
        return found
    parties = {c: contact_point_for(session, c).id for c in set(origins.values())}
    origin = {message_id: parties[country] for message_id, country in origins.items()}
    rows = session.execute(
        select(CustodyStep.message_id, CustodyStep.party, CustodyStep.signature)
        .where(CustodyStep.message_id.in_(found), CustodyStep.seq >= 1)
        .order_by(CustodyStep.message_id, CustodyStep.seq)
    )
    for message_id, party, signature in rows:
        if party == origin[message_id]:
            found[message_id].append(signature)
    return found


def problem_reason(answer: httpx.Response) -> str | None:
    try:
        reason = answer.json().get("reason")
    except (ValueError, AttributeError):
        return None
    return safe_reason(reason)


def safe_reason(reason: Any) -> str | None:
    """A peer's problem ``reason`` if it is a short slug (all of its text that is ever kept), else None."""
    return (
        reason
        if isinstance(reason, str) and reason.replace("-", "").isalnum() and len(reason) <= 40
        else None
    )


class HopFailed(SpocError):
    """The peer did not take the hop (down, refusing, or a receipt that does not verify): try again later."""

    status = 502
    slug = "hop-failed"
    title = "The peer node did not take the hop"


def transport_keys(peer: DirectoryNode) -> dict[str, PublicKey]:
    """The peer's transport keys as the directory lists them, by kid (each JWK validated once per process)."""
    return {k.kid: k for k in (PublicKey.from_jwk(j) for j in peer.transport_keys)}


def check_receipt(
    token: Any,
    *,
    peer: DirectoryNode,
    me: DirectoryNode,
    message_id: str,
    digest: str,
    event_id: str | None = None,
    keys: Mapping[str, PublicKey] | None = None,
) -> dict[str, Any]:
    """The peer's transport receipt for this hop, verified under its directory keys; HopFailed otherwise. The
    receipt names the message and the digest that crossed: the message's for a message hop, the event's
    (``event_id``, ``digest``) for an event hop. ``keys``: :func:`transport_keys` of ``peer``, if the caller
    checks many receipts of one peer (they are read from ``peer`` otherwise)."""
    held = transport_keys(peer) if keys is None else keys

    def resolve(kid: str) -> PublicKey:
        if kid not in held:
            raise NotFound("not the peer's transport key")
        return held[kid]

    try:
        if not isinstance(token, str):
            raise VerificationError("no receipt")
        statement = verify_transport_receipt(token, resolve=resolve)
    except VerificationError as exc:
        raise HopFailed(f"{peer.node_id}'s transport receipt does not verify") from exc
    expected = {
        "message_id": message_id,
        "digest": digest,
        "from_node": me.node_id,
        "to_node": peer.node_id,
        "event_id": event_id,  # absent (None) on a message's receipt
    }
    if any(statement.get(k) != v for k, v in expected.items()):
        raise HopFailed(f"{peer.node_id}'s transport receipt is not for this hop")
    return statement


# --- receiving ------------------------------------------------------------------------------------------


def receive(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    directory: RegionDirectory,
    sender: DirectoryNode,
    body: Mapping[str, Any],
    request_id: str | None,
) -> str:
    """Check and store a hop from ``sender`` (its transport signature already verified); the receipt."""
    outcome = receive_batch(
        session, keys, directory=directory, sender=sender, bodies=[body], request_id=request_id
    )[0]
    if isinstance(outcome, SpocError):
        raise outcome
    return outcome


@dataclass(frozen=True)
class _Admitted:
    """A hop that passed every check and is ready to be stored (nothing written yet)."""

    evidence: Evidence
    envelope: dict[str, Any]
    custody: list[str]
    sender_key: str
    legal_basis: str
    original: Message | None


def receive_batch(
    session: Session,
    keys: DatabaseKeyStore,
    *,
    directory: RegionDirectory,
    sender: DirectoryNode,
    bodies: Sequence[Any],
    request_id: str | None,
) -> list[str | SpocError]:
    """Check and store hops from ``sender`` in one unit of work: for each, in order, its receipt or the
    refusal (a 4xx :class:`SpocError`; nothing of that hop is stored). An error of this node itself (5xx)
    raises: nothing of the batch is kept, and the sender sends it again.

    Each hop gets exactly the checks of a hop alone, before anything is written, and succeeds or fails on its
    own: the evidence (``broker.hop.evidence``), idempotency by message id (the same hop again, also twice in
    one batch, gets the first receipt; other content under a stored id is ``hop-replayed``), the reply rules,
    the agreement and the addressed agency's accreditation. What a batch shares is the rest: one query for
    the ids seen before, one for this node's parties, and one set-based INSERT per table for the hops that
    passed (:func:`_write`). A hop whose ``in_reply_to`` names a message earlier in the same batch is checked
    after that one is written, as if they had come one after the other.
    """
    served_here = held_parties(session)
    actor = Actor(sender.node_id, "node", request_id)
    verified: list[tuple[int, dict[str, Any], list[str], str, Evidence]] = []
    outcomes: list[str | SpocError | int] = []  # an int: the receipt of the hop at that index (a repeat)
    for index, body in enumerate(bodies):
        try:
            envelope, custody, sender_key = _shape(body)
            evidence = verify_evidence(
                directory=directory,
                sender=sender,
                served_here=served_here,
                envelope=envelope,
                custody=custody,
                sender_key_token=sender_key,
            )
        except SpocError as exc:
            if exc.status >= 500:
                raise
            outcomes.append(exc)
            continue
        verified.append((index, envelope, custody, sender_key, evidence))
        outcomes.append(-1)
    ids = {str(v[4].header.message_id) for v in verified}
    seen = {
        hop.message_id: hop
        for hop in session.scalars(
            select(Hop).where(Hop.message_id.in_(ids), Hop.direction == "in", Hop.event_id.is_(None))
        )
    } if ids else {}  # fmt: skip
    known = set(session.scalars(select(Message.id).where(Message.id.in_(ids)))) if ids else set()
    pending: list[tuple[int, _Admitted]] = []
    in_batch: dict[str, tuple[int, str]] = {}  # message id -> (index, digest) of the hop admitted first
    me: DirectoryNode | None = None
    for index, envelope, custody, sender_key, evidence in verified:
        message_id = str(evidence.header.message_id)
        try:
            if message_id in in_batch:
                first, digest = in_batch[message_id]
                if digest != evidence.digest:
                    raise Conflict(
                        f"message {message_id} was received before with other content", reason="hop-replayed"
                    )
                outcomes[index] = first
                continue
            if message_id in seen:
                hop = seen[message_id]
                if hop.digest != evidence.digest or hop.peer_node != sender.node_id or hop.receipt is None:
                    raise Conflict(
                        f"message {message_id} was received before with other content", reason="hop-replayed"
                    )
                outcomes[index] = hop.receipt
                continue
            if message_id in known:
                raise Conflict(f"message {message_id} is already known to this node", reason="hop-replayed")
            reply_to = evidence.header.in_reply_to
            if reply_to is not None and str(reply_to) in in_batch and pending:
                me = me or this_node(session, directory)
                _settle(outcomes, _write(session, keys, pending, sender=sender, me=me, actor=actor))
                pending = []
            admitted = _admit(session, evidence, envelope, custody, sender_key, sender=sender)
        except SpocError as exc:
            if exc.status >= 500:
                raise
            outcomes[index] = exc
            continue
        in_batch[message_id] = (index, evidence.digest)
        pending.append((index, admitted))
    if pending:
        me = me or this_node(session, directory)
        _settle(outcomes, _write(session, keys, pending, sender=sender, me=me, actor=actor))
    return [_resolved(outcomes, outcome) for outcome in outcomes]


def _shape(body: Any) -> tuple[dict[str, Any], list[str], str]:
    """The hop's three members, if they have the right types (the evidence checks the rest)."""
    if not isinstance(body, Mapping):
        raise PolicyRefused("a hop is {envelope, custody: [...], sender_key}", reason="malformed-hop")
    custody, sender_key, envelope = body.get("custody"), body.get("sender_key"), body.get("envelope")
    if not isinstance(envelope, dict) or not isinstance(custody, list) or not isinstance(sender_key, str):
        raise PolicyRefused("a hop is {envelope, custody: [...], sender_key}", reason="malformed-hop")
    if not all(isinstance(t, str) for t in custody):
        raise PolicyRefused("custody holds compact JWS strings", reason="malformed-hop")
    return envelope, custody, sender_key


def _settle(outcomes: list[str | SpocError | int], receipts: dict[int, str]) -> None:
    for index, receipt in receipts.items():
        outcomes[index] = receipt


def _resolved(outcomes: list[str | SpocError | int], outcome: str | SpocError | int) -> str | SpocError:
    """A repeat within the batch (an index) is answered with the receipt of the hop it repeats."""
    while isinstance(outcome, int):
        outcome = outcomes[outcome]
    return outcome


def _admit(
    session: Session,
    evidence: Evidence,
    envelope: dict[str, Any],
    custody: list[str],
    sender_key: str,
    *,
    sender: DirectoryNode,
) -> _Admitted:
    """This node's own rules for a hop whose evidence verified: the reply rules, the agreement as the directory
    states it, the addressed agency's accreditation. Only reads: a refusal leaves the unit of work as it was."""
    header = evidence.header
    original = _check_reply(session, evidence, sender=sender)
    agreement = legal_basis(
        session,
        origin=header.origin_country,
        destination=header.destination_country,
        category=header.category,
        classification=header.classification,
        at=utcnow(),
    )
    if header.destination_agency is not None:
        try:
            check_accreditation(
                get_agency(session, header.destination_agency), header.classification, role="receive"
            )
        except NotFound:
            raise PolicyRefused(
                f"unknown destination agency {header.destination_agency}", reason="unknown-agency"
            ) from None
    return _Admitted(evidence, envelope, custody, sender_key, agreement.reference, original)


def _write(
    session: Session,
    keys: DatabaseKeyStore,
    batch: Sequence[tuple[int, _Admitted]],
    *,
    sender: DirectoryNode,
    me: DirectoryNode,
    actor: Actor,
) -> dict[int, str]:
    """Store admitted hops, set-based: the originators' keys, the messages (already in inbound review, with
    this contact point's "received" step, as a local forward would leave them), their custody steps and
    deadline events, the ``hops`` rows with their receipts, and the audit entries, in the order a hop alone
    writes them. The receipts by index."""
    _learn_sender_keys(session, [admitted.evidence for _, admitted in batch])
    signer = keys.signing_key(TRANSPORT_PARTY)
    messages: list[Message] = []
    rows: list[list[Base]] = [[], [], []]  # custody steps, deadline events, hops: after the messages
    receipts: dict[int, str] = {}
    with session.no_autoflush:
        for index, admitted in batch:
            message, steps, deadline = _message(session, admitted, actor=actor)
            now = message.received_at
            statement = {
                "message_id": message.id,
                "digest": admitted.evidence.digest,
                "from_node": sender.node_id,
                "to_node": me.node_id,
                "received_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            receipts[index] = sign_transport_receipt(statement, key=signer)
            rows[2].append(
                new_row(Hop, message_id=message.id, direction="in", peer_node=sender.node_id,
                        digest=admitted.evidence.digest, sender_key=admitted.sender_key,
                        receipt=receipts[index], at=now)
            )  # fmt: skip
            # Into inbound review, with this contact point's "received" step (what a forward on one node does).
            steps.append(receive_forwarded(session, keys, message, seq=max(s.seq for s in steps) + 1))
            rows[0] += steps
            rows[1] += deadline
            messages.append(message)
            header = admitted.evidence.header
            if (
                admitted.original is not None
                and header.type in ANSWER_TYPES
                and header.type != "clarification"
            ):
                # As intake does on one node: an answer (not a question back) makes the original answered here.
                advance(
                    session, admitted.original, State.ANSWERED, actor=actor, details={"answer": message.id}
                )
    # Not kept in the session: nothing here changes them again, and a later hop of the batch that names one
    # (a reply) reads it as written.
    insert_all(session, messages)
    for table_rows in rows:
        insert_all(session, table_rows)
    session.flush()
    return receipts


#: The states of this node's copy of a message sent to another node in which the other node may still answer
#: it: what the single node's "delivered to the answering agency" becomes when delivery happened over there
#: (the copy learns of it only from events). A copy refused, returned or superseded over there is not answered.
ANSWERABLE: Final = frozenset(
    {State.FORWARDED, State.DESTINATION_REVIEW, State.ROUTED, State.DELIVERED, State.ANSWERED}
)


def _check_reply(session: Session, evidence: Evidence, *, sender: DirectoryNode) -> Message | None:
    """The reply rules of intake (``broker.messages.service._check_reply``), judged on what this node itself
    sent and received (``hops``), since the other node's word is all the rest would be.

    An answer (response, clarification, acknowledgement) answers a message this node sent to the answering
    node, in a state in which it can still be answered, from the agency it reached (when this node knows
    it), to the agency that asked, in its conversation. A notification may refer to a message that crossed
    between the two nodes, which its sender sent or received. The original, or None."""
    header = evidence.header
    if header.in_reply_to is None:
        return None
    original = session.get(Message, str(header.in_reply_to))
    if header.type not in ANSWER_TYPES:
        crossed = (
            session.scalar(
                select(Hop.id).where(
                    Hop.message_id == original.id,
                    Hop.event_id.is_(None),
                    Hop.peer_node == sender.node_id,
                    or_(Hop.direction == "in", Hop.receipt.is_not(None)),
                )
            )
            if original is not None
            else None
        )
        if (
            original is None
            or crossed is None
            or header.sender_agency
            not in (
                original.sender_agency,
                original.destination_agency,
            )
        ):
            raise PolicyRefused(
                "in_reply_to names no message this sender sent or received", reason="unknown-original"
            )
        return None
    sent = (
        session.scalar(
            select(Hop.id).where(
                Hop.message_id == original.id,
                Hop.direction == "out",
                Hop.event_id.is_(None),
                Hop.peer_node == sender.node_id,
                Hop.receipt.is_not(None),
            )
        )
        if original is not None
        else None
    )
    if (
        original is None
        or sent is None
        or original.destination_country != header.origin_country
        or original.state not in ANSWERABLE
        or original.destination_agency not in (None, header.sender_agency)
    ):
        raise PolicyRefused(
            "in_reply_to names no message this node sent to the answering agency's country",
            reason="unknown-original",
        )
    if header.destination_country != original.origin_country:
        raise PolicyRefused(f"an answer goes back to {original.origin_country}", reason="wrong-destination")
    if header.destination_agency != original.sender_agency:
        raise PolicyRefused(
            f"an answer is addressed to the requester, {original.sender_agency}", reason="wrong-addressee"
        )
    if str(header.conversation_id) != original.conversation_id:
        raise PolicyRefused(
            "an answer keeps the conversation_id of the original", reason="wrong-conversation"
        )
    return original


_ACTION_INTO: Final[dict[State, AuditAction]] = {
    State.DESTINATION_REVIEW: AuditAction.MESSAGE_RECEIVED,
    State.ROUTED: AuditAction.MESSAGE_ROUTED,
    State.DELIVERED: AuditAction.MESSAGE_DELIVERED,
    State.ANSWERED: AuditAction.MESSAGE_ANSWERED,
    State.REFUSED: AuditAction.MESSAGE_REFUSED,
    State.CLARIFICATION_REQUESTED: AuditAction.MESSAGE_CLARIFICATION_REQUESTED,
    State.SUPERSEDED: AuditAction.MESSAGE_SUPERSEDED,
}


def _path(start: State, goal: State) -> list[State] | None:
    """The states from ``start`` (excluded) to ``goal`` along the state machine, or None if none leads there."""
    came: dict[State, State | None] = {start: None}
    todo = deque([start])
    while todo:
        here = todo.popleft()
        if here == goal:
            steps: list[State] = []
            back: State | None = here
            while back is not None and back != start:
                steps.append(back)
                back = came[back]
            return steps[::-1]
        for nxt in sorted(ALLOWED[here]):
            if nxt not in came:
                came[nxt] = here
                todo.append(nxt)
    return None


def advance(
    session: Session, message: Message, goal: State, *, actor: Actor, details: dict[str, Any] | None = None
) -> None:
    """Bring this node's copy of a message that crossed to ``goal``, through the states in between.

    The copy learns of the other node's decisions only from its events (``broker.hop.event_intake``) and
    answers: ``routed`` implies the message was received there, an answer that it was delivered. An event
    that arrives after a later one (a retry overtaken) changes nothing; one that contradicts the state here
    is a conflict (``event-state``): a message refused over there is not then routed."""
    current = State(message.state)
    if current == goal or _path(goal, current):
        return
    steps = _path(current, goal)
    if steps is None:
        raise Conflict(
            f"message {message.id} is {current} here; it cannot become {goal}", reason="event-state"
        )
    for state in steps:
        transition(
            session, message, state, actor=actor, action=_ACTION_INTO[state],
            details=details if state == goal else {"implied_by": str(goal)},
        )  # fmt: skip


def _learn_sender_keys(session: Session, proofs: Sequence[Evidence]) -> None:
    """Register the originators' public keys as the origin contact point vouched for them, so that this node's
    agencies (and anyone checking the message here) verify the envelope from this node's registry. Public
    only; a key already known is left as it is (its status here is this node's business).

    ``INSERT … ON CONFLICT DO NOTHING``, one statement for a batch: the first hops of one agency arrive
    together, and a read-then-add would make all but one of them fail on the primary key (a 409 the sender
    took as final)."""
    rows: dict[str, dict[str, Any]] = {}
    for evidence in proofs:
        for key in (evidence.sender_key, evidence.sender_encryption_key):
            if key is not None and key.kid not in rows:
                rows[key.kid] = {
                    "kid": key.kid,
                    "party_id": evidence.header.sender_agency,
                    "use": key.use,
                    "public_jwk": dict(key.jwk),
                }
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(PartyKey).values(list(rows.values())).on_conflict_do_nothing(index_elements=["kid"])
    )
    session.flush()


def _message(
    session: Session, admitted: _Admitted, *, actor: Actor
) -> tuple[Message, list[CustodyStep], list[DeadlineEvent]]:
    """The message as the origin node forwarded it (state ``forwarded``, its deadline started on arrival),
    its custody steps as they came, its deadline event and its ``hop:received`` audit entry; nothing written."""
    evidence, envelope, custody = admitted.evidence, admitted.envelope, admitted.custody
    header = evidence.header
    message = new_message(header, envelope, state=State.FORWARDED)
    now = message.received_at
    message.updated_at = now
    # Art. 5: the time limits run from the receipt of the request by the requested contact point.
    period = legal_period(
        message_type=header.type,
        priority_level=header.priority.level,
        information_access=header.priority.information_access,
    )
    if period is not None:
        set_clock(message, Clock(started_at=now, deadline_at=now + period))
    # Built without the declarative constructor's attribute events (``new_row``): only ever inserted (``_write``).
    steps = [new_row(CustodyStep, message_id=message.id, seq=0, party=header.sender_agency,
                     actor=header.sender_agency, decision="submitted", to_state=State.SUBMITTED,
                     signature=envelope["signature"])]  # fmt: skip
    for token, statement in zip(custody, evidence.custody, strict=True):
        steps.append(
            new_row(
                CustodyStep,
                message_id=message.id,
                seq=int(statement["seq"]),
                party=str(statement["party"]),
                actor=str(statement.get("actor")),
                decision=str(statement.get("decision")),
                from_state=statement.get("from"),
                to_state=str(statement.get("to")),
                reason=statement.get("reason"),
                refusal_ground=statement.get("refusal_ground"),
                signature=token,
            )
        )
    deadline = [deadline_row(message, "set", actor=actor)] if message.deadline_at is not None else []
    record(
        session,
        actor=actor,
        action=AuditAction.HOP_RECEIVED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        details={
            "from_node": actor.name,
            "digest": message.digest,
            "type": message.type,
            "category": message.category,
            "classification": message.classification,
            "legal_basis": admitted.legal_basis,
            "custody_steps": len(custody),
        },
    )
    return message, steps, deadline
