"""Gossip between witnesses: a log that shows different witnesses different trees is caught by comparing them.

A witness alone only sees the branch a log shows it. A forking node would show one branch to some witnesses
and another to the others, each consistent in itself. So every node periodically fetches each peer's
``GET /v1/witness/checkpoints`` (the latest checkpoint that peer cosigned for each log) and compares every
entry with what its own witness cosigned for the same log:

* each fetched checkpoint must carry the log's signature under the key the *current directory* lists for its
  origin (the peer serving it is not trusted: an unsigned or wrongly signed view is ignored and logged);
* **same size, different root**: the log signed two trees of one size. ``peer-fork`` alert;
* **different sizes**: the log's own node is asked for the RFC 9162 consistency proof between the two sizes
  (``GET /v1/witness/consistency``, public) and it must verify against *both* signed roots. A proof that does
  not verify is a ``peer-inconsistent`` alert: at most one of the two trees can be the log's. A log that does
  not answer is reported as ``unproven`` and asked again next time (a hostile node can stall this check, never
  pass it; the same-size check needs nothing from it).

Alerts carry both signed notes as evidence, reach every auditor (``log:fork-detected``) and this node's
officers (a notification), and are raised once per peer log and kind.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.audit import merkle
from broker.crypto.note import open_note
from broker.db import unit_of_work
from broker.errors import SpocError, VerificationError
from broker.hop.service import live_directory, this_node
from broker.witness.models import WitnessLogState
from broker.witness.protocol import SUBMISSION_PREFIX, CheckpointText
from broker.witness.service import UnknownLog, alert_peer, listed_log
from schemas.region import DirectoryNode, RegionDirectory

__all__ = ["Finding", "gossip_all"]

log = logging.getLogger("spoc.witness")


@dataclass(frozen=True)
class Finding:
    """One comparison: ``agree``, ``consistent``, ``fork``, ``inconsistent``, ``unproven`` or ``ignored``."""

    peer: str  # the witness whose view was fetched
    origin: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class _View:
    origin: str
    node_id: str
    size: int
    root: bytes
    note: str


def gossip_all(sessions: sessionmaker[Session], http: httpx.Client) -> list[Finding]:
    """Fetch every peer witness's views and compare them with this witness's; see the module docstring."""
    with unit_of_work(sessions) as session:
        try:
            directory = live_directory(session).directory
            me = this_node(session, directory)
        except SpocError as exc:
            log.info("witness gossip skipped: %s", exc.detail)
            return []
        ours = {
            r.origin: _View(r.origin, r.node_id, r.size, r.root, r.note)
            for r in session.scalars(select(WitnessLogState))
        }
    findings: list[Finding] = []
    for peer in directory.nodes:
        if peer.node_id == me.node_id:
            continue
        try:
            answer = http.get(peer.base_url.rstrip("/") + SUBMISSION_PREFIX + "/checkpoints")
            answer.raise_for_status()
            items = answer.json().get("checkpoints", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("gossip: %s's witness did not answer: %s", peer.node_id, exc)
            continue
        for item in items if isinstance(items, list) else []:
            findings.append(_compare(sessions, http, directory, me, peer, item, ours))
    return findings


def _compare(
    sessions: sessionmaker[Session],
    http: httpx.Client,
    directory: RegionDirectory,
    me: DirectoryNode,
    peer: DirectoryNode,
    item: Any,
    ours: dict[str, _View],
) -> Finding:
    origin = str(item.get("origin", ""))[:255] if isinstance(item, dict) else ""
    note = item.get("note") if isinstance(item, dict) else None
    try:
        log_node, key = listed_log(directory, origin, me)
        if not isinstance(note, str):
            raise VerificationError("no note")
        theirs = CheckpointText.parse(open_note(note, verifiers=[key]).text)
    except UnknownLog:
        return Finding(peer.node_id, origin, "ignored", "not a peer log this witness follows")
    except SpocError:
        log.warning("gossip: %s serves a checkpoint of %s not signed by its log key", peer.node_id, origin)
        return Finding(peer.node_id, origin, "ignored", "not signed by the log's key")
    mine = ours.get(origin)
    if mine is None:
        return Finding(peer.node_id, origin, "ignored", "this witness has not cosigned that log yet")
    evidence = {"origin": origin, "ours": mine.note, "theirs": note, "via": peer.node_id}
    if theirs.size == mine.size:
        if theirs.root == mine.root:
            return Finding(peer.node_id, origin, "agree")
        detail = (
            f"{log_node.node_id}'s log {origin} signed two different trees of size {mine.size}: this witness "
            f"cosigned one, {peer.node_id}'s witness the other"
        )
        _alert(sessions, "peer-fork", log_node, detail, evidence)
        return Finding(peer.node_id, origin, "fork", detail)
    (lo_size, lo_root), (hi_size, hi_root) = sorted([(mine.size, mine.root), (theirs.size, theirs.root)])
    try:
        proof = _fetch_proof(http, log_node, lo_size, hi_size)
    except (httpx.HTTPError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        return Finding(
            peer.node_id, origin, "unproven", f"{log_node.node_id} gave no consistency proof: {exc}"
        )
    try:
        merkle.verify_consistency(lo_size, hi_size, lo_root, hi_root, proof)
    except merkle.ProofError as exc:
        detail = (
            f"{log_node.node_id}'s log {origin}: the tree of size {lo_size} and the tree of size {hi_size} that "
            f"this witness and {peer.node_id}'s hold are not consistent ({exc.detail})"
        )
        _alert(sessions, "peer-inconsistent", log_node, detail, evidence)
        return Finding(peer.node_id, origin, "inconsistent", detail)
    return Finding(peer.node_id, origin, "consistent")


def _fetch_proof(http: httpx.Client, node: DirectoryNode, old: int, new: int) -> list[bytes]:
    answer = http.get(
        node.base_url.rstrip("/") + SUBMISSION_PREFIX + "/consistency", params={"old": old, "new": new}
    )
    answer.raise_for_status()
    proof = [base64.b64decode(h, validate=True) for h in answer.json()["proof"]]
    if len(proof) > 64 or any(len(h) != 32 for h in proof):
        raise ValueError("not a consistency proof")
    return proof


def _alert(
    sessions: sessionmaker[Session], kind: str, node: DirectoryNode, detail: str, evidence: dict[str, Any]
) -> None:
    with unit_of_work(sessions) as session:
        alert_peer(session, kind=kind, node=node, detail=detail, evidence=evidence)
