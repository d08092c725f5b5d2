"""The contact point's review: the decisions officers take on a message, and which they may take.

Scope is built into every query (``scope``): an officer sees and acts on messages of its own contact
point only. Each decision is a state change (or a recorded act: accept, assign, extend, grant, deny)
with its countersigned custody step and its audit entry, in the caller's transaction.

Which decisions fit which message, for which officer, is one function, :func:`allowed_actions`: the UI
shows exactly those, and :func:`decide` refuses anything else with the reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import PublicKey, add_reader, opening_key
from broker.directory.models import ContactPoint
from broker.directory.service import contact_point_for, get_agency
from broker.errors import (
    Conflict,
    FourEyesRefused,
    InvalidInput,
    NotFound,
    NotPermitted,
    PolicyRefused,
    SpocError,
    VerificationError,
)
from broker.hop.events import announce
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import extend_deadline
from broker.messages.dissemination import decide_dissemination, requests_for
from broker.messages.models import Approval, CustodyStep, Message
from broker.messages.notifications import notify
from broker.messages.service import add_custody, schedule_delivery, schedule_forward, transition
from broker.messages.states import State
from broker.policy.service import (
    CONDITIONS,
    check_accreditation,
    check_onward_dissemination,
    cleared,
    onward_source,
)
from contact_points.review.content import Content, acknowledged, read_content
from contact_points.review.queues import QueueFilter, counts, queue
from contact_points.review.scope import (
    AWAITING,
    NOT_YET_FORWARDED,
    OFFICER_ROLES,
    Direction,
    message_in_scope,
    officer_contact_point,
)
from schemas.api import Decision
from schemas.codelists import classification_rank, label
from schemas.hop import EventKind

__all__ = [
    "FOUR_EYES_FROM",
    "NOT_YET_FORWARDED",
    "Content",
    "Direction",
    "QueueFilter",
    "allowed_actions",
    "approvals_of",
    "check_and_route",
    "counts",
    "decide",
    "message_in_scope",
    "officer_contact_point",
    "queue",
    "read_content",
]

FOUR_EYES_FROM = classification_rank("CONFIDENTIAL")
REVIEW_ACTIONS: dict[Direction, tuple[str, ...]] = {
    # Only the requested (inbound) contact point extends a deadline: Art. 5(2) lets it deviate from the time
    # limits while a judicial authorisation is awaited; the requesting side cannot stretch its own clock.
    "outbound": ("approve", "reject", "return", "assign"),
    "inbound": ("accept", "route", "refuse", "return", "assign", "extend"),
}
PROVIDER_ACTIONS = ("grant", "deny")
#: Decisions that pass the content on (forward it, accept it, send it to an agency): taken only by an
#: officer who could read it — cleared, the payload opens with the contact point's keys, H3 acknowledged.
CONTENT_ACTIONS = frozenset({"approve", "accept", "route"})


class _Custody(Protocol):
    """The ``custody`` callback ``decide`` hands to its helpers: one countersigned step."""

    def __call__(self, name: str, reason: str | None = ...) -> None: ...


def approval_rows(session: Session, message: Message, stage: str = "origin") -> list[Approval]:
    """The approvals of ``message`` at ``stage``, oldest first, each with the approver's role and clearance
    as they were when it approved."""
    return list(
        session.scalars(
            select(Approval)
            .where(Approval.message_id == message.id, Approval.stage == stage)
            .order_by(Approval.id)
        ).all()
    )


def approvals_of(session: Session, message: Message, stage: str = "origin") -> list[User]:
    """Who approved (the accounts, for display); four eyes is judged on :func:`approval_rows`."""
    rows = approval_rows(session, message, stage)
    return [u for u in (session.get(User, a.user_id) for a in rows) if u is not None]


def _may_approve(
    session: Session, message: Message, user: User, previous: list[Approval] | None = None
) -> str | None:
    """Why ``user`` may not approve ``message`` now (four eyes, authorship, H2), or None. ``previous``: the
    message's approvals if the caller has them already. Earlier approvals count with the role they were
    given in (stored on the row), the new one with the officer's role now."""
    if message.composed_by == user.id:
        return "four eyes: you wrote this provision; another officer must approve it"
    if previous is None:
        previous = approval_rows(session, message)
    if any(a.user_id == user.id for a in previous):
        return "four eyes: you have already approved this message; a different officer must approve it"
    if (
        message.classification == "SECRET"
        and previous
        and user.role != "supervisor"
        and not any(a.role == "supervisor" for a in previous)
    ):
        return "four eyes: a SECRET message needs a supervisor as one of its two approvers"
    return None


