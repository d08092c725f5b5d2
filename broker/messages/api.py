"""Agency-facing message endpoints: submit (idempotent), read the status of one's own messages, resubmit a
message returned for clarification, and ask a provider for permission to pass H2 information on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.config import Settings
from broker.delivery.models import InboxItem
from broker.delivery.service import receipt_statement, receipts_for
from broker.deps import (
    AgencyChargedByRoute,
    CurrentAgency,
    DbSession,
    Keys,
    RawBody,
    SettingsDep,
    json_body,
    request_id,
)
from broker.directory.models import Agency
from broker.errors import InvalidInput, NotFound, NotPermitted, PolicyRefused, VerificationError
from broker.limits import enforce
from broker.messages import idempotency
from broker.messages.dissemination import as_wire, request_dissemination, requests_for
from broker.messages.group import GroupCommit, Replayed, Submission
from broker.messages.models import CustodyStep, Message
from broker.messages.service import admit_one, resubmit, store_one, submit, submit_batch
from broker.messages.states import AWAITING_CLARIFICATION, State
from broker.messages.timing import CreatedWindow
from schemas.api import (
    BatchItemResult,
    BatchReceipt,
    DisseminationRequest,
    DisseminationRequestBody,
    MessageStatus,
    Receipt,
    SubmitReceipt,
)
from schemas.envelope import Envelope

router = APIRouter(prefix="/v1/messages", tags=["messages"])

# The intake routes read the raw body (the signature is verified over the bytes received, and a schema
# error is answered per envelope), so their bodies are declared for the OpenAPI here.
ENVELOPE_SCHEMA = Envelope.model_json_schema()
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"envelopes": {"type": "array", "minItems": 1, "items": ENVELOPE_SCHEMA}},
    "required": ["envelopes"],
    "additionalProperties": False,
    "$defs": ENVELOPE_SCHEMA.get("$defs", {}),
}


def _window(request: Request) -> CreatedWindow:
    settings: Settings = request.app.state.settings
    return CreatedWindow.of(settings)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object (an envelope)")
    return data


def batch_limit(settings: Settings) -> int:
    """Envelopes per batch: the setting, but never more than the rate limit's burst (a batch costs one token
    per envelope, so a larger one could never pass)."""
    if settings.rate_limit_per_second > 0:
        return min(settings.max_batch_envelopes, settings.rate_limit_burst)
    return settings.max_batch_envelopes


def _parse_batch(body: bytes, *, limit: int) -> list[Any]:
    data = _parse(body)
    envelopes = data.get("envelopes")
    if set(data) != {"envelopes"} or not isinstance(envelopes, list):
        raise InvalidInput('a batch is an object with one member, "envelopes": a list of envelopes')
    if not 1 <= len(envelopes) <= limit:
        raise InvalidInput(f"a batch carries 1 to {limit} envelopes, not {len(envelopes)}")
    return envelopes


def _status(session: Session, message: Message, receipts: Sequence[InboxItem] = ()) -> MessageStatus:
    superseded_by = session.scalar(select(Message.id).where(Message.supersedes == message.id).limit(1))
    return MessageStatus(
        message_id=message.id,
        conversation_id=message.conversation_id,
        type=message.type,
        state=message.state,
        origin_country=message.origin_country,
        destination_country=message.destination_country,
        destination_agency=message.destination_agency,
        classification=message.classification,
        category=message.category,
        priority_level=message.priority_level,
        deadline_at=message.deadline_at,
        updated_at=message.updated_at,
        receipts=tuple(
            _receipt_of(r.agency_id, r.acked_at, r.receipt)
            for r in receipts
            if r.acked_at is not None and r.receipt is not None
        ),
        deadline_paused=message.paused_at is not None,
        clarification_request=_clarification_request(session, message),
        refusal_ground=_refusal_ground(session, message),
        supersedes=message.supersedes,
        superseded_by=superseded_by,
        content_deleted=message.content_deleted_at is not None,
        content_deleted_at=message.content_deleted_at,
    )


def _receipt_of(agency_id: str, acked_at: datetime, token: str) -> Receipt:
    """A stored receipt as its sender sees it, with the statement's time and digest spelled out (a receipt
    taken before the broker checked ``received_at`` may lack a usable one: then they are ``null``)."""
    fields = {"agency": agency_id, "acknowledged_at": acked_at, "receipt": token}
    statement = receipt_statement(token)
    try:
        return Receipt.model_validate(
            {**fields, "received_at": statement.get("received_at"), "digest": statement.get("digest")}
        )
    except ValidationError:
        return Receipt.model_validate(fields)


def _refusal_ground(session: Session, message: Message) -> str | None:
    """The Art. 6 ground the requested contact point refused the message on, if it refused it (on this node or,
    told by its signed event, on the other)."""
    if message.state != State.REFUSED:
        return None
    return session.scalar(
        select(CustodyStep.refusal_ground)
        .where(CustodyStep.message_id == message.id, CustodyStep.decision == "refused")
        .order_by(CustodyStep.seq.desc())
        .limit(1)
    )


def _clarification_request(session: Session, message: Message) -> str | None:
    """What a contact point asked the sender to clarify (the reason of the return), if it was returned."""
    if message.state not in AWAITING_CLARIFICATION and message.state != State.SUPERSEDED:
        return None
    return session.scalar(
        select(CustodyStep.reason)
        .where(
            CustodyStep.message_id == message.id,
            CustodyStep.decision.in_(("returned", "clarification-requested")),
        )
        .order_by(CustodyStep.seq.desc())
        .limit(1)
    )


@router.post(
    "",
    status_code=202,
    response_model=SubmitReceipt,
    operation_id="submit_message",
    responses={400: {}, 401: {}, 403: {}, 409: {}, 413: {}, 422: {}},
    openapi_extra=json_body(ENVELOPE_SCHEMA, "A signed, encrypted envelope (docs/envelope.md)."),
)
def submit_message(
    request: Request,
    session: DbSession,
    keys: Keys,
    agency: CurrentAgency,
    body: RawBody,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Submit a signed, encrypted envelope. Send an ``Idempotency-Key`` to retry safely."""
    group: GroupCommit | None = request.app.state.group_commit
    if group is not None:
        return _grouped(request, session, keys, agency, body, idempotency_key, group)

    def accept(raw: dict[str, Any], actor: Actor) -> Message:
        return submit(session, keys, agency=agency, raw=raw, actor=actor, window=_window(request))

    return _intake(request, session, agency, body, idempotency_key, accept)


