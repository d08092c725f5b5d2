"""A page of routine decisions — approve an outbound page, route an inbound page — taken set-based.

``POST /v1/cp/decisions`` takes up to 100 decisions; taken one by one (``service.decide``, each in its own
savepoint) a decision costs a dozen statements. Here a page of approvals and routings costs a few: each
decision gets exactly the checks ``decide`` makes (the same functions: scope, clearance, the state awaited,
the review's decisions, that the officer could read the content, four eyes and H2, the agency routed to), in
order, read-only; a refused one is answered with its problem and leaves nothing. The decisions that passed are
then written together: one INSERT of approvals, one of countersigned custody steps, one of outbox rows, one
UPDATE of the messages (:func:`_update_messages`, compare-and-set on each one's version, as the unit of work
would do it row by row), the audit entries in one flush. Functions flush, never commit.

Only a page of approvals and routings, each message once, takes this path (:func:`decide_page` answers None
otherwise); the caller runs it in a savepoint and, if the writing fails (another officer decided meanwhile),
takes the page one decision at a time instead, where each failure stays its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson
from sqlalchemy import func, inspect, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.db import Base, insert_all
from broker.directory.models import ContactPoint
from broker.errors import NotPermitted, SpocError
from broker.hop.events import announce
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Approval, CustodyStep, Message
from broker.messages.service import custody_step, transition
from broker.messages.states import State
from broker.outbox.models import OutboxItem
from broker.policy.service import cleared
from contact_points.review.service import check_and_route, check_approval, check_review, message_in_scope
from schemas.api import Decision
from schemas.hop import EventKind

__all__ = ["PAGE_ACTIONS", "decide_page"]

PAGE_ACTIONS: Final = frozenset({"approve", "route"})


@dataclass(frozen=True)
class _Checked:
    message: Message
    cp: ContactPoint
    decision: Decision
    before: str
    completes: bool  # an approval: the last one needed (four eyes); a routing: always


def lock_page(session: Session, cp: ContactPoint, ids: Sequence[str]) -> list[Message]:
    """Lock the messages ``ids`` of ``cp``'s country (others cannot be decided here) for a page of decisions,
    all at once and in id order, so that two officers sending overlapping pages in different orders cannot
    deadlock (each decision then re-reads its message under the lock it already holds). Returned: the
    caller holds them for the page (the identity map alone holds them weakly).

    The lock is ``FOR NO KEY UPDATE`` (PostgreSQL), as for a single decision (``review.service.decide``): it
    excludes every other decision's lock, as ``FOR UPDATE`` would, but not the ``FOR KEY SHARE`` that a
    foreign-key check takes. With ``FOR UPDATE`` a page of decisions deadlocked with the cross-check batch,
    whose inserts (scans, links) reference messages it had not locked, in another order; a decision never
    changes a message's key, so nothing needs the stronger lock."""
    return list(
        session.scalars(
            select(Message)
            .where(
                Message.id.in_(sorted(ids)),
                or_(Message.origin_country == cp.country, Message.destination_country == cp.country),
            )
            .order_by(Message.id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
            .execution_options(populate_existing=True)  # as locked: the page's set-based path reads no more
        )
    )


def decide_page(
    session: Session,
    keys: DatabaseKeyStore,
    user: User,
    items: Sequence[tuple[str, Decision]],
    *,
    actor: Actor,
) -> list[Message | SpocError] | None:
    """Take a page of approvals and routings: for each, in order, the message decided or the refusal. None
    if the page has another decision or names a message twice: then take each alone (``service.decide``).

    The messages must be locked (``SELECT … FOR UPDATE``, in id order) and loaded fresh by the caller, as
    ``POST /v1/cp/decisions`` does for any page: ``decide`` re-reads each under its lock; here the page's
    lock is that read."""
    if any(d.action not in PAGE_ACTIONS for _, d in items) or len({m for m, _ in items}) != len(items):
        return None
    approving = [m for m, d in items if d.action == "approve"]
    previous: dict[str, list[Approval]] = {}
    if approving:
        for approval in session.scalars(
            select(Approval)
            .where(Approval.message_id.in_(approving), Approval.stage == "origin")
            .order_by(Approval.id)
        ):
            previous.setdefault(approval.message_id, []).append(approval)
    outcomes: list[Message | SpocError] = []
    checked: list[_Checked] = []
    # The checks only read, and a routing's new reader must not be written by the next check's autoflush:
    # each message is written once, with its state (_update_messages).
    with session.no_autoflush:
        for message_id, decision in items:
            try:
                item = _check(session, keys, user, message_id, decision, previous.get(message_id))
            except SpocError as exc:
                outcomes.append(exc)
                continue
            checked.append(item)
            outcomes.append(item.message)
        _write(session, keys, user, checked, actor=actor)
    return outcomes


def _check(
    session: Session,
    keys: DatabaseKeyStore,
    user: User,
    message_id: str,
    decision: Decision,
    previous: Sequence[Approval] | None,
) -> _Checked:
    """One decision's checks, in ``decide``'s order (read-only; a routing's new reader is added to the
    object): what to write, or the refusal raised. ``previous``: the message's approvals, for an approval."""
    message, cp, direction = message_in_scope(session, user, message_id)
    if not cleared(user.clearance, message.classification):
        raise NotPermitted(f"deciding on a {message.classification} message needs clearance at or above it")
    before = str(message.state)
    if decision.action == "approve":
        check_review(session, keys, user, message, cp, direction, decision)
        completes = check_approval(session, message, user, list(previous or []))
    else:  # the same checks, then the agency's reader added, with one decryption (see check_and_route)
        check_and_route(session, keys, user, message, cp, direction, decision)
        completes = True
    return _Checked(message, cp, decision, before, completes)


def _write(
    session: Session, keys: DatabaseKeyStore, user: User, page: Sequence[_Checked], *, actor: Actor
) -> None:
    """What ``decide`` writes for each decision of ``page``, set-based (see the module docstring)."""
    if not page:
        return
    last = dict(
        session.execute(
            select(CustodyStep.message_id, func.max(CustodyStep.seq))
            .where(CustodyStep.message_id.in_([c.message.id for c in page]))
            .group_by(CustodyStep.message_id)
        ).all()
    )
    rows: list[list[Base]] = [[], [], []]  # approvals, custody steps, outbox rows
    with session.no_autoflush:
        for item in page:
            message, decision = item.message, item.decision
            if decision.action == "approve":
                rows[0].append(
                    Approval(message_id=message.id, stage="origin", user_id=user.id, role=user.role,
                             clearance=user.clearance)
                )  # fmt: skip
                if item.completes:
                    transition(
                        session, message, State.FORWARDED, actor=actor, action=AuditAction.MESSAGE_FORWARDED,
                        flush=False,
                    )  # fmt: skip
                    step, work = "approved", "forward"
                else:
                    step, work = "approved-first", ""
            else:
                transition(
                    session, message, State.ROUTED, actor=actor, action=AuditAction.MESSAGE_ROUTED,
                    details={"agency": message.destination_agency}, flush=False,
                )  # fmt: skip
                step, work = "routed", "deliver"
            rows[1].append(
                custody_step(
                    keys,
                    message,
                    seq=(last.get(message.id) or 0) + 1,
                    party=item.cp.id,
                    actor=user.username,
                    decision=step,
                    from_state=item.before,
                    reason=decision.reason,
                    refusal_ground=decision.refusal_ground,
                )
            )
            if work:
                rows[2].append(OutboxItem(kind=work, message_id=message.id, payload={}))
            if step == "approved-first":
                record(
                    session,
                    actor=actor,
                    action=AuditAction.MESSAGE_APPROVED,
                    object_type="message",
                    object_id=message.id,
                    countries=[message.origin_country, message.destination_country],
                    details={"four_eyes": "first"},
                )
            if step == "routed":  # the requester's node learns of it (nothing when it is this node)
                announce(
                    session, keys, message, EventKind.ROUTED, actor=user.username,
                    fields={"agency": message.destination_agency},
                )  # fmt: skip
    for table_rows in rows:
        insert_all(session, table_rows)
    _update_messages(session, [item.message for item in page])
    session.flush()


#: What a page's decision changes on its message: the state (``transition``), and for a routing the envelope
#: with the agency's reader and the agency (``route_to``). Any other change is left to the unit of work.
_PAGE_COLUMNS: Final = frozenset({"state", "updated_at", "envelope", "destination_agency"})
_COLUMN_TYPES: Final = {
    "state": "varchar",
    "updated_at": "timestamptz",
    "envelope": "jsonb",
    "destination_agency": "varchar",
}


def _update_messages(session: Session, messages: Sequence[Message]) -> None:
    """Write the page's changed messages with one UPDATE per set of changed columns (PostgreSQL; elsewhere
    the unit of work writes them). The unit of work would send one UPDATE per message (a versioned row is
    written alone, to check its row count); this one carries every row's values and version in one JSON
    document, and each row is written only if its version is still the one read: fewer rows written than
    sent raise StaleDataError, as the unit of work would, and the caller's savepoint undoes the page. The
    objects are then brought in line (values committed, version moved on), so the flush writes nothing more
    for them."""
    if session.get_bind().dialect.name != "postgresql":
        return
    groups: dict[tuple[str, ...], list[Message]] = {}
    for message in messages:
        changed = tuple(sorted(inspect(message).committed_state))
        if changed and set(changed) <= _PAGE_COLUMNS:
            groups.setdefault(changed, []).append(message)
    for columns, group in groups.items():
        rows = [{"id": m.id, "version": m.version, **{c: getattr(m, c) for c in columns}} for m in group]
        record = ", ".join(["id varchar", "version integer", *(f"{c} {_COLUMN_TYPES[c]}" for c in columns)])
        statement = text(
            f"UPDATE messages AS m SET {', '.join(f'{c} = v.{c}' for c in columns)}, version = m.version + 1 "  # noqa: S608 - column names from _PAGE_COLUMNS
            f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v({record}) "
            "WHERE m.id = v.id AND m.version = v.version"
        )
        result = session.connection().execute(statement, {"rows": orjson.dumps(rows).decode()})
        written = int(getattr(result, "rowcount", -1))
        if written != len(rows):
            raise StaleDataError(f"{len(rows) - written} of the page's messages changed meanwhile")
        for message in group:
            for column in columns:
                set_committed_value(message, column, getattr(message, column))
            set_committed_value(message, "version", message.version + 1)