def unread(
    session: Session, keys: DatabaseKeyStore, user: User, message: Message, cp: ContactPoint
) -> str | None:
    """Why ``user`` cannot have read ``message``'s content as an officer of ``cp`` (so may not pass it on),
    or None: not cleared, the payload does not open with the contact point's held keys (a recipient entry
    can name its key and still be garbage), or H3 conditions this officer has not acknowledged."""
    return _unread_before_opening(session, user, message) or _unopened(keys, message, cp)


def _unread_before_opening(session: Session, user: User, message: Message) -> str | None:
    """:func:`unread`'s reasons that need no decryption, in its order (the decryption is its last check)."""
    if message.content_deleted_at is not None:
        return "its content was deleted under the retention rules: there is nothing to pass on"
    if not cleared(user.clearance, message.classification):
        return f"passing on a {message.classification} message needs clearance at or above it"
    if CONDITIONS in message.handling_codes and not acknowledged(session, user, message):
        return "H3: acknowledge the provider's conditions and read the content before passing it on"
    return None


def _unopened(keys: DatabaseKeyStore, message: Message, cp: ContactPoint) -> str | None:
    """:func:`unread`'s last reason: the payload does not open with the contact point's held keys."""
    try:
        opening_key(message.envelope["payload"], keys=keys.encryption_keys(cp.id))
    except VerificationError:
        return f"the payload cannot be decrypted with {cp.id}'s keys; unread content is not passed on"
    return None


def allowed_actions(
    session: Session,
    user: User,
    message: Message,
    direction: Direction,
    *,
    keys: DatabaseKeyStore,
) -> list[str]:
    """The decisions this officer may take on this message now — what the UI offers, and nothing more.

    Approve, accept and route are offered only if the officer could read the content (see :func:`unread`),
    the rule :func:`decide` enforces at every door."""
    if user.role not in OFFICER_ROLES or not cleared(user.clearance, message.classification):
        return []
    actions: list[str] = []
    if message.state == AWAITING[direction]:
        cannot_read = unread(session, keys, user, message, officer_contact_point(session, user))
        for action in REVIEW_ACTIONS[direction]:
            if action in CONTENT_ACTIONS and cannot_read is not None:
                continue
            if action == "approve" and (
                _may_approve(session, message, user) is not None or _h2_blocked(session, message)
            ):
                continue
            if action == "extend" and message.deadline_at is None:
                continue
            if action == "accept" and _accepted(session, message):
                continue
            if action == "refuse" and message.type != "request":
                continue
            actions.append(action)
    if direction == "outbound" and requests_for(session, message.id, pending_only=True):
        actions.extend(PROVIDER_ACTIONS)
    return actions


def _accepted(session: Session, message: Message) -> bool:
    """The destination contact point has accepted the message (one "accepted" step, never a second)."""
    found = session.scalar(
        select(CustodyStep.id)
        .where(CustodyStep.message_id == message.id, CustodyStep.decision == "accepted")
        .limit(1)
    )
    return found is not None


def _h2_blocked(session: Session, message: Message) -> bool:
    try:
        check_onward_dissemination(session, message)
    except PolicyRefused:
        return True
    return False


def h2_source(session: Session, message: Message) -> Message | None:
    """The H2 message whose information this one passes on (the UI shows whether it is granted)."""
    return onward_source(session, message)


