"""What the officers' pages say in words: the confirmation after a decision and a closed message's outcome.

A decision redirects with ``done=<action>`` (and the message's id); the page says what happened by reading
the message as it is now (the state it reached, the agency it went to, the ground it was refused on),
never by echoing text from the address, so a crafted link cannot make the page claim something that did
not happen. An unknown action or a message outside the officer's scope shows nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.errors import SpocError
from broker.messages.models import CustodyStep, Message
from broker.messages.states import AWAITING_CLARIFICATION, CLOCK_RUNNING, State
from contact_points.review.scope import message_in_scope
from schemas.codelists import CodeListName, label

__all__ = ["closed_outcome", "confirmation", "country_name"]

OUTCOME_WORDS = {
    State.ANSWERED: "answered",
    State.REJECTED: "rejected",
    State.REFUSED: "refused",
    State.SUPERSEDED: "superseded by an amended message",
    State.SUBMITTED: "submitted",
}


def _label(name: str, code: str) -> str:
    try:
        return label(cast(CodeListName, name), code)
    except ValueError:
        return code


def country_name(code: str) -> str:
    """``Serbia (RS)``: the country's name with its code."""
    name = _label("countries", code)
    return f"{name} ({code})" if name != code else code


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _last_step(session: Session, message: Message) -> CustodyStep | None:
    return session.scalar(
        select(CustodyStep)
        .where(CustodyStep.message_id == message.id)
        .order_by(CustodyStep.seq.desc())
        .limit(1)
    )


def closed_outcome(message: Message) -> str | None:
    """``closed: answered on …`` for a message whose deadline no longer runs; None while it runs or is
    stopped for a clarification (the pages show time left, or "paused")."""
    if message.state in CLOCK_RUNNING or message.state in AWAITING_CLARIFICATION:
        return None
    words = OUTCOME_WORDS.get(State(message.state), message.state.replace("_", " "))
    return f"closed: {words} on {_when(message.updated_at)}"


def confirmation(session: Session, user: User, message_id: str | None, action: str | None) -> str | None:
    """The sentence the officer sees after ``action`` on ``message_id`` (None: nothing to confirm)."""
    if not action or not message_id:
        return None
    try:
        message, cp, direction = message_in_scope(session, user, message_id)
    except SpocError:
        return None
    to = country_name(message.destination_country)
    state = message.state
    if action == "approve":
        if state == State.ORIGIN_REVIEW:
            return (
                "First approval recorded; a second, different officer must approve before it is "
                f"forwarded to {to}."
            )
        return f"Approved and forwarded to {to}."
    if action == "reject":
        return f"Rejected; {message.sender_agency} is told the grounds."
    if action == "return":
        if direction == "outbound":
            return (
                f"Returned to {message.sender_agency} for clarification; the deadline is stopped until "
                "the amended message comes back."
            )
        return (
            f"Clarification asked of {country_name(message.origin_country)}; the deadline is stopped "
            "until the amended message comes back."
        )
    if action == "accept":
        return "Accepted; route it to the competent agency when it is known."
    if action == "route":
        return f"Routed to {message.destination_agency}; it is being delivered to the agency."
    if action == "refuse":
        step = _last_step(session, message)
        ground = step.refusal_ground if step is not None else None
        because = f" on the ground: {_label('refusal_grounds', ground)}" if ground else ""
        return f"Refused{because}; {country_name(message.origin_country)} is told."
    if action == "extend":
        due = f"; it is now due {_when(message.deadline_at)}" if message.deadline_at else ""
        return f"Deadline extended{due}."
    if action == "assign":
        assignee = session.get(User, message.assigned_to) if message.assigned_to else None
        return f"Assigned to {assignee.username}." if assignee else "Assignment recorded."
    if action == "grant":
        return "Onward dissemination granted; the requester may now pass the information on."
    if action == "deny":
        return "Onward dissemination denied; the requester is told why."
    if action == "provide":
        return f"Submitted for review: another officer of {cp.id} must approve it before it is sent to {to}."
    return None


def with_outcome(row: dict[str, Any], message: Message) -> dict[str, Any]:
    """A queue or message summary with ``closed`` (the outcome) in place of a ticking time left."""
    closed = closed_outcome(message)
    if closed is None:
        return {**row, "closed": None}
    return {**row, "closed": closed, "time_left": None, "overdue": False}
