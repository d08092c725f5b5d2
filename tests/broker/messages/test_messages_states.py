"""The message state machine: exactly the documented transitions, through ``transition()`` only.

The expected graph is written out here, independently of ``broker.messages.states.ALLOWED``, so a
change to the table that the walk of DESIGN §2 does not allow fails a test.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from broker.errors import Conflict
from broker.messages.models import Message
from broker.messages.service import transition
from broker.messages.states import ALLOWED, TERMINAL, State
from tests.broker.messages.spoc_builders import audit_entries

EXPECTED: frozenset[tuple[str, str]] = frozenset(
    {
        ("submitted", "origin_review"),
        ("submitted", "rejected"),
        ("origin_review", "forwarded"),
        ("origin_review", "rejected"),
        ("origin_review", "returned"),
        ("forwarded", "destination_review"),
        ("destination_review", "routed"),
        ("destination_review", "refused"),
        ("destination_review", "clarification_requested"),
        ("returned", "superseded"),
        ("clarification_requested", "superseded"),
        ("routed", "delivered"),
        ("delivered", "answered"),
    }
)
ALL_PAIRS = list(itertools.product(list(State), repeat=2))


def _message(session: Session, state: State) -> Message:
    message = Message(
        id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        type="request",
        sender_agency="XK-KP",
        origin_country="XK",
        destination_country="AL",
        category="drug-trafficking",
        classification="RESTRICTED",
        handling_codes=["H0"],
        priority_level="normal",
        state=state,
        envelope={},
        digest="sha-256:test",
    )
    session.add(message)
    session.flush()
    return message


def test_the_table_is_the_documented_graph() -> None:
    table = {(str(a), str(b)) for a, targets in ALLOWED.items() for b in targets}
    assert table == EXPECTED
    assert set(ALLOWED) == set(State)


def test_terminal_states_are_exactly_those_without_exits() -> None:
    assert {str(s) for s in TERMINAL} == {"answered", "rejected", "superseded", "refused"}
    for state in TERMINAL:
        assert ALLOWED[state] == frozenset()


def test_no_transition_leads_back_to_submitted_and_no_state_loops_to_itself() -> None:
    assert all(to != "submitted" for _, to in EXPECTED)
    assert all(a != b for a, b in EXPECTED)


@pytest.mark.parametrize(("current", "to"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_transition_allows_exactly_the_documented_pairs(db: Session, current: State, to: State) -> None:
    message = _message(db, current)
    if (str(current), str(to)) in EXPECTED:
        transition(db, message, to, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED)
        assert message.state == to
        [entry] = audit_entries(db, object_id=message.id)
        assert entry.details["from"] == str(current)
        assert entry.details["to"] == str(to)
        assert sorted(entry.countries) == ["AL", "XK"]
    else:
        with pytest.raises(Conflict, match=f"is {current}; it cannot become {to}"):
            transition(db, message, to, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED)
        assert message.state == current
        assert audit_entries(db, object_id=message.id) == []  # a refused change leaves no trace


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_have_no_exit(db: Session, terminal: State) -> None:
    message = _message(db, terminal)
    for to in State:
        with pytest.raises(Conflict):
            transition(db, message, to, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED)
    assert message.state == terminal


def test_the_walk_of_a_request_reaches_answered_in_order(db: Session) -> None:
    message = _message(db, State.SUBMITTED)
    walk = [
        State.ORIGIN_REVIEW,
        State.FORWARDED,
        State.DESTINATION_REVIEW,
        State.ROUTED,
        State.DELIVERED,
        State.ANSWERED,
    ]
    for to in walk:
        transition(db, message, to, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED)
    assert [e.details["to"] for e in audit_entries(db, object_id=message.id)] == [str(s) for s in walk]
    assert message.state == State.ANSWERED