def decide(
    session: Session, keys: DatabaseKeyStore, user: User, message_id: str, decision: Decision, *, actor: Actor
) -> Message:
    message, cp, direction = message_in_scope(session, user, message_id)
    # One decision on a message at a time: two officers approving at once would otherwise each see no
    # other approval (four eyes would stall) and race for the same custody position. PostgreSQL: a row
    # lock held to the commit; SQLite already serialises writers (BEGIN IMMEDIATE).
    session.refresh(message, with_for_update={"key_share": True})  # FOR NO KEY UPDATE: see review.pages
    if not cleared(user.clearance, message.classification):
        raise NotPermitted(f"deciding on a {message.classification} message needs clearance at or above it")
    if decision.action in PROVIDER_ACTIONS:
        return _grant_or_deny(session, keys, message, cp, user, decision, actor=actor)
    check_review(session, keys, user, message, cp, direction, decision)
    before = message.state

    def custody(name: str, reason: str | None = decision.reason) -> None:
        add_custody(
            session,
            keys,
            message,
            party=cp.id,
            actor=user.username,
            decision=name,
            from_state=before,
            reason=reason,
            refusal_ground=decision.refusal_ground,
        )

    def tell(kind: EventKind, **fields: object) -> None:
        """The requester's node learns of this inbound decision (nothing when it is this node)."""
        announce(session, keys, message, kind, actor=user.username, fields=fields)

    if decision.action == "approve":
        _approve(session, message, user, actor=actor, custody=custody)
    elif decision.action == "reject":
        transition(
            session,
            message,
            State.REJECTED,
            actor=actor,
            action=AuditAction.MESSAGE_REJECTED,
            details={"reason": decision.reason},
        )
        custody("rejected")
    elif decision.action == "return":
        _return(session, keys, message, direction, decision, actor=actor)
        custody("returned" if direction == "outbound" else "clarification-requested")
        if direction == "inbound":
            tell(EventKind.CLARIFICATION_REQUESTED, reason=decision.reason)
    elif decision.action == "accept":
        if _accepted(session, message):
            raise Conflict(f"message {message.id} is already accepted; route, refuse or return it")
        custody("accepted")
        _audit(session, message, AuditAction.MESSAGE_ACCEPTED, actor)
        tell(EventKind.ACCEPTED)
    elif decision.action == "route":
        route_to(session, keys, message, cp, decision)
        transition(
            session,
            message,
            State.ROUTED,
            actor=actor,
            action=AuditAction.MESSAGE_ROUTED,
            details={"agency": message.destination_agency},
        )
        custody("routed")
        schedule_delivery(session, message)
        tell(EventKind.ROUTED, agency=message.destination_agency)
    elif decision.action == "refuse":
        if message.type != "request":
            raise Conflict(f"only a request is refused on an Art. 6 ground; this is a {message.type}")
        transition(
            session,
            message,
            State.REFUSED,
            actor=actor,
            action=AuditAction.MESSAGE_REFUSED,
            details={"ground": decision.refusal_ground},
        )
        custody("refused")
        tell(EventKind.REFUSED, refusal_ground=decision.refusal_ground, reason=decision.reason)
    elif decision.action == "assign":
        assignee = _assign(session, message, cp, user, decision, actor=actor)
        custody("assigned", reason=f"to {assignee.username}")
    else:  # extend
        code = _extend(session, keys, message, cp, decision, actor=actor)
        custody("deadline-extended", reason=code + (f": {decision.reason}" if decision.reason else ""))
        tell(
            EventKind.DEADLINE_EXTENDED,
            extension_reason=code,
            seconds=(decision.extend_hours or 0) * 3600,
            reason=decision.reason,
        )
    return message


def check_review(
    session: Session,
    keys: DatabaseKeyStore,
    user: User,
    message: Message,
    cp: ContactPoint,
    direction: Direction,
    decision: Decision,
) -> None:
    """The checks of a review decision (not a provider's grant or deny) every door takes, read-only: who may
    extend, the state the message awaits, the decisions of that review, and, for those that pass the content
    on, that the officer could read it (:func:`unread`). Raises the refusal."""
    _check_review_before_opening(session, user, message, direction, decision)
    if decision.action in CONTENT_ACTIONS:
        refused = _unopened(keys, message, cp)
        if refused is not None:
            raise NotPermitted(refused)


def _check_review_before_opening(
    session: Session, user: User, message: Message, direction: Direction, decision: Decision
) -> None:
    """:func:`check_review` up to the decryption of the payload, which is its last check."""
    if decision.action == "extend" and direction != "inbound":
        raise NotPermitted(
            "only the requested contact point extends a deadline (Directive (EU) 2023/977 Art. 5(2)); "
            "the requesting side is told of it"
        )
    expected = AWAITING[direction]
    if message.state != expected:
        raise Conflict(f"message {message.id} is {message.state}, not awaiting {direction} review")
    allowed = REVIEW_ACTIONS[direction]
    if decision.action not in allowed:
        raise Conflict(
            f"'{decision.action}' is not a decision of {direction} review; allowed: {', '.join(sorted(allowed))}"
        )
    if decision.action in CONTENT_ACTIONS:
        refused = _unread_before_opening(session, user, message)
        if refused is not None:
            raise NotPermitted(refused)


