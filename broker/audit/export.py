"""Building an audit bundle from the database (the format and its offline check are in ``bundle``).

The anchor is the latest signed checkpoint; entries it does not cover yet (newer, or still pending) are
counted in ``uncovered``, not included, so everything in a bundle is provable. Issue a checkpoint first
(``spoc audit checkpoint``, or the API/UI) to cover everything. The export itself is an audit entry.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit.actions import AuditAction
from broker.audit.bundle import FORMAT
from broker.audit.models import AuditCheckpoint
from broker.audit.search import EntryFilter, Found, Scope, in_scope, timeline
from broker.audit.service import Actor, entry_document, record
from broker.audit.tree import StoredTree
from broker.audit.witness import witness_keys
from broker.db import utcnow
from broker.errors import Conflict
from broker.region.models import InstalledDirectory

EARLIER_CHECKPOINTS = 20
"""How many checkpoints before the anchor a bundle carries, each with its consistency proof."""
_CHUNK = 500


def export_bundle(
    session: Session,
    scope: Scope,
    criteria: EntryFilter,
    *,
    actor: Actor,
    earlier: int = EARLIER_CHECKPOINTS,
) -> dict[str, Any]:
    """The bundle of every entry in ``scope`` matching ``criteria`` (with ``message``: the whole exchange)."""
    anchor = cps.latest(session)
    if anchor is None:
        raise Conflict("the log has no signed checkpoint yet; issue one (spoc audit checkpoint) and retry")
    found = (
        timeline(session, scope, criteria.message) if criteria.message else in_scope(session, scope, criteria)
    )
    covered = [f for f in found if f.seq is not None and f.seq < anchor.size]
    stored = StoredTree(session)
    entries: list[dict[str, Any]] = []
    for start in range(0, len(covered), _CHUNK):
        chunk = covered[start : start + _CHUNK]
        proofs = stored.inclusion_proofs([f.seq for f in chunk if f.seq is not None], anchor.size)
        entries.extend(_item(f, proofs) for f in chunk)
    previous = session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.id < anchor.id, AuditCheckpoint.size <= anchor.size)
        .order_by(AuditCheckpoint.id.desc())
        .limit(earlier)
    ).all()
    bundle = {
        "format": FORMAT,
        "origin": anchor.origin,
        "exported_at": utcnow().astimezone(UTC).isoformat(),
        "exported_by": actor.name,
        "scope": scope.country,
        "filters": criteria.as_query(),
        "log_keys": sorted(k.vkey for k in cps.log_verifiers(session)),
        "witness_keys": sorted(k.vkey for k in witness_keys(session).values()),
        **_region(session),
        "checkpoint": cps.full_note(session, anchor),
        "earlier_checkpoints": [
            {
                "note": cps.full_note(session, c),
                "consistency_proof": [h.hex() for h in stored.consistency_proof(c.size, anchor.size)],
            }
            for c in reversed(previous)
        ],
        "entries": entries,
        "uncovered": len(found) - len(covered),
    }
    record(
        session,
        actor=actor,
        action=AuditAction.AUDIT_EXPORTED,
        object_type="audit-bundle",
        object_id=str(anchor.id),
        countries=[c for c in (scope.country, criteria.country) if c],
        details={"filters": criteria.as_query(), "entries": len(entries), "checkpoint_size": anchor.size},
    )
    return bundle


def _region(session: Session) -> dict[str, Any]:
    """The signed regional directory the node has (if any): it names the peers whose witnesses cosign."""
    signed = session.scalar(
        select(InstalledDirectory.signed).order_by(InstalledDirectory.version.desc()).limit(1)
    )
    return {} if signed is None else {"region_directory": signed}


def _item(found: Found, proofs: dict[int, tuple[bytes, list[bytes]]]) -> dict[str, Any]:
    assert found.seq is not None  # noqa: S101 - only covered entries reach here
    leaf, path = proofs[found.seq]
    return {
        "seq": found.seq,
        "leaf_hash": leaf.hex(),
        "entry": entry_document(found.entry),
        "inclusion_proof": [h.hex() for h in path],
    }
