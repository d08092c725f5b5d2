"""The message state machine. Every change goes through ``broker.messages.service.transition``.

::

    submitted → origin_review → forwarded → destination_review → routed → delivered → answered
                     │  │                        │    │
                     │  └→ returned ─┐           │    └→ clarification_requested ─┐
                     │               └──────────────────────────────────────────→ superseded
                     └→ rejected                 └→ refused

The clarification loop: a contact point returns a message to its sender for clarification, from its
outbound review (``returned``) or from its inbound review (``clarification_requested``, Directive (EU)
2023/977 Art. 6(3)). The message keeps its envelope, custody and audit trail; the sender amends it and
resubmits a *new* message linked to it (``supersedes``), which goes through review again, and the
returned one becomes ``superseded``. The deadline clock stops while the clarification is pending and runs
on in the amended message (``broker.messages.deadlines``).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    SUBMITTED = "submitted"
    ORIGIN_REVIEW = "origin_review"
    FORWARDED = "forwarded"
    DESTINATION_REVIEW = "destination_review"
    ROUTED = "routed"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    REJECTED = "rejected"
    RETURNED = "returned"
    CLARIFICATION_REQUESTED = "clarification_requested"
    SUPERSEDED = "superseded"
    REFUSED = "refused"


ALLOWED: dict[State, frozenset[State]] = {
    State.SUBMITTED: frozenset({State.ORIGIN_REVIEW, State.REJECTED}),
    State.ORIGIN_REVIEW: frozenset({State.FORWARDED, State.REJECTED, State.RETURNED}),
    State.FORWARDED: frozenset({State.DESTINATION_REVIEW}),
    State.DESTINATION_REVIEW: frozenset({State.ROUTED, State.REFUSED, State.CLARIFICATION_REQUESTED}),
    State.ROUTED: frozenset({State.DELIVERED}),
    State.DELIVERED: frozenset({State.ANSWERED}),
    State.ANSWERED: frozenset(),
    State.REJECTED: frozenset(),
    State.RETURNED: frozenset({State.SUPERSEDED}),
    State.CLARIFICATION_REQUESTED: frozenset({State.SUPERSEDED}),
    State.SUPERSEDED: frozenset(),
    State.REFUSED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in ALLOWED.items() if not nxt)

AWAITING_CLARIFICATION = frozenset({State.RETURNED, State.CLARIFICATION_REQUESTED})
"""The sender is asked to clarify: the deadline clock is stopped."""

CLOCK_RUNNING = frozenset(
    {State.ORIGIN_REVIEW, State.FORWARDED, State.DESTINATION_REVIEW, State.ROUTED, State.DELIVERED}
)
"""A request in these states is still waiting for its answer: its deadline can be warned and breached."""
