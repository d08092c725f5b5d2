"""Delivery over HTTP: the agency's pull inbox (leases, acknowledgements, its push endpoint) and the
destination officers' view of push deliveries (dead letters: retry, re-route)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from broker.audit.service import Actor
from broker.config import Settings
from broker.delivery import deadletters
from broker.delivery.egress import EgressPolicy
from broker.delivery.models import Channel, InboxItem
from broker.delivery.service import (
    ReceiptWindow,
    acknowledge,
    custody_by_message,
    inbox_document,
    lease,
    peek,
)
from broker.deps import CurrentAgency, DbSession, Keys, Officer, RawBody, SettingsDep, request_id
from broker.messages import idempotency
from broker.messages.models import Message
from broker.params import Int64
from schemas.api import AckRequest
from schemas.api import InboxItem as InboxItemOut
from schemas.primitives import AgencyId, Timestamp, WireUUID

router = APIRouter(prefix="/v1/inbox", tags=["inbox"])
deliveries_router = APIRouter(prefix="/v1/cp/deliveries", tags=["contact point"])

_STRICT = ConfigDict(extra="forbid", frozen=True)
MAX_PAGE = 500


class LeasedInboxItem(InboxItemOut):
    """An inbox item; ``leased_until`` is when it comes back to other readers if not acknowledged."""

    leased_until: Timestamp | None = None


class PushEndpoint(BaseModel):
    """The agency's HTTPS endpoint for push delivery; ``null`` to receive by pulling the inbox only."""

    model_config = _STRICT

    url: Annotated[str, StringConstraints(min_length=8, max_length=500)] | None = None


class Delivery(BaseModel):
    """A push delivery as the destination contact point's officers see it (metadata only)."""

    model_config = _STRICT

    message_id: WireUUID
    agency: AgencyId
    channel: Literal["push", "pull"]
    status: Literal["pending", "delivered", "dead", "superseded"]
    attempts: int
    last_error: str | None
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    classification: str
    category: str
    origin_country: str
    message_state: str


class RerouteRequest(BaseModel):
    """Where to deliver a dead letter instead: another agency of the country and/or its pull inbox."""

    model_config = _STRICT

    to_agency: AgencyId | None = None
    channel: Literal["push", "pull"] | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


# --- agencies --------------------------------------------------------------------------------------


@router.get("", response_model=list[LeasedInboxItem], operation_id="list_inbox")
def list_inbox(
    session: DbSession,
    agency: CurrentAgency,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[Int64, Query(ge=0, description="cursor: from the `next` link of the previous page")] = 0,
    visibility_timeout: Annotated[
        int | None,
        Query(ge=0, le=3600, description="seconds the items stay leased to you; 0 looks without leasing"),
    ] = None,
) -> Response:
    """Lease unacknowledged messages, oldest first, each with its chain of custody.

    Leased items are hidden from other readers for ``visibility_timeout`` seconds (default: the
    server's ``inbox_visibility_seconds``); acknowledge each one, or it comes back after that. The
    envelope is returned exactly as the sender signed it (plus the readers a contact point added),
    never re-serialised, so the originator's signature verifies byte for byte after canonicalisation.
    De-duplicate by ``message_id``: a message leased twice (a reader crashed) is the same message.
    """
    seconds = settings.inbox_visibility_seconds if visibility_timeout is None else visibility_timeout
    if seconds == 0:
        rows = peek(session, agency, limit=limit, after=after)
    else:
        rows = lease(session, agency, limit=limit, visibility_seconds=seconds, after=after)
    custody = custody_by_message(session, (m.id for _, m in rows))
    out = [_leased(item, message, custody.get(message.id, []), seconds) for item, message in rows]
    headers = {}
    if len(rows) == limit:
        params = f"limit={limit}&after={rows[-1][0].id}"
        if visibility_timeout is not None:
            params += f"&visibility_timeout={visibility_timeout}"
        headers["Link"] = f'</v1/inbox?{params}>; rel="next"'
    return Response(orjson.dumps(out), media_type="application/json", headers=headers)


def _leased(item: InboxItem, message: Message, custody: list[Any], seconds: int) -> dict[str, Any]:
    document = inbox_document(item, message, custody)
    until: datetime | None = item.leased_until if seconds else None
    document["leased_until"] = until.isoformat() if until else None
    return document


