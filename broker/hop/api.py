"""``POST /v1/hop/messages`` and ``POST /v1/hop/events``: where a peer node hands over a message
(DESIGN §8, ``broker.hop.service``) or an event about one (``broker.hop.event_intake``);
``POST /v1/hop/messages/batches``: many messages in one signed request, each answered as if it came alone.

The caller is a node, not an agency or a person: it is authenticated by its RFC 9421 transport signature
(label ``spoc-node``) under a key the current regional directory lists for it, and nothing else. The nonce is
committed before anything else happens, so a hop refused for any reason cannot be replayed. A refusal names its
reason (problem+json) and is audited on the refusing side; nothing of the refused hop is stored. In a batch a
refused hop is answered in its slot with the same problem and audited the same way, and the others go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.config import Settings
from broker.crypto import PublicKey
from broker.crypto.httpsig import NODE_LABEL, request_failure, verify_request
from broker.deps import DbSession, Keys, RawBody, json_body, request_id, request_target
from broker.errors import InvalidInput, NotFound, SpocError
from broker.hop.event_intake import claimed_of, receive_event
from broker.hop.events import EVENTS_PATH
from broker.hop.service import HOP_BATCH_PATH, HOP_PATH, live_directory, peer_for_kid, receive, receive_batch
from broker.keys.service import remember_nonce
from schemas.hop import (
    MAX_HOP_BATCH,
    HopBatchAnswer,
    HopBatchItem,
    HopBatchRequest,
    HopEventRequest,
    HopReceipt,
    HopRequest,
)
from schemas.region import DirectoryNode, RegionDirectory

router = APIRouter(tags=["hop"])


@dataclass(frozen=True)
class Peer:
    node: DirectoryNode
    directory: RegionDirectory


def current_peer(request: Request, session: DbSession, body: RawBody) -> Peer:
    """The peer node whose transport signature this request carries, per the current regional directory.

    The signature's form is checked first (an unsigned call is a 401 whatever the node's state); the directory
    is needed only to resolve the key, and a node without a valid one answers 503 (retry later)."""
    settings: Settings = request.app.state.settings
    found: list[DirectoryNode] = []
    held: list[RegionDirectory] = []

    def resolve(kid: str) -> PublicKey:
        directory = live_directory(session).directory
        held.append(directory)
        try:
            node, key = peer_for_kid(directory, kid)
        except NotFound:
            raise request_failure(
                "unlisted-node",
                f"the key {kid[:64]} is not a transport key of any node in the regional directory",
            ) from None
        found.append(node)
        return key

    verified = verify_request(
        request.method,
        request_target(request),
        request.headers,
        body,
        resolve=resolve,
        max_age=settings.request_signature_max_age,
        label=NODE_LABEL,
    )
    remember_nonce(session, verified)
    session.commit()
    request.state.actor = Actor(found[0].node_id, "node", request_id(request))
    return Peer(found[0], held[0])


CurrentPeer = Annotated[Peer, Depends(current_peer)]


@router.post(
    HOP_PATH,
    operation_id="receive_hop",
    response_model=HopReceipt,
    responses={400: {}, 401: {}, 409: {}, 422: {}, 503: {}},
    openapi_extra=json_body(
        HopRequest.model_json_schema(), "A message a peer node forwards (docs/region.md)."
    ),
)
def receive_hop(
    request: Request, session: DbSession, keys: Keys, body: RawBody, peer: CurrentPeer
) -> HopReceipt:
    """Take a message a peer node forwards (envelope, origin custody, the origin's statement on the sender's
    key); answer with this node's signed transport receipt. The same hop again gets the same receipt."""
    parsed = _parsed(body)
    with _refusals_audited(session, peer, _claimed_message(parsed), request_id(request)):
        receipt = receive(
            session,
            keys,
            directory=peer.directory,
            sender=peer.node,
            body=parsed,
            request_id=request_id(request),
        )
    return HopReceipt(receipt=receipt)


