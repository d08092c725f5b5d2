"""This node as a log: send its latest checkpoint to every peer node's witness, keep what they cosign.

For each node the current regional directory lists (other than this one), in three steps so that no database
transaction is open while a peer is slow:

1. read: the latest checkpoint (only one under the origin the directory lists for this node's log key: peers
   know no other), the size that peer's witness is known to have (``witness_submissions``, 0 at first), and
   the RFC 9162 consistency proof from that size, built from the stored tree;
2. ``POST {base_url}/v1/witness/add-checkpoint`` (C2SP tlog-witness);
3. write: on ``200`` each returned line that verifies as a ``cosignature/v1`` under the witness key the
   directory lists for that peer over this checkpoint is stored (``audit_peer_cosignatures``); lines by
   other keys are ignored, as the spec says; on ``409`` (``text/x.tlog.size``) the witness's size is kept
   and the request is sent again from it, at most twice; anything else is kept as the peer's last error and
   retried by the next run.

Idempotent: a checkpoint a peer has already cosigned is not sent to it again. A peer that lost its state
answers 409 with 0 and is brought back up with the proof from the empty tree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.audit import checkpoints as cps
from broker.audit.models import AuditCheckpoint, AuditPeerCosignature
from broker.audit.tree import StoredTree
from broker.crypto.note import NoteKey, split_note
from broker.db import unit_of_work, utcnow
from broker.errors import SpocError, VerificationError
from broker.hop.service import live_directory, this_node
from broker.witness.models import WitnessSubmission
from broker.witness.protocol import ADD_CHECKPOINT, SIZE_CONTENT_TYPE, parse_size, request_body
from schemas.region import DirectoryNode

__all__ = ["Submitted", "accept_cosignatures", "submit_all"]

log = logging.getLogger("spoc.witness")
_ATTEMPTS = 3  # the first request, and at most two more after a 409 named the witness's size


@dataclass(frozen=True)
class Submitted:
    """What one peer's witness did with this node's latest checkpoint."""

    node_id: str
    status: str  # cosigned | already | refused | unreachable
    size: int
    detail: str = ""


@dataclass(frozen=True)
class _Latest:
    checkpoint_id: int
    origin: str
    size: int
    note: str


def submit_all(sessions: sessionmaker[Session], http: httpx.Client) -> list[Submitted]:
    """Submit the latest checkpoint to every peer's witness; see the module docstring. Never raises for a
    peer's failure (it is kept and retried); returns nothing when there is no region or no checkpoint yet."""
    with unit_of_work(sessions) as session:
        try:
            directory = live_directory(session).directory
            me = this_node(session, directory)
        except SpocError as exc:
            log.info("witness submission skipped: %s", exc.detail)
            return []
        checkpoint = cps.latest(session)
        origin = NoteKey.from_vkey(me.log_key).name
        if checkpoint is None or checkpoint.origin != origin:
            return []  # the next checkpoint carries the directory's origin (installing it grew the log)
        latest = _Latest(checkpoint.id, origin, checkpoint.size, checkpoint.note)
        peers = [n for n in directory.nodes if n.node_id != me.node_id]
    return [_submit(sessions, http, peer, latest) for peer in peers]


