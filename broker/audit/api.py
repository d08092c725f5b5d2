"""Auditor endpoints: search, timelines, checkpoints, RFC 9162 proofs, witnesses, alerts, export, verify.

Every route needs an auditor (or admin) session; the scope (national: entries touching the auditor's
country; regional/admin: all) is applied by ``broker.audit.search`` and cannot be widened by a filter.
Hashes are lowercase hex in JSON; the checkpoint note (``GET /v1/audit/checkpoint``) is the C2SP text,
with the root in base64, exactly as transparency tooling expects it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit import merkle
from broker.audit.actions import AuditAction
from broker.audit.alerts import alerts
from broker.audit.export import export_bundle
from broker.audit.models import AuditCheckpoint, AuditLeaf
from broker.audit.search import EntryFilter, Scope, entry, search, timeline
from broker.audit.service import entry_document, record, sequence_all, verify_log
from broker.audit.tree import StoredTree
from broker.audit.witness import cosign_latest, witness_keys, witnesses
from broker.deps import Admin, Auditor, DbSession, Keys
from broker.errors import Conflict, InvalidInput, NotFound
from broker.params import Int64

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.post("/verify", operation_id="verify_audit_log")
def verify_audit_log(_auditor: Auditor, session: DbSession) -> dict[str, Any]:
    """Sequence what is pending, then recompute every leaf, link, node and signed root of the log."""
    sequence_all(session)
    report = verify_log(session)
    return {
        "ok": report.ok,
        "size": report.size,
        "head": report.head,
        "root": report.root,
        "checkpoints": report.checkpoints,
        "pending": report.pending,
        "first_bad_seq": report.first_bad_seq,
        "problem": report.problem,
        "summary": report.line(),
    }


@router.get("/entries", operation_id="search_audit_entries")
def search_entries(
    auditor: Auditor,
    session: DbSession,
    since: datetime | None = None,
    until: datetime | None = None,
    country: Annotated[str | None, Query(max_length=2)] = None,
    agency: Annotated[str | None, Query(max_length=32)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    message: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Int64 | None = None,
) -> dict[str, Any]:
    """Entries in the caller's scope, newest first; page on with ``before`` = the last id of a page.
    ``request_id`` finds the entries of one request, from a log line's ``request_id`` (docs/operations.md)."""
    criteria = EntryFilter(since, until, country, agency, action, message, actor, request_id)
    found = search(session, Scope.of(auditor.user), criteria, limit=limit, before=before)
    return {
        "scope": Scope.of(auditor.user).country,
        "entries": [f.view() for f in found],
        "next_before": found[-1].entry.id if len(found) == limit else None,
    }


@router.get("/entries/{entry_id}", operation_id="get_audit_entry")
def get_entry(entry_id: Int64, auditor: Auditor, session: DbSession) -> dict[str, Any]:
    return entry(session, Scope.of(auditor.user), entry_id).view()