def _grouped(
    request: Request,
    session: Session,
    keys: Keys,
    agency: Agency,
    body: bytes,
    idempotency_key: str | None,
    group: GroupCommit,
) -> Any:
    """A single submission in a group commit (``broker.messages.group``): the same checks and answers as
    :func:`_intake`, the checks here (read-only), the writing in this process's shared transaction; answered
    once that has committed."""
    raw = _parse(body)
    if idempotency_key is not None:  # a key answered before: its answer at once (the writer looks again)
        idempotency.check_key(idempotency_key)
        seen = idempotency.replay(session, agency_id=agency.id, key=idempotency_key, body=body, lock=False)
        if seen is not None:
            return JSONResponse(status_code=seen[0], content=seen[1], headers={"Idempotent-Replayed": "true"})
    actor = Actor(agency.id, "agency", request_id(request))
    try:
        admitted = admit_one(session, keys, agency=agency, raw=raw, window=_window(request))
    except (PolicyRefused, VerificationError, NotPermitted) as exc:
        session.rollback()  # nothing of the refused message may stay, but the refusal is audited
        _audit_refusal(session, agency, actor, raw, exc)
        session.commit()
        raise
    if admitted.original is not None:  # an answer changes the message it answers, loaded here: written here
        replayed = _replayed(session, agency, idempotency_key, body)
        if replayed is not None:
            return replayed
        receipt = _receipt(store_one(session, admitted, actor=actor))
        _remember(session, agency, idempotency_key, body, 202, receipt)
        return receipt
    # Only reads so far: end them, so that no request waiting for the writer holds a pooled connection the
    # writer needs (a full pool would otherwise wait on itself).
    session.commit()
    outcome = group.submit(Submission(agency.id, idempotency_key, body, admitted, actor))
    if isinstance(outcome, BaseException):
        raise outcome
    if isinstance(outcome, Replayed):
        return JSONResponse(
            status_code=outcome.status, content=outcome.response, headers={"Idempotent-Replayed": "true"}
        )
    return outcome