@router.post(
    "/{message_id}/ack",
    status_code=204,
    operation_id="acknowledge_message",
    responses={400: {}, 401: {}, 404: {}, 409: {}, 422: {}, 429: {}},
)
def acknowledge_message(
    message_id: str,
    body: AckRequest,
    raw: RawBody,
    request: Request,
    session: DbSession,
    keys: Keys,
    agency: CurrentAgency,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Acknowledge receipt with a signed receipt; the message leaves the inbox for good.

    Acknowledging twice is harmless. With an ``Idempotency-Key`` the same key and body give the same
    answer and the same key with another body is refused (409).
    """
    if idempotency_key is not None:
        replayed = idempotency.replay(
            session,
            agency_id=agency.id,
            key=idempotency_key,
            body=raw,
            ttl_seconds=settings.idempotency_ttl_seconds,
        )
        if replayed is not None:
            return Response(status_code=replayed[0], headers={"Idempotent-Replayed": "true"})
    acknowledge(
        session,
        keys,
        agency,
        message_id,
        receipt=body.receipt,
        actor=Actor(agency.id, "agency", request_id(request)),
        window=ReceiptWindow.of(settings),
    )
    if idempotency_key is not None:
        idempotency.remember(
            session, agency_id=agency.id, key=idempotency_key, body=raw, status=204, response={}
        )
    return Response(status_code=204)


@router.get("/push-endpoint", response_model=PushEndpoint, operation_id="get_push_endpoint")
def get_push_endpoint(agency: CurrentAgency) -> PushEndpoint:
    """Where the broker pushes this agency's messages (``null``: pull only)."""
    return PushEndpoint(url=agency.push_url)


@router.put("/push-endpoint", response_model=PushEndpoint, operation_id="set_push_endpoint")
def set_push_endpoint(
    body: PushEndpoint, session: DbSession, agency: CurrentAgency, settings: SettingsDep
) -> PushEndpoint:
    """Register (or with ``null`` remove) the HTTPS endpoint the broker pushes deliveries to.

    Each push is a POST of the same JSON as an inbox item, signed by the contact point of the agency's
    country (RFC 9421); answer 2xx with ``{"receipt": <your signed receipt>}``. Pushes are retried with
    backoff and, after the last attempt, handed to the contact point's officers.
    """
    if body.url is not None:
        check_push_url(body.url, settings)
    agency.push_url = body.url
    session.flush()
    return PushEndpoint(url=agency.push_url)


def check_push_url(url: str, settings: Settings) -> None:
    """https, a host without credentials, and no address in the node's own networks (see ``egress``);
    checked again at every push, after resolving, because DNS can change."""
    EgressPolicy(settings.push_allowed_networks).check_url(url)


# --- the destination officers ---------------------------------------------------------------------


def _delivery(item: InboxItem, message: Message) -> Delivery:
    return Delivery.model_validate(
        {
            "message_id": message.id,
            "agency": item.agency_id,
            "channel": item.channel,
            "status": item.status,
            "attempts": item.attempts,
            "last_error": item.last_error,
            "last_attempt_at": item.last_attempt_at,
            "next_attempt_at": item.next_attempt_at,
            "classification": message.classification,
            "category": message.category,
            "origin_country": message.origin_country,
            "message_state": message.state,
        }
    )


@deliveries_router.get("", response_model=list[Delivery], operation_id="list_deliveries")
def list_deliveries(
    officer: Officer,
    session: DbSession,
    status: deadletters.ListedStatus = "dead",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[Delivery]:
    """Push deliveries to this contact point's agencies: dead letters (newest first) or still retrying."""
    rows = deadletters.deliveries(session, officer.user, status=status, limit=limit, offset=offset)
    return [_delivery(item, message) for item, message in rows]


@deliveries_router.post(
    "/{message_id}/retry",
    response_model=Delivery,
    operation_id="retry_delivery",
    responses={404: {}, 409: {}},
)
def retry_delivery(message_id: str, request: Request, officer: Officer, session: DbSession) -> Delivery:
    """Deliver a dead letter again from attempt 1 (to the pull inbox if the agency has no endpoint now)."""
    item = deadletters.retry(session, officer.user, message_id, actor=officer.actor(request))
    message = session.get(Message, item.message_id)
    assert message is not None  # noqa: S101 - the service just read it
    return _delivery(item, message)


@deliveries_router.post(
    "/{message_id}/reroute",
    response_model=Delivery,
    operation_id="reroute_delivery",
    responses={400: {}, 404: {}, 409: {}, 422: {}},
)
def reroute_delivery(
    message_id: str, body: RerouteRequest, request: Request, officer: Officer, session: DbSession, keys: Keys
) -> Delivery:
    """Deliver a dead letter to another agency of the country, or to the pull inbox, instead."""
    item = deadletters.reroute(
        session,
        keys,
        officer.user,
        message_id,
        to_agency=body.to_agency,
        channel=Channel(body.channel) if body.channel else None,
        reason=body.reason,
        actor=officer.actor(request),
    )
    message = session.get(Message, item.message_id)
    assert message is not None  # noqa: S101 - the service just read it
    return _delivery(item, message)
