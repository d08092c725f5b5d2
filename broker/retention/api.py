"""``/v1/retention``: the compliance review queue, one exchange's retention, legal holds and reviews.

For contact-point officers (their contact point's case file) and auditors (their country's exchanges; a
regional auditor all): never content, only metadata. A refusal of the rules (a hold without a reason, deleting
held data, reviewing an exchange that has not ended) rolls the request back and is recorded as
``retention:refused`` before the problem is answered; a caller without the role or out of scope is recorded by
the edge (``access:denied``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.deps import DbSession, Principal, SettingsDep, require
from broker.errors import Conflict, PolicyRefused
from broker.params import Int64
from broker.retention import service
from broker.retention.exchanges import (
    ExchangeMessage,
    ExchangeView,
    HoldView,
    RetentionScope,
    exchange,
    review_queue,
)

router = APIRouter(prefix="/v1/retention", tags=["retention"])

Reviewer = Annotated[Principal, Depends(require("officer", "supervisor", "auditor"))]
"""Who may hold, release and review: officers and supervisors, and auditors. Not an admin, not an agency."""

_STRICT = ConfigDict(extra="forbid")


class HoldBody(BaseModel):
    """Why the exchange must be kept: the case, the court order or the rule. Required (checked by the service,
    so a missing reason is refused with 422 and audited like any other refusal)."""

    model_config = _STRICT
    reason: str | None = Field(default=None, max_length=service.REASON_MAX)


class ReleaseBody(BaseModel):
    model_config = _STRICT
    reason: str | None = Field(default=None, max_length=service.REASON_MAX)


class ReviewBody(BaseModel):
    """``keep``: the content stays until its retention period ends; ``delete``: delete it now; ``hold``: a
    legal hold (``reason`` required)."""

    model_config = _STRICT
    decision: Literal["keep", "delete", "hold"]
    reason: str | None = Field(default=None, max_length=service.REASON_MAX)


class RetentionMessage(BaseModel):
    message_id: str
    type: str
    state: str
    origin_country: str
    destination_country: str
    category: str
    classification: str
    received_at: datetime
    content_deleted: bool
    content_deleted_at: datetime | None
    content_deletion: str | None

    @classmethod
    def of(cls, m: ExchangeMessage) -> RetentionMessage:
        return cls(
            message_id=m.message_id,
            type=m.type,
            state=m.state,
            origin_country=m.origin_country,
            destination_country=m.destination_country,
            category=m.category,
            classification=m.classification,
            received_at=m.received_at,
            content_deleted=m.content_deleted_at is not None,
            content_deleted_at=m.content_deleted_at,
            content_deletion=m.content_deletion,
        )


class Hold(BaseModel):
    id: int
    reason: str
    set_by: str
    set_by_role: str
    scope: str
    set_at: datetime

    @classmethod
    def of(cls, h: HoldView) -> Hold:
        return cls(
            id=h.id,
            reason=h.reason,
            set_by=h.set_by,
            set_by_role=h.set_by_role,
            scope=h.scope,
            set_at=h.set_at,
        )


class Exchange(BaseModel):
    """An exchange's retention: whether and when it ended, when its content is due, its holds, its messages
    (those in your scope), each saying whether its content was deleted."""

    conversation_id: str
    ended: bool
    ended_at: datetime
    due_at: datetime | None
    held: bool
    holds: list[Hold]
    messages: list[RetentionMessage]

    @classmethod
    def of(cls, view: ExchangeView) -> Exchange:
        return cls(
            conversation_id=view.conversation_id,
            ended=view.ended,
            ended_at=view.ended_at,
            due_at=view.due_at,
            held=view.held,
            holds=[Hold.of(h) for h in view.holds],
            messages=[RetentionMessage.of(m) for m in view.messages],
        )


class QueueItem(BaseModel):
    conversation_id: str
    ended_at: datetime
    due_at: datetime
    held: bool
    countries: list[str]
    categories: list[str]
    messages: list[RetentionMessage]


class ReviewAnswer(BaseModel):
    review_id: int
    decision: str
    deleted_messages: int
    exchange: Exchange


@contextmanager
def _refusals_audited(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    conversation_id: str,
    attempt: str,
) -> Iterator[None]:
    """A refusal of the rules: roll back what the request did, record the refusal, commit it, answer it."""
    try:
        yield
    except (PolicyRefused, Conflict) as exc:
        session.rollback()
        service.record_refusal(
            session,
            settings,
            principal.user,
            conversation_id,
            attempt=attempt,
            error=exc,
            actor=principal.actor(request),
        )
        session.commit()
        raise


@router.get("/review-queue", response_model=list[QueueItem], operation_id="retention_review_queue")
def get_review_queue(
    principal: Reviewer,
    session: DbSession,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[QueueItem]:
    """Exchanges in your scope that ended ``retention_review_after_days`` (183) days ago or more, still hold
    content and were not reviewed since: longest ended first."""
    scope = RetentionScope.of(session, principal.user)
    return [
        QueueItem(
            conversation_id=e.conversation_id,
            ended_at=e.ended_at,
            due_at=e.due_at,
            held=e.held,
            countries=e.countries,
            categories=e.categories,
            messages=[RetentionMessage.of(m) for m in e.messages],
        )
        for e in review_queue(session, settings, scope, limit=limit, offset=offset)
    ]


@router.get("/{conversation_id}", response_model=Exchange, operation_id="get_retention")
def get_retention(
    conversation_id: str, principal: Reviewer, session: DbSession, settings: SettingsDep
) -> Exchange:
    """One exchange's retention (404 when none of its messages is in your scope)."""
    return Exchange.of(
        exchange(session, settings, RetentionScope.of(session, principal.user), conversation_id)
    )