def check_and_route(
    session: Session,
    keys: DatabaseKeyStore,
    user: User,
    message: Message,
    cp: ContactPoint,
    direction: Direction,
    decision: Decision,
) -> None:
    """:func:`check_review` then :func:`route_to` for a routing, with one decryption of the payload where the
    two take two: every check but the decryption, then ``route_to``, whose re-wrap authenticates the whole
    JWE with each of the contact point's keys in turn until one opens it, which is exactly ``unread``'s
    check (the same keys, in the same order, the whole decryption). If anything refuses, the two run again
    in their order, so the refusal (and its precedence) is the one ``check_review`` then ``route_to`` give;
    a refused routing changes nothing, so running them again is safe."""
    try:
        _check_review_before_opening(session, user, message, direction, decision)
        route_to(session, keys, message, cp, decision)
    except SpocError:
        check_review(session, keys, user, message, cp, direction, decision)
        route_to(session, keys, message, cp, decision)


def _audit(session: Session, message: Message, action: AuditAction, actor: Actor, **details: object) -> None:
    record(
        session,
        actor=actor,
        action=action,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        details=dict(details),
    )


def _approve(session: Session, message: Message, user: User, *, actor: Actor, custody: _Custody) -> None:
    """Four eyes: UNCLASSIFIED and RESTRICTED need one officer; CONFIDENTIAL and above two different officers,
    and for SECRET one of them must be a supervisor. An H2-derived message waits for the provider's grant."""
    completes = check_approval(session, message, user, approval_rows(session, message))
    session.add(
        Approval(
            message_id=message.id, stage="origin", user_id=user.id, role=user.role, clearance=user.clearance
        )
    )
    session.flush()
    if not completes:
        custody("approved-first")
        _audit(session, message, AuditAction.MESSAGE_APPROVED, actor, four_eyes="first")
        return
    transition(session, message, State.FORWARDED, actor=actor, action=AuditAction.MESSAGE_FORWARDED)
    custody("approved")
    schedule_forward(session, message)


def check_approval(session: Session, message: Message, user: User, previous: list[Approval]) -> bool:
    """Whether ``user`` may approve ``message`` now, given its ``previous`` approvals (H2 grant, four eyes,
    authorship; the refusal is raised), and whether this approval is the last one needed (read-only)."""
    check_onward_dissemination(session, message)
    refused = _may_approve(session, message, user, previous)
    if refused is not None:
        raise FourEyesRefused(refused)
    needed = 2 if classification_rank(message.classification) >= FOUR_EYES_FROM else 1
    return len(previous) + 1 >= needed


def _return(
    session: Session,
    keys: DatabaseKeyStore,
    message: Message,
    direction: Direction,
    decision: Decision,
    *,
    actor: Actor,
) -> None:
    """Back to the sender for clarification; the deadline clock stops until the amendment arrives."""
    if direction == "outbound":
        transition(
            session,
            message,
            State.RETURNED,
            actor=actor,
            action=AuditAction.MESSAGE_RETURNED,
            details={"reason": decision.reason},
        )
        return
    transition(
        session,
        message,
        State.CLARIFICATION_REQUESTED,
        actor=actor,
        action=AuditAction.MESSAGE_CLARIFICATION_REQUESTED,
        details={"reason": decision.reason},
    )
    origin = contact_point_for(session, message.origin_country)
    if not keys.holds(origin.id):
        return  # the requester's node is told by the event, and notifies its officers there
    notify(
        session,
        contact_point_id=origin.id,
        kind="clarification",
        message_id=message.id,
        text=f"{message.destination_country} asks {message.sender_agency} to clarify {message.id}: "
        f"{decision.reason}",
    )


def _extend(
    session: Session,
    keys: DatabaseKeyStore,
    message: Message,
    cp: ContactPoint,
    decision: Decision,
    *,
    actor: Actor,
) -> str:
    """Extend the deadline on a coded Art. 5(2) ground and tell the requesting contact point (Art. 5(2): the
    requesting side is informed of the delay and its reasons). Returns the code."""
    hours = decision.extend_hours or 0  # required with 'extend' by the schema, as is the code
    code = decision.extension_reason or ""
    longer = extend_deadline(
        session, message, by=timedelta(hours=hours), reason_code=code, reason=decision.reason, actor=actor
    )
    origin = contact_point_for(session, message.origin_country)
    if not keys.holds(origin.id):
        return code  # the requester's node is told by the event, and notifies its officers there
    detail = f" ({decision.reason})" if decision.reason else ""
    notify(
        session,
        contact_point_id=origin.id,
        kind="deadline-extended",
        message_id=message.id,
        text=f"{cp.country} extended the deadline of {message.type} {message.id} of {message.sender_agency} "
        f"by {hours} h, to {longer.deadline_at:%Y-%m-%d %H:%M} UTC: "
        f"{label('deadline_extension_reasons', code)}{detail}",
    )
    return code