@router.post(
    "/batches",
    response_model=BatchReceipt,
    operation_id="submit_message_batch",
    responses={400: {}, 401: {}, 403: {}, 409: {}, 413: {}, 429: {}},
    openapi_extra=json_body(BATCH_SCHEMA, "Envelopes to submit, each checked on its own."),
)
def submit_message_batch(
    request: Request,
    session: DbSession,
    keys: Keys,
    agency: AgencyChargedByRoute,
    body: RawBody,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Submit up to ``max_batch_envelopes`` envelopes in one signed request: ``{"envelopes": [...]}``.

        Each envelope gets the checks of a single submission and is accepted or refused on its own; the answer
        lists, in order, a receipt or the problem each would have got alone. Accepted envelopes and the audit
        entries of refused ones are kept in one transaction: either the whole answer holds or, on an error of
        the exchange itself, nothing was kept and the batch can be sent again (with its ``Idempotency-Key``,
        the retry gets the first answer). Each envelope costs one token of the agency's rate limit, so a batch
    is at most the limit's burst. (Two batches racing with one message id: the loser's flush fails and the
    whole batch is answered 409 with nothing kept; sent again, the repeat is named in its slot.)"""
    raws = _parse_batch(body, limit=batch_limit(settings))
    replayed = _replayed(session, agency, idempotency_key, body)
    if replayed is not None:
        return replayed
    enforce(request.app.state.limiter, agency.id, cost=len(raws))  # one token per envelope, before any work
    actor = Actor(agency.id, "agency", request_id(request))
    window = CreatedWindow.of(settings)
    results: list[BatchItemResult] = []
    for index, (raw, outcome) in enumerate(
        zip(
            raws,
            submit_batch(session, keys, agency=agency, raws=raws, actor=actor, window=window),
            strict=True,
        )
    ):
        if isinstance(outcome, Message):
            results.append(BatchItemResult(index=index, status=202, receipt=_receipt(outcome)))
            continue
        if isinstance(outcome, (PolicyRefused, VerificationError, NotPermitted)):
            _audit_refusal(session, agency, actor, raw if isinstance(raw, dict) else {}, outcome)
        results.append(BatchItemResult(index=index, status=outcome.status, problem=outcome.problem()))
    accepted = sum(1 for r in results if r.receipt is not None)
    receipt = BatchReceipt(accepted=accepted, refused=len(results) - accepted, results=results)
    _remember(session, agency, idempotency_key, body, 200, receipt)
    return receipt


def _replayed(session: Session, agency: Agency, key: str | None, body: bytes) -> JSONResponse | None:
    """The first answer to this ``Idempotency-Key`` and body, if there was one (409 for another body)."""
    if key is None:
        return None
    replayed = idempotency.replay(session, agency_id=agency.id, key=key, body=body)
    if replayed is None:
        return None
    return JSONResponse(status_code=replayed[0], content=replayed[1], headers={"Idempotent-Replayed": "true"})


def _remember(
    session: Session, agency: Agency, key: str | None, body: bytes, status: int, answer: BaseModel
) -> None:
    """Keep ``answer`` for a repeat of this ``Idempotency-Key``, in the same transaction as its effect."""
    if key is not None:
        idempotency.remember(
            session,
            agency_id=agency.id,
            key=key,
            body=body,
            status=status,
            response=answer.model_dump(mode="json"),
        )


def _receipt(message: Message) -> SubmitReceipt:
    return SubmitReceipt(
        message_id=message.id,
        state=message.state,
        deadline_at=message.deadline_at,
        received_at=message.received_at,
    )


@router.post(
    "/{message_id}/resubmissions",
    status_code=202,
    response_model=SubmitReceipt,
    operation_id="resubmit_message",
    responses={400: {}, 401: {}, 403: {}, 404: {}, 409: {}, 413: {}, 422: {}},
    openapi_extra=json_body(ENVELOPE_SCHEMA, "The amended envelope: a new message id, same conversation."),
)
def resubmit_message(
    message_id: str,
    request: Request,
    session: DbSession,
    keys: Keys,
    agency: CurrentAgency,
    body: RawBody,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Resubmit, amended, a message a contact point returned for clarification (its status says what to
    clarify). The body is a new envelope — new ``message_id``, same ``conversation_id``, destination country,
    type and ``in_reply_to`` — that goes through review again; the returned message becomes ``superseded``
    and the deadline runs on from where it stopped."""

    def accept(raw: dict[str, Any], actor: Actor) -> Message:
        return resubmit(
            session,
            keys,
            agency=agency,
            original_id=message_id,
            raw=raw,
            actor=actor,
            window=_window(request),
        )

    return _intake(request, session, agency, body, idempotency_key, accept)