@router.post(
    "/{conversation_id}/hold",
    status_code=201,
    response_model=Exchange,
    operation_id="set_legal_hold",
    responses={409: {}, 422: {}},
)
def post_hold(
    conversation_id: str,
    body: HoldBody,
    request: Request,
    principal: Reviewer,
    session: DbSession,
    settings: SettingsDep,
) -> Exchange:
    """Put the exchange under a legal hold (a reason is required: 422 and audited without one)."""
    with _refusals_audited(request, session, settings, principal, conversation_id, "hold"):
        service.set_hold(
            session,
            settings,
            principal.user,
            conversation_id,
            reason=body.reason,
            actor=principal.actor(request),
        )
    return get_retention(conversation_id, principal, session, settings)


@router.post(
    "/{conversation_id}/hold/release",
    response_model=Exchange,
    operation_id="release_legal_hold",
    responses={409: {}},
)
def post_release(
    conversation_id: str,
    body: ReleaseBody,
    request: Request,
    principal: Reviewer,
    session: DbSession,
    settings: SettingsDep,
) -> Exchange:
    """Release your legal holds on the exchange (409 when you have none on it)."""
    with _refusals_audited(request, session, settings, principal, conversation_id, "release"):
        service.release_holds(
            session,
            settings,
            principal.user,
            conversation_id,
            reason=body.reason,
            actor=principal.actor(request),
        )
    return get_retention(conversation_id, principal, session, settings)


@router.post(
    "/{conversation_id}/review",
    response_model=ReviewAnswer,
    operation_id="review_retention",
    responses={409: {}, 422: {}},
)
def post_review(
    conversation_id: str,
    body: ReviewBody,
    request: Request,
    principal: Reviewer,
    session: DbSession,
    settings: SettingsDep,
) -> ReviewAnswer:
    """Record the compliance review of an ended exchange: ``keep``, ``delete`` (now: 409 while a legal hold
    stands) or ``hold`` (reason required). 409 for an exchange that has not ended."""
    with _refusals_audited(request, session, settings, principal, conversation_id, f"review:{body.decision}"):
        done = service.review(
            session,
            settings,
            principal.user,
            conversation_id,
            decision=body.decision,
            reason=body.reason,
            actor=principal.actor(request),
        )
    return ReviewAnswer(
        review_id=done.review.id,
        decision=done.review.decision,
        deleted_messages=done.deleted.messages if done.deleted else 0,
        exchange=get_retention(conversation_id, principal, session, settings),
    )
