"""Officers' queues, messages and decisions over the API (the web UI calls the same services)."""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from broker.accounts.models import User
from broker.app import audit_denial
from broker.audit.service import Actor
from broker.crosscheck.service import basis_text, links_for
from broker.deps import DbSession, Keys
from broker.errors import Conflict, NotFound, SpocError
from broker.keys.service import DatabaseKeyStore
from broker.messages.clock import deadline_events
from broker.messages.dissemination import as_wire, pending_for_contact_point, requests_for
from broker.messages.models import Message
from broker.params import Int64
from contact_points.deps import CpOfficer
from contact_points.review import notifications
from contact_points.review.content import acknowledge_conditions
from contact_points.review.own_initiative import provide
from contact_points.review.pages import decide_page, lock_page
from contact_points.review.present import summaries, summary, usernames
from contact_points.review.queues import QueueFilter, counts
from contact_points.review.service import (
    allowed_actions,
    decide,
    message_in_scope,
    officer_contact_point,
    queue,
    read_content,
)
from contact_points.review.timeline import conversation, hops
from schemas.api import (
    Decision,
    DecisionBatch,
    DecisionBatchAnswer,
    DecisionOutcome,
    DisseminationRequest,
    OwnInitiativeProvision,
)

log = logging.getLogger("spoc.review")

router = APIRouter(prefix="/v1/cp", tags=["contact point"])

Direction = Literal["outbound", "inbound"]
Filter = Annotated[str | None, Query(max_length=40)]

__all__ = ["router", "summary"]


def _filters(
    status: Filter = None,
    priority: Filter = None,
    country: Filter = None,
    category: Filter = None,
    classification: Filter = None,
    assigned: Filter = None,
) -> QueueFilter:
    return QueueFilter(status, priority, country, category, classification, assigned)


@router.get("/queues/{direction}", operation_id="list_queue")
def list_queue(
    direction: Direction,
    officer: CpOfficer,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
    status: Filter = None,
    priority: Filter = None,
    country: Filter = None,
    category: Filter = None,
    classification: Filter = None,
    assigned: Filter = None,
) -> list[dict[str, Any]]:
    """The officer's contact point's queue, most urgent deadline first.

    By default what awaits review; ``status`` (a state, or ``all``), ``priority``, ``country`` (the other
    country), ``category``, ``classification`` and ``assigned`` (``me``, ``unassigned``) narrow it.
    """
    filters = _filters(status, priority, country, category, classification, assigned)
    return summaries(
        session, queue(session, officer.user, direction, limit=limit, offset=offset, filters=filters)
    )


@router.get("/queues/{direction}/counts", operation_id="count_queue")
def count_queue(
    direction: Direction,
    officer: CpOfficer,
    session: DbSession,
    status: Filter = None,
    priority: Filter = None,
    country: Filter = None,
    category: Filter = None,
    classification: Filter = None,
    assigned: Filter = None,
) -> dict[str, Any]:
    """How many messages per state, awaiting review, urgent, overdue, and matching the filters."""
    filters = _filters(status, priority, country, category, classification, assigned)
    c = counts(session, officer.user, direction, filters=filters)
    return {
        "by_state": c.by_state,
        "awaiting": c.awaiting,
        "urgent": c.urgent,
        "overdue": c.overdue,
        "matching": c.matching,
    }


def detail(
    session: Session, keys: DatabaseKeyStore, user: User, message: Message, direction: Direction
) -> dict[str, Any]:
    names = usernames(session, [message.assigned_to])
    return {
        **summary(message, names=names),
        "direction": direction,
        "custody": [
            {
                "seq": h.seq,
                "party": h.party,
                "actor": h.actor,
                "decision": h.decision,
                "at": h.at.isoformat(),
                "reason": h.reason,
                "refusal_ground": h.refusal_ground,
                "signature": h.signature,
                "signature_detail": h.detail,
            }
            for h in hops(session, keys, message)
        ],
        "deadline_events": [
            {
                "kind": e.kind,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "reason": e.reason,
                "reason_code": e.reason_code,
                "deadline_at": e.deadline_at.isoformat() if e.deadline_at else None,
                "seconds": e.seconds,
            }
            for e in deadline_events(session, message.id)
        ],
        "conversation": [
            {"message_id": m.id, "type": m.type, "state": m.state, "supersedes": m.supersedes}
            for m in conversation(session, message, officer_contact_point(session, user))
        ],
        "dissemination_requests": [
            as_wire(r).model_dump(mode="json") for r in requests_for(session, message.id)
        ]
        if direction == "outbound"
        else [],
        "allowed_actions": allowed_actions(session, user, message, direction, keys=keys),
    }