def _intake(
    request: Request,
    session: Session,
    agency: Agency,
    body: bytes,
    idempotency_key: str | None,
    accept: Callable[[dict[str, Any], Actor], Message],
) -> Any:
    raw = _parse(body)
    replayed = _replayed(session, agency, idempotency_key, body)
    if replayed is not None:
        return replayed
    actor = Actor(agency.id, "agency", request_id(request))
    try:
        message = accept(raw, actor)
    except (PolicyRefused, VerificationError, NotPermitted) as exc:
        # Nothing of the refused message may stay, but the refusal itself is audited: roll back, record, commit.
        session.rollback()
        _audit_refusal(session, agency, actor, raw, exc)
        session.commit()
        raise
    receipt = _receipt(message)
    _remember(session, agency, idempotency_key, body, 202, receipt)
    return receipt


def _visible_to(session: Session, agency: Agency, message: Message) -> bool:
    """The sender sees its message; the addressed agency only once it was delivered to it."""
    return agency.id == message.sender_agency or _delivered_to(session, agency, message)


def _delivered_to(session: Session, agency: Agency, message: Message) -> bool:
    delivered = session.scalar(
        select(InboxItem.id).where(InboxItem.agency_id == agency.id, InboxItem.message_id == message.id)
    )
    return agency.id == message.destination_agency and delivered is not None


def _require_delivered(session: Session, agency: Agency, message_id: str) -> None:
    """NotFound unless the message was delivered to ``agency``: also while it is still on its way to it
    (addressed, not delivered), neither its existence nor its handling codes are the agency's to learn."""
    message = session.get(Message, message_id)
    if message is None or not _delivered_to(session, agency, message):
        raise NotFound(f"no message {message_id} delivered to {agency.id}")


def _audit_refusal(
    session: Session, agency: Agency, actor: Actor, raw: dict[str, Any], exc: Exception
) -> None:
    """A refused submission leaves no message, but it does leave an audit entry, filed under the agency that
    signed the request (its id and country). The header was refused, so what it names (message id, sender,
    countries) is only what the agency claimed: kept in ``details.claimed``, never as the entry's object or
    countries, so nobody can plant an entry in another country's log or another message's timeline."""
    header = raw.get("header") if isinstance(raw.get("header"), dict) else {}
    assert isinstance(header, dict)  # noqa: S101 - narrowed above
    claimed = {
        name: str(header[name])[:64]
        for name in (
            "message_id",
            "sender_agency",
            "origin_country",
            "destination_country",
            "destination_agency",
        )
        if isinstance(header.get(name), str)
    }
    record(
        session,
        actor=actor,
        action=AuditAction.MESSAGE_REFUSED_AT_INTAKE,
        object_type="agency",
        object_id=agency.id,
        countries=[agency.country],
        outcome="refused",
        details={
            "error": type(exc).__name__,
            "reason": getattr(exc, "extra", {}).get("reason"),
            "claimed": claimed,
        },
    )


@router.get("/{message_id}", response_model=MessageStatus, operation_id="get_message_status")
def get_message_status(message_id: str, session: DbSession, agency: CurrentAgency) -> MessageStatus:
    """The status of a message this agency sent (or that was delivered to it)."""
    message = session.get(Message, message_id)
    if message is None or not _visible_to(session, agency, message):
        raise NotFound(f"no message {message_id}")
    return _status(
        session, message, receipts_for(session, message.id) if agency.id == message.sender_agency else ()
    )


@router.post(
    "/{message_id}/dissemination-requests",
    status_code=201,
    response_model=DisseminationRequest,
    operation_id="request_dissemination",
    responses={400: {}, 401: {}, 404: {}},
)
def post_dissemination_request(
    message_id: str,
    body: DisseminationRequestBody,
    request: Request,
    session: DbSession,
    keys: Keys,
    agency: CurrentAgency,
) -> DisseminationRequest:
    """Ask the provider of an H2 message delivered to this agency for permission to pass it on. Until it is
    granted, a message that passes it on (``in_reply_to`` naming it) is held in outbound review."""
    _require_delivered(session, agency, message_id)
    row = request_dissemination(
        session,
        keys=keys,
        agency_id=agency.id,
        message_id=message_id,
        body=body,
        actor=Actor(agency.id, "agency", request_id(request)),
    )
    return as_wire(row)


@router.get(
    "/{message_id}/dissemination-requests",
    response_model=list[DisseminationRequest],
    operation_id="list_dissemination_requests",
)
def list_dissemination_requests(
    message_id: str, session: DbSession, agency: CurrentAgency
) -> list[DisseminationRequest]:
    """This agency's requests for onward dissemination of a message, with the provider's answers."""
    _require_delivered(session, agency, message_id)
    return [as_wire(r) for r in requests_for(session, message_id, agency_id=agency.id)]
