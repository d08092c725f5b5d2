"""The witness over HTTP: C2SP tlog-witness ``add-checkpoint``, and what gossip between witnesses reads.

* ``POST /v1/witness/add-checkpoint`` — the spec's call under the *submission prefix* ``{base_url}/v1/witness``.
  Open to anyone, as the spec says: the only authentication is the log's signature on the checkpoint, checked
  against the key the current regional directory lists for its origin. Limits: the body is at most 32 KiB
  (``protocol.MAX_BODY_BYTES``: 63 proof lines and a note of 100 signatures fit), each source address shares
  the node's rate limit buckets (``witness:<address>``, ``SPOC_RATE_LIMIT_*``), and refusals are audited
  through the denials throttle (per origin), so a flood costs one bucket, not the log.
* ``GET /v1/witness/checkpoints`` — for gossip: the latest checkpoint this witness cosigned for each peer log,
  exactly as the log signed it, with this witness's cosignature. Public: it holds only signed notes.
* ``GET /v1/witness/consistency?old=&new=`` — this node's *own* log's RFC 9162 consistency proof between two
  sizes (base64 lines), so a peer can check two of this log's checkpoints that different witnesses hold.
  Public: hashes only, nothing of the entries.

Statuses of ``add-checkpoint`` are exactly the spec's; the 409 body is the witness's size and a newline with
``Content-Type: text/x.tlog.size``; the others are problem+json with a ``reason``.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from broker.audit import merkle
from broker.audit.service import Actor
from broker.audit.tree import StoredTree
from broker.deps import DbSession, Keys, RawBody, request_id
from broker.errors import Conflict, InvalidInput, SpocError, Unavailable
from broker.hop.service import live_directory, this_node
from broker.limits import enforce
from broker.params import Int64
from broker.witness.models import WitnessLogState
from broker.witness.protocol import (
    ADD_CHECKPOINT,
    MAX_BODY_BYTES,
    SIZE_CONTENT_TYPE,
    SUBMISSION_PREFIX,
    AddCheckpoint,
    parse_request,
)
from broker.witness.service import SizeConflict, UnknownLog, add_checkpoint, listed_log, record_refusal
from schemas.region import DirectoryNode, RegionDirectory

router = APIRouter(tags=["witness"])

_BODY = {
    "requestBody": {
        "required": True,
        "description": "old <size>, consistency proof lines, an empty line, the checkpoint note (docs/witness.md)",
        "content": {"text/plain": {"schema": {"type": "string", "maxLength": MAX_BODY_BYTES}}},
    }
}


@router.post(
    ADD_CHECKPOINT,
    operation_id="witness_add_checkpoint",
    response_class=PlainTextResponse,
    responses={
        400: {},
        403: {},
        404: {},
        409: {"content": {SIZE_CONTENT_TYPE: {}}},
        422: {},
        429: {},
        503: {},
    },
    openapi_extra=_BODY,
)
def witness_add_checkpoint(request: Request, session: DbSession, keys: Keys, body: RawBody) -> Response:
    """C2SP tlog-witness add-checkpoint: cosign a peer node's checkpoint consistent with what this witness saw."""
    source = request.client.host if request.client is not None else ""
    enforce(request.app.state.limiter, f"witness:{source}")
    parsed: AddCheckpoint | None = None
    origin = ""
    directory: RegionDirectory | None = None
    me: DirectoryNode | None = None
    try:
        try:
            directory = live_directory(session).directory
            me = this_node(session, directory)
        except Unavailable:
            # No valid directory: this node trusts no log key, so every origin is unknown to it (the spec's
            # answer to an origin a witness is not configured for).
            raise UnknownLog(
                "this node has no valid regional directory: it witnesses no log", reason="unknown-log"
            ) from None
        parsed = parse_request(body)
        origin = parsed.note.split("\n", 1)[0]
        witnessed = add_checkpoint(session, keys, parsed, directory=directory, me=me)
    except SpocError as exc:
        if exc.status >= 500:
            raise
        session.rollback()
        node = _node(directory, origin, me)
        admitted = request.app.state.denial_throttle.admit(f"witness:{origin[:100]}:{source}") is not None
        actor = Actor(
            node.node_id if node else "anonymous", "node" if node else "anonymous", request_id(request)
        )
        record_refusal(
            session, actor=actor, origin=origin, node=node, error=exc, request=parsed, audit=admitted
        )
        session.commit()
        exc.audited = True
        if isinstance(exc, SizeConflict):
            # Exactly the spec's type, with no charset parameter (Starlette would add one to a text/* media type).
            return Response(
                f"{exc.known}\n".encode(), status_code=409, headers={"content-type": SIZE_CONTENT_TYPE}
            )
        raise
    return PlainTextResponse("".join(witnessed.lines), media_type="text/plain; charset=utf-8")


def _node(directory: RegionDirectory | None, origin: str, me: DirectoryNode | None) -> DirectoryNode | None:
    if directory is None or me is None:
        return None
    try:
        return listed_log(directory, origin, me)[0]
    except (UnknownLog, InvalidInput):
        return None


@router.get(SUBMISSION_PREFIX + "/checkpoints", operation_id="witness_checkpoints")
def witness_checkpoints(session: DbSession) -> dict[str, Any]:
    """The latest checkpoint this witness cosigned for each peer log (gossip: peers compare their views).

    A node with no valid directory still shows what it holds (``node`` and ``witness_key`` are then null)."""
    try:
        directory = live_directory(session).directory
        me: DirectoryNode | None = this_node(session, directory)
    except Unavailable:
        me = None
    rows = session.scalars(select(WitnessLogState).order_by(WitnessLogState.origin)).all()
    return {
        "node": me.node_id if me else None,
        "witness_key": me.witness_key if me else None,
        "checkpoints": [
            {
                "origin": r.origin,
                "node": r.node_id,
                "size": r.size,
                "note": r.note,
                "cosignature": r.cosignature,
            }
            for r in rows
        ],
    }


@router.get(SUBMISSION_PREFIX + "/consistency", operation_id="witness_log_consistency", responses={409: {}})
def log_consistency(
    session: DbSession, old: Annotated[Int64, Query(ge=0)], new: Annotated[Int64, Query(ge=0)]
) -> dict[str, Any]:
    """This node's own log: the RFC 9162 consistency proof from size ``old`` to size ``new`` (base64)."""
    if old > new:
        raise InvalidInput("old must not exceed new")
    try:
        proof = StoredTree(session).consistency_proof(old, new)
    except merkle.ProofError as exc:
        raise Conflict(exc.detail) from None
    return {"old": old, "new": new, "proof": [base64.b64encode(h).decode() for h in proof]}