@router.get("/messages/{message_id}", operation_id="get_cp_message")
def get_cp_message(message_id: str, officer: CpOfficer, session: DbSession, keys: Keys) -> dict[str, Any]:
    """Metadata, chain of custody (signatures checked), deadline history and the decisions open to you."""
    message, _, direction = message_in_scope(session, officer.user, message_id)
    return detail(session, keys, officer.user, message, direction)


@router.get("/messages/{message_id}/links", operation_id="list_cp_message_links")
def list_cp_message_links(message_id: str, officer: CpOfficer, session: DbSession) -> dict[str, Any]:
    """The case file's cross-check links of a message in your queues (metadata only, newest first).

    Each item names the other message, why the two are linked (``basis``: kinds of selector matched, never
    their values), whether the other was held first, and when the link was made. A linked message outside your
    queues is left out, not even its existence shown. Its content is read, within your clearance and audited,
    at ``content_url``."""
    _, cp, _ = message_in_scope(session, officer.user, message_id)
    links = []
    for link in links_for(session, cp.id, message_id):
        try:
            other, _, _ = message_in_scope(session, officer.user, link.other_id)
        except NotFound:
            continue
        links.append(
            {
                "message": summary(other),
                "basis": link.basis,
                "basis_text": basis_text(link.basis),
                "earlier": link.earlier,
                "linked_at": link.created_at.isoformat(),
                "content_url": f"/v1/cp/messages/{other.id}/content",
            }
        )
    return {"message_id": message_id, "links": links}


@router.get("/messages/{message_id}/content", operation_id="read_cp_message_content")
def read_cp_message_content(
    message_id: str, request: Request, officer: CpOfficer, session: DbSession, keys: Keys
) -> dict[str, Any]:
    """The decrypted payload, for an officer cleared for its classification; audited either way.

    For an H3 message not yet acknowledged by you: the provider's ``conditions`` and
    ``acknowledgement_required``, no payload (acknowledge at ``.../conditions/acknowledgement``)."""
    content = read_content(session, keys, officer.user, message_id, actor=officer.actor(request))
    return {
        "readable": content.readable,
        "notice": content.notice,
        "conditions": content.conditions,
        "acknowledgement_required": content.acknowledgement_required,
        "content_deleted": content.deleted_at is not None,
        "content_deleted_at": content.deleted_at.isoformat() if content.deleted_at else None,
        "payload_b64": base64.b64encode(content.plaintext).decode()
        if content.plaintext is not None
        else None,
    }


@router.post(
    "/messages/{message_id}/conditions/acknowledgement",
    status_code=204,
    operation_id="acknowledge_conditions",
)
def post_conditions_acknowledgement(
    message_id: str, request: Request, officer: CpOfficer, session: DbSession
) -> Response:
    """Acknowledge the provider's H3 conditions (recorded and audited); then the content can be read."""
    acknowledge_conditions(session, officer.user, message_id, actor=officer.actor(request))
    return Response(status_code=204)


@router.post("/messages/{message_id}/decisions", operation_id="decide_message")
def decide_message(
    message_id: str, body: Decision, request: Request, officer: CpOfficer, session: DbSession, keys: Keys
) -> dict[str, Any]:
    """Take a decision: approve, reject, return (outbound); accept, route, refuse, return (inbound);
    extend, assign (both); grant, deny (a request for onward dissemination of H2 information)."""
    message = decide(session, keys, officer.user, message_id, body, actor=officer.actor(request))
    return summary(message, names=usernames(session, [message.assigned_to]))