@router.post(
    HOP_BATCH_PATH,
    operation_id="receive_hop_batch",
    response_model=HopBatchAnswer,
    responses={400: {}, 401: {}, 409: {}, 503: {}},
    openapi_extra=json_body(
        HopBatchRequest.model_json_schema(),
        f"Up to {MAX_HOP_BATCH} messages a peer node forwards, each as for POST {HOP_PATH} (docs/region.md).",
    ),
)
def receive_hop_batch(
    request: Request, session: DbSession, keys: Keys, body: RawBody, peer: CurrentPeer
) -> HopBatchAnswer:
    """Take many messages a peer node forwards in one signed request: ``{"hops": [...]}``. Each hop gets the
    checks of ``POST /v1/hop/messages`` and is stored or refused on its own; the answer lists, in order, its
    receipt or the problem (with its ``reason``) it would have got alone. Refusals are audited here. On an
    error of this node (5xx) nothing was kept and the batch can be sent again: each hop is idempotent."""
    parsed = _parsed(body)
    hops = parsed.get("hops")
    if set(parsed) != {"hops"} or not isinstance(hops, list) or not 1 <= len(hops) <= MAX_HOP_BATCH:
        raise InvalidInput(f'a batch of hops is {{"hops": [...]}} with 1 to {MAX_HOP_BATCH} hops')
    rid = request_id(request)
    outcomes = receive_batch(
        session, keys, directory=peer.directory, sender=peer.node, bodies=hops, request_id=rid
    )
    results = []
    for index, (hop, outcome) in enumerate(zip(hops, outcomes, strict=True)):
        if isinstance(outcome, str):
            results.append(HopBatchItem(index=index, status=200, receipt=outcome))
            continue
        _audit_refusal(session, peer, _claimed_message(hop if isinstance(hop, dict) else {}), outcome, rid)
        results.append(HopBatchItem(index=index, status=outcome.status, problem=outcome.problem()))
    return HopBatchAnswer(results=results)


@router.post(
    EVENTS_PATH,
    operation_id="receive_hop_event",
    response_model=HopReceipt,
    responses={400: {}, 401: {}, 409: {}, 422: {}, 503: {}},
    openapi_extra=json_body(
        HopEventRequest.model_json_schema(),
        "An event a peer node's contact point made about a message that crossed (docs/hop-events.md).",
    ),
)
def receive_hop_event(
    request: Request, session: DbSession, keys: Keys, body: RawBody, peer: CurrentPeer
) -> HopReceipt:
    """Take an event a peer node sends (a refusal, a grant, a deadline extension…, signed by its contact
    point) and apply it to this node's copy of the message; answer with this node's signed transport
    receipt. The same event again gets the same receipt; other content under its id is a conflict."""
    parsed = _parsed(body)
    with _refusals_audited(session, peer, claimed_of(parsed), request_id(request)):
        receipt = receive_event(
            session,
            keys,
            directory=peer.directory,
            sender=peer.node,
            body=parsed,
            request_id=request_id(request),
        )
    return HopReceipt(receipt=receipt)


@contextlib.contextmanager
def _refusals_audited(
    session: Session, peer: Peer, claimed: dict[str, Any], rid: str | None
) -> Iterator[None]:
    """A refused hop (4xx) is recorded as ``hop:refused`` on this side, in its own transaction (the
    request's is rolled back with whatever it was refused), and marked audited so the edge does not write it
    again as ``access:denied``. A 5xx is this node's failure, not a refusal: it propagates untouched."""
    try:
        yield
    except SpocError as exc:
        if exc.status >= 500:
            raise
        session.rollback()
        _audit_refusal(session, peer, claimed, exc, rid)
        session.commit()
        exc.audited = True
        raise


def _parsed(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("the hop is not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("the hop is a JSON object")
    return parsed


def _claimed_message(body: dict[str, Any]) -> dict[str, Any]:
    envelope = body.get("envelope")
    header = envelope.get("header") if isinstance(envelope, dict) else None
    return {k: str(header.get(k))[:64] for k in ("message_id", "origin_country", "destination_country")
            if isinstance(header, dict) and header.get(k) is not None}  # fmt: skip


def _audit_refusal(
    session: Session, peer: Peer, claimed: dict[str, Any], exc: SpocError, rid: str | None
) -> None:
    record(
        session,
        actor=Actor(peer.node.node_id, "node", rid),
        action=AuditAction.HOP_REFUSED,
        object_type="node",
        object_id=peer.node.node_id,
        countries=sorted(peer.node.countries),
        outcome="refused",
        details={"reason": exc.extra.get("reason"), "error": type(exc).__name__, "claimed": claimed},
    )