def _submit(
    sessions: sessionmaker[Session], http: httpx.Client, peer: DirectoryNode, latest: _Latest
) -> Submitted:
    url = peer.base_url.rstrip("/") + ADD_CHECKPOINT
    for _ in range(_ATTEMPTS):
        with unit_of_work(sessions) as session:
            state = session.get(WitnessSubmission, (peer.node_id, latest.origin))
            known = state.size if state is not None else 0
            if known == latest.size and _cosigned(session, latest.checkpoint_id, peer.node_id):
                return Submitted(peer.node_id, "already", known)
            if known > latest.size:
                return _failed(sessions, peer, latest, f"the witness has size {known}, above ours", "refused")
            body = request_body(known, StoredTree(session).consistency_proof(known, latest.size), latest.note)
        try:
            answer = http.post(url, content=body, headers={"content-type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            return _failed(sessions, peer, latest, f"{type(exc).__name__}: {exc}"[:300], "unreachable")
        if answer.status_code == 409 and answer.headers.get("content-type", "").startswith(SIZE_CONTENT_TYPE):
            try:
                size = parse_size(answer.content)
            except SpocError:
                return _failed(sessions, peer, latest, "a 409 without a size", "refused")
            _remember(sessions, peer, latest, size, None, f"409: the witness has size {size}")
            if size == known:  # same size, another root: this log forked, or the witness's state is not ours
                return Submitted(
                    peer.node_id, "refused", size, "409 at the same size: another tree of that size"
                )
            continue
        if answer.status_code != 200:
            reason = _reason(answer)
            return _failed(sessions, peer, latest, f"{answer.status_code} {reason}".strip(), "refused")
        with unit_of_work(sessions) as session:
            stored = accept_cosignatures(session, peer, latest.checkpoint_id, answer.text)
        if not stored:
            return _failed(
                sessions, peer, latest, "no cosignature by the witness key the directory lists", "refused"
            )
        _remember(sessions, peer, latest, latest.size, latest.checkpoint_id, None)
        return Submitted(peer.node_id, "cosigned", latest.size)
    return Submitted(peer.node_id, "refused", latest.size, "the witness's size kept changing")


def accept_cosignatures(session: Session, peer: DirectoryNode, checkpoint_id: int, answer: str) -> int:
    """Store every line of ``answer`` that is a valid ``cosignature/v1`` by ``peer``'s directory witness key
    over the checkpoint; ignore lines by other keys; return how many are stored (0: nothing verified)."""
    checkpoint = session.get(AuditCheckpoint, checkpoint_id)
    if checkpoint is None:
        return 0
    key = NoteKey.from_vkey(peer.witness_key)
    text, _ = split_note(checkpoint.note)
    try:
        _, signatures = split_note(text + "\n" + answer)
    except VerificationError:
        return 0
    stored = 0
    for sig in signatures:
        if (sig.name, sig.key_id) != (key.name, key.key_id):
            continue
        try:
            when = key.verify(text, sig.blob)
        except VerificationError:
            log.warning("a cosignature from %s does not verify; ignored", peer.node_id)
            continue
        if when is None:  # a signature without a time is not a cosignature/v1: not a witness's word
            continue
        exists = session.scalar(
            select(AuditPeerCosignature.id).where(
                AuditPeerCosignature.checkpoint_id == checkpoint_id,
                AuditPeerCosignature.node_id == peer.node_id,
                AuditPeerCosignature.key_id == key.key_id.hex(),
            )
        )
        if exists is None:
            session.add(
                AuditPeerCosignature(
                    checkpoint_id=checkpoint_id,
                    node_id=peer.node_id,
                    countries=sorted(peer.countries),
                    witness=key.name,
                    key_id=key.key_id.hex(),
                    signed_at=datetime.fromtimestamp(when, UTC),
                    line=sig.line,
                )
            )
        stored += 1
    session.flush()
    return stored


def _cosigned(session: Session, checkpoint_id: int, node_id: str) -> bool:
    return (
        session.scalar(
            select(AuditPeerCosignature.id).where(
                AuditPeerCosignature.checkpoint_id == checkpoint_id, AuditPeerCosignature.node_id == node_id
            )
        )
        is not None
    )


def _remember(
    sessions: sessionmaker[Session],
    peer: DirectoryNode,
    latest: _Latest,
    size: int,
    checkpoint_id: int | None,
    error: str | None,
) -> None:
    with unit_of_work(sessions) as session:
        state = session.get(WitnessSubmission, (peer.node_id, latest.origin))
        if state is None:
            state = WitnessSubmission(node_id=peer.node_id, origin=latest.origin, size=size)
            session.add(state)
        state.size, state.updated_at, state.last_error = size, utcnow(), error
        if checkpoint_id is not None:
            state.checkpoint_id = checkpoint_id


def _failed(
    sessions: sessionmaker[Session], peer: DirectoryNode, latest: _Latest, detail: str, status: str
) -> Submitted:
    log.warning("witness %s did not cosign checkpoint %s: %s", peer.node_id, latest.checkpoint_id, detail)
    with unit_of_work(sessions) as session:
        state = session.get(WitnessSubmission, (peer.node_id, latest.origin))
        if state is None:
            session.add(
                WitnessSubmission(node_id=peer.node_id, origin=latest.origin, size=0, last_error=detail[:300])
            )
        else:
            state.last_error, state.updated_at = detail[:300], utcnow()
    return Submitted(peer.node_id, status, latest.size, detail)


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return ""
    return str(body.get("reason") or "") if isinstance(body, dict) else ""