@router.get("/entries/{entry_id}/proof", operation_id="audit_inclusion_proof", responses={409: {}})
def inclusion_proof(
    entry_id: Int64,
    auditor: Auditor,
    session: DbSession,
    tree_size: Annotated[Int64 | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of an entry in the tree of ``tree_size`` (default: the latest checkpoint)."""
    found = entry(session, Scope.of(auditor.user), entry_id)
    if tree_size is None:
        latest = cps.latest(session)
        if latest is None:
            raise Conflict("the log has no signed checkpoint yet")
        tree_size = latest.size
    if found.seq is None or found.seq >= tree_size:
        raise Conflict(
            f"entry {entry_id} is not yet in the tree of size {tree_size}; ask again after a checkpoint"
        )
    index, size = found.seq, tree_size
    proof = _proof(lambda stored: stored.inclusion_proof(index, size), session)
    leaf = session.get(AuditLeaf, found.seq)
    return {
        "entry_id": entry_id,
        "leaf_index": found.seq,
        "tree_size": tree_size,
        "leaf_hash": leaf.leaf_hash if leaf else None,
        "inclusion_path": [h.hex() for h in proof],
        "entry": entry_document(found.entry),
    }


@router.get("/proofs/consistency", operation_id="audit_consistency_proof", responses={409: {}})
def consistency_proof(
    _auditor: Auditor,
    session: DbSession,
    first: Annotated[Int64, Query(ge=0)],
    second: Annotated[Int64, Query(ge=0)],
) -> dict[str, Any]:
    """RFC 9162 consistency proof between the trees of sizes ``first`` <= ``second``."""
    if first > second:
        raise InvalidInput("first must not exceed second")
    proof = _proof(lambda stored: stored.consistency_proof(first, second), session)
    return {"first": first, "second": second, "consistency_path": [h.hex() for h in proof]}


def _proof(make: Callable[[StoredTree], list[bytes]], session: Session) -> list[bytes]:
    """Run a proof against the stored tree; a size the log does not have is a 409, not a 500."""
    try:
        return make(StoredTree(session))
    except merkle.ProofError as exc:
        raise Conflict(exc.detail) from None


@router.get("/messages/{message_id}/timeline", operation_id="audit_timeline")
def exchange_timeline(message_id: str, auditor: Auditor, session: DbSession) -> dict[str, Any]:
    """Every entry in scope about the exchange (conversation) the message belongs to, in log order."""
    found = timeline(session, Scope.of(auditor.user), message_id)
    return {"message_id": message_id, "entries": [f.view() for f in found]}


@router.get(
    "/checkpoint",
    operation_id="latest_checkpoint_note",
    response_class=PlainTextResponse,
    responses={404: {}},
)
def checkpoint_note(_auditor: Auditor, session: DbSession) -> Response:
    """The latest checkpoint as a C2SP signed note with its cosignatures (text/plain, for tooling)."""
    latest = cps.latest(session)
    if latest is None:
        raise NotFound("no checkpoint has been issued yet")
    return PlainTextResponse(cps.full_note(session, latest), media_type="text/plain; charset=utf-8")


@router.get("/checkpoints", operation_id="list_checkpoints")
def list_checkpoints(
    _auditor: Auditor, session: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(limit)).all()
    return {"checkpoints": [cps.describe(session, r) for r in rows]}


@router.get("/checkpoints/{checkpoint_id}", operation_id="get_checkpoint")
def get_checkpoint(checkpoint_id: Int64, _auditor: Auditor, session: DbSession) -> dict[str, Any]:
    row = session.get(AuditCheckpoint, checkpoint_id)
    if row is None:
        raise NotFound("no such checkpoint")
    return cps.describe(session, row)


@router.post(
    "/checkpoints",
    operation_id="issue_checkpoint",
    responses={201: {"description": "A new checkpoint was signed"}},
)
def issue_checkpoint(request: Request, auditor: Auditor, session: DbSession, keys: Keys) -> JSONResponse:
    """Sequence what is pending and sign a checkpoint now (200 with the latest if nothing changed)."""
    sequence_all(session)
    issued = cps.issue(session, keys)
    if issued.checkpoint is None:
        session.commit()  # keep the alert; the request's unit of work would roll it back on the error
        raise Conflict(issued.problem or "the log is inconsistent with its last checkpoint")
    if issued.new:
        record(
            session,
            actor=auditor.actor(request),
            action=AuditAction.LOG_CHECKPOINT_REQUESTED,
            object_type="checkpoint",
            object_id=str(issued.checkpoint.id),
            countries=[auditor.user.country] if auditor.user.country else [],
        )
    return JSONResponse(cps.describe(session, issued.checkpoint), status_code=201 if issued.new else 200)


@router.post("/witnesses/{witness}/cosign", operation_id="cosign_checkpoint")
def witness_cosign(witness: str, _admin: Admin, session: DbSession, keys: Keys) -> dict[str, Any]:
    """Have one contact point check and cosign the latest checkpoint now (the beat task does it too)."""
    if witness not in witnesses(session):
        raise NotFound("no such contact point")
    result = cosign_latest(session, keys, witness)
    if result is None:
        raise Conflict("no checkpoint has been issued yet")
    return {
        "witness": result.witness,
        "checkpoint_id": result.checkpoint_id,
        "status": result.status,
        "detail": result.detail,
    }


@router.get("/keys", operation_id="audit_log_keys")
def log_keys(_auditor: Auditor, session: DbSession) -> dict[str, Any]:
    """The C2SP verifier keys of the log and of every witness, to pin when verifying offline."""
    return {
        "origin": cps.log_origin(session),
        "log_keys": sorted(k.vkey for k in cps.log_verifiers(session)),
        "witness_keys": sorted(k.vkey for k in witness_keys(session).values()),
    }


@router.get("/alerts", operation_id="audit_alerts")
def list_alerts(_auditor: Auditor, session: DbSession) -> dict[str, Any]:
    return {
        "alerts": [
            {
                "id": a.id,
                "at": a.at.isoformat(),
                "kind": a.kind,
                "reporter": a.reporter,
                "checkpoint_id": a.checkpoint_id,
                "other_checkpoint_id": a.other_checkpoint_id,
                "detail": a.detail,
            }
            for a in alerts(session)
        ]
    }


@router.get("/export", operation_id="export_audit_bundle", responses={404: {}})
def export(
    request: Request,
    auditor: Auditor,
    session: DbSession,
    since: datetime | None = None,
    until: datetime | None = None,
    country: Annotated[str | None, Query(max_length=2)] = None,
    agency: Annotated[str | None, Query(max_length=32)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    message: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    """A bundle (entries, checkpoints, proofs) that ``spoc audit verify BUNDLE`` checks offline."""
    criteria = EntryFilter(since, until, country, agency, action, message, actor)
    bundle = export_bundle(session, Scope.of(auditor.user), criteria, actor=auditor.actor(request))
    return JSONResponse(
        bundle, headers={"Content-Disposition": 'attachment; filename="spoc-audit-bundle.json"'}
    )