@router.post("/decisions", response_model=DecisionBatchAnswer, operation_id="decide_messages")
def decide_messages(
    body: DecisionBatch, request: Request, officer: CpOfficer, session: DbSession, keys: Keys
) -> DecisionBatchAnswer:
    """Take up to 100 decisions in one call (a page of routine requests to approve or route). Each is taken
    exactly as ``POST /v1/cp/messages/{id}/decisions`` would take it, in its own savepoint: one that fails
    (not in scope, already decided, four eyes) is undone alone and answered with its problem, in order."""
    actor = officer.actor(request)
    # The messages of the call are locked first, all at once and in id order: decide() locks each one it
    # decides until the commit, so two officers sending overlapping pages in different orders would
    # otherwise deadlock. Only messages of the officer's country are locked (nobody else's can be decided
    # here). They are also held for the call (the identity map alone holds them weakly), so each decision
    # finds its message and the contact point without a query; decide() still re-reads each under its lock.
    cp = officer_contact_point(session, officer.user)
    ids = sorted({str(d.message_id) for d in body.decisions})
    held = [cp, *lock_page(session, cp, ids)]
    results: list[DecisionOutcome] = []
    page = _as_a_page(session, keys, officer.user, body, actor)
    for index, item in enumerate(body.decisions):
        message_id = str(item.message_id)
        try:
            if page is not None:
                outcome = page[index]
                if isinstance(outcome, SpocError):
                    raise outcome
                message = outcome
            else:
                with session.begin_nested():
                    message = decide(session, keys, officer.user, message_id, item.decision, actor=actor)
        except StaleDataError:  # another officer decided on it in the meantime
            exc = Conflict("the message changed while you decided; reload and try again")
            results.append(
                DecisionOutcome(index=index, message_id=message_id, status=exc.status, problem=exc.problem())
            )
            continue
        except SpocError as exc:
            audit_denial(request, exc, params={"message_id": message_id}, session=session)
            results.append(
                DecisionOutcome(index=index, message_id=message_id, status=exc.status, problem=exc.problem())
            )
            continue
        results.append(DecisionOutcome(index=index, message_id=message_id, status=200, state=message.state))
    decided = sum(1 for r in results if r.status == 200)
    del held  # released only now: the last decision has found its rows
    return DecisionBatchAnswer(decided=decided, failed=len(results) - decided, results=results)


def _as_a_page(
    session: Session, keys: DatabaseKeyStore, user: User, body: DecisionBatch, actor: Actor
) -> list[Message | SpocError] | None:
    """The page's outcomes, decided set-based (``contact_points.review.pages``), or None: not a page of
    approvals and routings, or its writing failed (a message changed meanwhile), in which case nothing of it
    was kept and each decision is taken alone."""
    items = [(str(d.message_id), d.decision) for d in body.decisions]
    try:
        with session.begin_nested():
            return decide_page(session, keys, user, items, actor=actor)
    except Exception as exc:
        log.info("decisions: a page of %d taken one by one (%s)", len(items), type(exc).__name__)
        session.expire_all()  # objects brought in line inside the savepoint are read again
        return None


@router.post("/provisions", status_code=201, operation_id="provide_information")
def provide_information(
    body: OwnInitiativeProvision, request: Request, officer: CpOfficer, session: DbSession, keys: Keys
) -> dict[str, Any]:
    """Own-initiative provision (Art. 7): the contact point sends information nobody asked for. It goes
    through outbound review; another officer approves it."""
    message = provide(
        session,
        keys,
        officer.user,
        destination_country=body.destination_country,
        destination_agency=body.destination_agency,
        category=body.category,
        classification=body.classification,
        handling_codes=body.handling_codes,
        information=body.information,
        conditions=body.conditions,
        source_reliability=body.evaluation.source_reliability,
        information_accuracy=body.evaluation.information_accuracy,
        actor=officer.actor(request),
    )
    return summary(message)


@router.get("/dissemination-requests", operation_id="list_pending_dissemination_requests")
def list_pending_dissemination(
    officer: CpOfficer,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[DisseminationRequest]:
    """Requests to pass on H2 information your country provided, waiting for your grant or denial."""
    cp = officer_contact_point(session, officer.user)
    return [as_wire(r) for r in pending_for_contact_point(session, cp, limit=limit, offset=offset)]


@router.get("/notifications", operation_id="list_notifications")
def list_notifications(
    officer: CpOfficer,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[dict[str, Any]]:
    """Open notifications: deadline warnings (breaches, for supervisors), H2 requests, assignments."""
    return [
        {
            "id": n.id,
            "kind": n.kind,
            "text": n.text,
            "message_id": n.message_id,
            "audience": n.audience,
            "created_at": n.created_at.isoformat(),
        }
        for n in notifications.for_user(session, officer.user, limit=limit, offset=offset)
    ]


@router.post(
    "/notifications/{notification_id}/dismissal", status_code=204, operation_id="dismiss_notification"
)
def dismiss_notification(
    notification_id: Int64, request: Request, officer: CpOfficer, session: DbSession
) -> Response:
    notifications.dismiss(session, officer.user, notification_id, actor=officer.actor(request))
    return Response(status_code=204)
