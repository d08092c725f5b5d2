"""This node as a witness of its peers' logs (C2SP tlog-witness ``add-checkpoint``).

The logs it witnesses are exactly the nodes the current regional directory lists, other than itself, each
identified by its origin (the name of its ``log_key``) and trusted under that one key. For a request it

1. parses the body (400 if malformed, or ``old`` above the checkpoint's size);
2. finds the log by the checkpoint's origin line (404 if the directory lists no such log);
3. verifies the log's signature with the directory's key, ignoring other signatures (403 if none verifies);
4. under a lock on that origin (the spec's atomicity rule: check and update are one step), compares ``old``
   with the size it last cosigned (409 with its size if they differ); at equal sizes the roots must be equal,
   else it is a **fork**: two checkpoints of one size signed by the log (409, and an alert with both notes);
5. verifies the RFC 6962 consistency proof from its tree to the new one (422 if it fails);
6. stores the new state and answers with its ``cosignature/v1`` line, under the witness key and name the
   directory lists for this node (``spoc/witness/<node>``).

A witness never cosigns a tree smaller than one it cosigned (``old`` must be its size, which is at most the
new size), nor two trees of one size. Refusals are audited (``witness:refused``), throttled per origin by the
caller, so a flood of bad submissions cannot become a flood of log entries. Functions flush, never commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from broker.audit import merkle
from broker.audit.actions import AuditAction
from broker.audit.alerts import raise_alert
from broker.audit.models import AuditAlert
from broker.audit.service import Actor, record
from broker.crypto.note import COSIGNATURE_V1, NoteKey, NoteSigner, open_note
from broker.db import utcnow
from broker.directory.models import ContactPoint
from broker.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    SpocError,
    Unavailable,
    VerificationError,
)
from broker.keys.service import DatabaseKeyStore
from broker.messages.notifications import notify
from broker.region.sync import WITNESS_PARTY, held_parties
from broker.witness.models import WitnessLogState
from broker.witness.protocol import AddCheckpoint, CheckpointText
from schemas.region import DirectoryNode, RegionDirectory

__all__ = [
    "BadProof",
    "LogSignature",
    "SizeConflict",
    "UnknownLog",
    "Witnessed",
    "add_checkpoint",
    "alert_peer",
    "listed_log",
    "record_refusal",
    "witness_signer",
]

_LOCK_SPACE: Final = 0x5B0C_A0D2  # PostgreSQL advisory lock namespace of the witness's per-origin state


class UnknownLog(NotFound):
    """404: the directory lists no peer log with this origin (or it is this node's own log)."""

    denial = False  # audited as witness:refused, not as access:denied


class LogSignature(NotPermitted):
    """403: no signature on the checkpoint verifies under the key the directory lists for its origin."""

    denial = False


class BadProof(VerificationError):
    """422: the consistency proof from the witness's size to the checkpoint does not verify."""


class SizeConflict(Conflict):
    """409: ``old`` is not the witness's size, or its size with another root; ``known`` goes in the body."""

    def __init__(self, detail: str, *, known: int, reason: str, fork: dict[str, Any] | None = None) -> None:
        super().__init__(detail, reason=reason)
        self.known = known
        self.fork = fork  # the evidence when the same size came with another root (alerted by the caller)


@dataclass(frozen=True)
class Witnessed:
    """A cosigned checkpoint: the signature lines to answer with."""

    origin: str
    node_id: str
    size: int
    lines: tuple[str, ...]


def listed_log(directory: RegionDirectory, origin: str, me: DirectoryNode) -> tuple[DirectoryNode, NoteKey]:
    """The peer node whose log has ``origin``, and its log key; UnknownLog otherwise (our own log included)."""
    for node in directory.nodes:
        if node.node_id == me.node_id:
            continue
        key = NoteKey.from_vkey(node.log_key)
        if key.name == origin:
            return node, key
    raise UnknownLog(
        f"this witness does not witness a log with origin {origin[:100]!r}", reason="unknown-log"
    )


def witness_signer(keys: DatabaseKeyStore, me: DirectoryNode) -> NoteSigner:
    """This node's witness key, under the name the directory lists it with; Unavailable if they differ (the
    directory would have peers expect cosignatures from a key this node does not hold)."""
    listed = NoteKey.from_vkey(me.witness_key)
    signer = NoteSigner.from_keypair(
        listed.name, key=keys.signing_key(WITNESS_PARTY), sig_type=COSIGNATURE_V1
    )
    if signer.verifier != listed:
        raise Unavailable("the regional directory lists another witness key for this node")
    return signer


def _lock(session: Session, origin: str) -> None:
    """Serialise witnessing of one origin until the transaction ends (SQLite: writers are serialised)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(origin.encode()).digest()[:4], "big", signed=True)
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": _LOCK_SPACE, "key": key}
        )


def add_checkpoint(
    session: Session,
    keys: DatabaseKeyStore,
    request: AddCheckpoint,
    *,
    directory: RegionDirectory,
    me: DirectoryNode,
    now: datetime | None = None,
) -> Witnessed:
    """Check and cosign a peer's checkpoint (see the module docstring); raises the refusal otherwise."""
    origin = request.note.split("\n", 1)[0]
    node, log_key = listed_log(directory, origin, me)
    try:
        verified = open_note(request.note, verifiers=[log_key])
    except VerificationError:
        raise LogSignature(
            f"the checkpoint carries no valid signature by {node.node_id}'s log key", reason="log-signature"
        ) from None
    checkpoint = CheckpointText.parse(verified.text)
    if request.old > checkpoint.size:
        raise InvalidInput(
            f"old size {request.old} is larger than the checkpoint's size {checkpoint.size}",
            reason="old-size",
        )
    _lock(session, origin)
    state = session.get(WitnessLogState, origin)
    known = state.size if state is not None else 0
    if request.old != known:
        raise SizeConflict(
            f"this witness has cosigned size {known} of {origin}, not {request.old}",
            known=known,
            reason="old-size",
        )
    if state is not None and checkpoint.size == state.size and checkpoint.root != state.root:
        # Alerted by the caller, after it rolled back: the refusal and the alert are what must be kept.
        raise SizeConflict(
            f"this witness cosigned another tree of size {known} of {origin}",
            known=known,
            reason="fork",
            fork={"origin": origin, "cosigned": state.note, "shown": request.note},
        )
    old_root = state.root if state is not None else merkle.EMPTY_ROOT
    try:
        merkle.verify_consistency(
            request.old, checkpoint.size, old_root, checkpoint.root, list(request.proof)
        )
    except merkle.ProofError as exc:
        raise BadProof(
            f"the consistency proof does not verify: {exc.detail}", reason="consistency-proof"
        ) from None
    when = now or utcnow()
    line = witness_signer(keys, me).signature_line(checkpoint.text, timestamp=int(when.timestamp()))
    if state is None:
        session.add(
            WitnessLogState(
                origin=origin,
                node_id=node.node_id,
                size=checkpoint.size,
                root=checkpoint.root,
                note=request.note,
                cosignature=line,
                updated_at=when,
            )
        )
    else:
        state.node_id, state.size, state.root = node.node_id, checkpoint.size, checkpoint.root
        state.note, state.cosignature, state.updated_at = request.note, line, when
    session.flush()
    return Witnessed(origin, node.node_id, checkpoint.size, (line,))


def alert_peer(
    session: Session, *, kind: str, node: DirectoryNode, detail: str, evidence: dict[str, Any]
) -> AuditAlert:
    """Raise an alert about a peer's log (once), and tell this node's officers.

    The alert is a ``log:fork-detected`` entry tagged with every country (so every auditor sees it) carrying
    the evidence (the signed notes); each contact point this node hosts gets a notification for its officers.
    """
    reporter = f"witness:{node.node_id}"[:64]
    before = session.scalar(
        select(AuditAlert.id).where(AuditAlert.kind == kind, AuditAlert.reporter == reporter).limit(1)
    )
    alert = raise_alert(session, kind=kind, reporter=reporter, detail=detail, evidence=evidence)
    if before is None:
        held = held_parties(session)
        for cp in session.scalars(select(ContactPoint.id).where(ContactPoint.id.in_(held))):
            notify(session, contact_point_id=cp, kind="log-alert", text=f"Audit log alert ({kind}): {detail}")
    return alert


def record_refusal(
    session: Session,
    *,
    actor: Actor,
    origin: str,
    node: DirectoryNode | None,
    error: SpocError,
    request: AddCheckpoint | None,
    audit: bool = True,
) -> None:
    """After a refusal (the request's work rolled back): raise the fork alert if it was one, and, unless the
    caller's throttle says no (``audit``), write ``witness:refused``: who submitted what for which log and why,
    with the signed note when the log's signature verified (evidence, the spec's "MAY log")."""
    if isinstance(error, SizeConflict) and error.fork is not None and node is not None:
        alert_peer(
            session,
            kind="peer-fork",
            node=node,
            detail=f"{node.node_id}'s log {origin} signed two different trees of size {error.known}: this "
            "witness cosigned one and was shown the other",
            evidence=error.fork,
        )
    if not audit:
        return
    status = error.status
    details: dict[str, Any] = {"origin": origin[:255], "reason": error.extra.get("reason"), "status": status}
    if isinstance(error, SizeConflict):
        details["known"] = error.known
    if request is not None:
        details["old"] = request.old
        if status in (409, 422):  # signed by the log: evidence of what it claimed (the spec's "MAY log")
            details["note"] = request.note[:4000]
    record(
        session,
        actor=actor,
        action=AuditAction.WITNESS_REFUSED,
        object_type="log",
        object_id=origin[:64] or None,
        countries=sorted(node.countries) if node is not None else [],
        outcome="refused",
        details=details,
    )