def _assign(
    session: Session, message: Message, cp: ContactPoint, user: User, decision: Decision, *, actor: Actor
) -> User:
    """An officer takes a message; a supervisor may give it to any officer of the contact point."""
    assignee = session.scalar(select(User).where(User.username == decision.assign_to))
    if assignee is None or assignee.contact_point_id != cp.id or assignee.role not in OFFICER_ROLES:
        raise InvalidInput(f"{decision.assign_to} is not an officer of {cp.id}")
    if assignee.id != user.id and user.role != "supervisor":
        raise NotPermitted("officers assign messages to themselves; a supervisor assigns to others")
    if not assignee.active:
        raise InvalidInput(f"{assignee.username}'s account is locked")
    if not cleared(assignee.clearance, message.classification):
        raise InvalidInput(f"{assignee.username} is not cleared for {message.classification}")
    message.assigned_to = assignee.id
    _audit(session, message, AuditAction.MESSAGE_ASSIGNED, actor, to=assignee.username)
    if assignee.id != user.id:
        notify(
            session,
            contact_point_id=cp.id,
            kind="assigned",
            message_id=message.id,
            user_id=assignee.id,
            text=f"{user.username} assigned {message.type} {message.id} to you",
        )
    return assignee


def _grant_or_deny(
    session: Session,
    keys: DatabaseKeyStore,
    message: Message,
    cp: ContactPoint,
    user: User,
    decision: Decision,
    *,
    actor: Actor,
) -> Message:
    if decision.dissemination_request is None:
        raise InvalidInput(f"'{decision.action}' needs dissemination_request")
    grant = decision.action == "grant"
    row = decide_dissemination(
        session,
        message,
        cp,
        request_id=decision.dissemination_request,
        grant=grant,
        reason=decision.reason,
        actor=actor,
    )
    add_custody(
        session,
        keys,
        message,
        party=cp.id,
        actor=user.username,
        decision="dissemination-granted" if grant else "dissemination-denied",
        from_state=message.state,
        reason=f"request {row.id} of {row.requested_by} to {row.recipient_agency or row.recipient_country}"
        + (f": {decision.reason}" if decision.reason else ""),
    )
    if row.event_id is not None:  # the request came from the requester's node: its answer goes back there
        announce(
            session,
            keys,
            message,
            EventKind.DISSEMINATION_GRANTED if grant else EventKind.DISSEMINATION_DENIED,
            actor=user.username,
            fields={"request": row.event_id, "reason": decision.reason},
        )
    return message


def route_to(
    session: Session, keys: DatabaseKeyStore, message: Message, cp: ContactPoint, decision: Decision
) -> None:
    """Send to the competent agency: check it, and wrap the content key to it if the sender could not. The
    checks come first: a refusal leaves the message as it was."""
    target_id = decision.route_to_agency or message.destination_agency
    if target_id is None:
        raise InvalidInput("route needs route_to_agency")
    try:
        target = get_agency(session, target_id)
    except NotFound:
        raise InvalidInput(f"{target_id} is not an agency of {cp.country}") from None
    if target.country != cp.country:
        raise InvalidInput(f"{target.id} is not an agency of {cp.country}")
    if message.destination_agency is not None and message.destination_agency != target.id:
        raise Conflict(
            f"the sender addressed {message.destination_agency}; the message cannot be re-addressed"
        )
    check_accreditation(target, message.classification, role="receive")
    reader: PublicKey = keys.public_encryption_key(target.id)
    payload = message.envelope["payload"]
    # Re-wrapped with the key that really opens it (decide() has checked that one does), not merely one
    # listed: add_reader authenticates the whole JWE with it first, so one decryption per key tried.
    for key in keys.encryption_keys(cp.id):
        try:
            rewrapped = add_reader(payload, key=key, reader=reader)
        except VerificationError:
            continue
        break
    else:
        raise Conflict("this contact point holds no key that opens the payload")
    message.envelope = {**message.envelope, "payload": rewrapped}
    message.destination_agency = target.id
