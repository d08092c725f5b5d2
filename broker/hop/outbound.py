"""Sending hops: scheduled in the approval's transaction, sent with no transaction open, settled after.

A hop is a message (scheduled here) or an event about one (scheduled by ``broker.hop.events.announce`` in the
decision's transaction, signed then): both are ``hops`` rows and go through the same steps below.

The same shape as push delivery (``broker.delivery.push``), for the same reasons: a peer that is down or slow
must hold no lock and stall no other work. Each step is its own unit of work:

1. ``schedule`` (the outbox's forward step, in the worker's transaction): a ``hops`` row for the message, with
   the origin contact point's statement vouching for the sender's keys, due now.
2. ``claim`` (committed before anything is sent): due rows leased by moving ``next_attempt_at`` forward, so a
   worker killed mid-send gives the row back when the lease runs out.
3. ``prepare`` (read): the signed requests. ``send`` (no transaction): the POSTs.
4. ``settle`` (write): a receipt that verifies against the peer's directory keys is kept, with ``hop:sent`` in
   the log; anything else is retried with exponential backoff and jitter (``SPOC_PUSH_BACKOFF_*``), and after
   ``SPOC_PUSH_MAX_ATTEMPTS`` (or at once for a refusal that cannot change, a 4xx other than 408/429) the hop is
   dead-lettered: the origin's officers are notified, with the peer's status and reason.

At-least-once on the wire; the receiving node de-duplicates by message id and answers a repeat with its first
receipt, so the message is stored there once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, defer, sessionmaker

from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, record
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.db import insert_all, unit_of_work, utcnow
from broker.delivery.push import backoff
from broker.delivery.runner import all_due
from broker.directory.service import contact_point_for
from broker.errors import SpocError
from broker.hop.events import EVENTS_PATH, acting_country
from broker.hop.models import Hop
from broker.hop.service import (
    HOP_BATCH_PATH,
    HOP_PATH,
    HopFailed,
    check_receipt,
    hop_body,
    live_directory,
    origin_custody,
    problem_reason,
    safe_reason,
    sender_key_token,
    this_node,
)
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.notifications import notify
from broker.region.sync import TRANSPORT_PARTY
from schemas.hop import MAX_HOP_BATCH, EventKind
from schemas.region import DirectoryNode, RegionDirectory

__all__ = [
    "HopJob",
    "HopOutcome",
    "claim",
    "hop_all_due",
    "hop_batch",
    "prepare",
    "schedule",
    "schedule_many",
    "send",
    "settle",
]


def schedule(session: Session, keys: DatabaseKeyStore, message: Message) -> None:
    """Queue the hop of a message approved for another node (idempotent: one row per message)."""
    schedule_many(session, keys, [message])


def schedule_many(session: Session, keys: DatabaseKeyStore, messages: Sequence[Message]) -> None:
    """:func:`schedule` for many messages (the outbox's batch): one query for the hops queued before, one
    read of the directory, one INSERT of the new ``hops`` rows, each with the origin contact point's statement
    vouching for its sender's key. A destination no node serves fails the whole call (HopFailed)."""
    if not messages:
        return
    queued = set(
        session.scalars(
            select(Hop.message_id).where(
                Hop.message_id.in_([m.id for m in messages]), Hop.direction == "out", Hop.event_id.is_(None)
            )
        )
    )
    todo = [m for m in messages if m.id not in queued]
    if not todo:
        return
    directory = live_directory(session).directory
    hops: list[Hop] = []
    now = utcnow()
    for message in todo:
        peer = directory.node_for_country(message.destination_country)
        if peer is None:
            raise HopFailed(f"no node of the regional directory serves {message.destination_country}")
        queued.add(message.id)
        hops.append(
            Hop(
                message_id=message.id,
                direction="out",
                peer_node=peer.node_id,
                digest=message.digest,
                sender_key=sender_key_token(session, keys, message),
                attempts=0,
                next_attempt_at=now,
            )
        )
    insert_all(session, hops)


def claim(session: Session, *, limit: int, lease_seconds: float, now: datetime | None = None) -> list[int]:
    """Lease due, unreceipted outgoing hops (oldest due first); the caller commits, then sends."""
    now = now or utcnow()
    query = (
        select(Hop)
        .where(
            Hop.direction == "out", Hop.receipt.is_(None), Hop.dead_at.is_(None), Hop.next_attempt_at <= now
        )
        .order_by(Hop.next_attempt_at, Hop.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query).all())
    for row in rows:
        row.next_attempt_at = now + timedelta(seconds=lease_seconds)
    session.flush()
    return [r.id for r in rows]


@dataclass(frozen=True)
class HopJob:
    """One signed POST to a peer: a single hop (``hop_ids`` of one), or a batch of message hops to
    ``/v1/hop/messages/batches`` with, in ``singles``, the same hops as single POSTs, sent instead if the peer
    does not take the batch (a node without the batch endpoint, or one that refuses the request as a whole)."""

    hop_ids: tuple[int, ...]
    peer: str  # the peer's base URL
    url: str
    body: bytes
    headers: dict[str, str]
    singles: tuple[tuple[int, bytes], ...] = ()  # (hop id, body): signed only if they are to be sent
    signer: KeyPair | None = None


@dataclass(frozen=True)
class HopOutcome:
    hop_id: int
    receipt: str | None = None
    error: str | None = None
    permanent: bool = False


def prepare(
    session: Session, keys: DatabaseKeyStore, ids: Sequence[int]
) -> tuple[list[HopJob], list[HopOutcome]]:
    """The signed requests of the still-open hops among ``ids``, in hop order, and outcomes already known.
    Consecutive message hops to one peer go as one batch of up to ``MAX_HOP_BATCH`` (one request signature);
    an event hop goes alone, between them, so that a peer learns of a message before what happened to it."""
    rows = session.execute(
        select(Hop, Message)
        .join(Message, Message.id == Hop.message_id)
        .where(Hop.id.in_(ids), Hop.receipt.is_(None), Hop.dead_at.is_(None))
        .order_by(Hop.id)
    ).all()
    jobs: list[HopJob] = []
    known: list[HopOutcome] = []
    if not rows:
        return jobs, known
    try:
        directory = live_directory(session).directory
    except SpocError as exc:  # no valid directory: nobody can be reached now; retried later
        return jobs, [HopOutcome(hop.id, error=exc.detail) for hop, _ in rows]
    signer = keys.signing_key(TRANSPORT_PARTY)
    steps = origin_custody(session, [message for hop, message in rows if hop.event_id is None])
    runs: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # per peer: message hops not yet in a job

    def close(base: str) -> None:
        run = runs.pop(base, [])
        for start in range(0, len(run), MAX_HOP_BATCH):
            jobs.append(_batch(base, run[start : start + MAX_HOP_BATCH], signer))

    for hop, message in rows:
        peer = directory.node(hop.peer_node)
        if peer is None:
            known.append(HopOutcome(hop.id, error=f"node {hop.peer_node} left the regional directory"))
            continue
        base = peer.base_url.rstrip("/")
        if hop.event_id is not None:  # an event: the token signed when it was made, the same bytes every time
            close(base)
            jobs.append(_signed((hop.id,), base, EVENTS_PATH, orjson.dumps({"event": hop.event}), signer))
            continue
        body = hop_body(session, keys, message, sender_key=hop.sender_key, custody=steps[message.id])
        runs.setdefault(base, []).append((hop.id, body))
    for base in list(runs):
        close(base)
    return jobs, known


def _batch(base: str, hops: Sequence[tuple[int, dict[str, Any]]], signer: KeyPair) -> HopJob:
    """One POST for ``hops`` to the peer at ``base``: the batch, with each hop alone as its fallback."""
    if len(hops) == 1:
        return _signed((hops[0][0],), base, HOP_PATH, orjson.dumps(hops[0][1]), signer)
    body = orjson.dumps({"hops": [b for _, b in hops]})
    singles = tuple((i, orjson.dumps(b)) for i, b in hops)
    job = _signed(tuple(i for i, _ in hops), base, HOP_BATCH_PATH, body, signer)
    return replace(job, singles=singles, signer=signer)


def _signed(hop_ids: tuple[int, ...], base: str, path: str, body: bytes, signer: KeyPair) -> HopJob:
    headers = {"content-type": "application/json"}
    sign_request("POST", base + path, headers, body, key=signer, label=NODE_LABEL)
    return HopJob(hop_ids, base, base + path, body, headers)


def send(jobs: Sequence[HopJob], *, client: httpx.Client, concurrency: int = 1) -> list[HopOutcome]:
    """POST every job (no transaction open); what came back, never the peer's text beyond its problem reason.
    Never raises: each failure is an outcome. Each peer's jobs go one after the other, in order (a message
    before the events about it); up to ``concurrency`` peers at a time."""
    by_peer: dict[str, list[HopJob]] = {}
    for job in jobs:
        by_peer.setdefault(job.peer, []).append(job)
    if not by_peer:
        return []

    def in_order(peer_jobs: list[HopJob]) -> list[HopOutcome]:
        return [outcome for job in peer_jobs for outcome in _send(job, client)]

    with ThreadPoolExecutor(max_workers=min(concurrency, len(by_peer))) as pool:
        return [outcome for outcomes in pool.map(in_order, by_peer.values()) for outcome in outcomes]


def _send(job: HopJob, client: httpx.Client) -> list[HopOutcome]:
    try:
        answer = client.post(job.url, content=job.body, headers=job.headers)
    except httpx.HTTPError as exc:
        return [HopOutcome(i, error=f"{type(exc).__name__} reaching the peer node") for i in job.hop_ids]
    if not job.singles:
        return [_outcome(job.hop_ids[0], answer)]
    if answer.status_code == 200:
        try:
            results = answer.json()["results"]
            if not isinstance(results, list) or len(results) != len(job.hop_ids):
                raise ValueError("not one result per hop")
            return [_item(i, r) for i, r in zip(job.hop_ids, results, strict=True)]
        except (ValueError, KeyError, TypeError):
            return [HopOutcome(i, error="no receipts in the peer node's answer") for i in job.hop_ids]
    if answer.status_code in (401, 403) or not 400 <= answer.status_code < 500:
        # The request as a whole (its signature; the peer down or failing): each hop as it would fare alone.
        return [_outcome(i, answer) for i in job.hop_ids]
    # Any other refusal of the batch as a whole (no batch endpoint there, a batch too large...): each hop alone,
    # so that one hop's fate is never decided by the others'.
    assert job.signer is not None  # noqa: S101 - a batch always carries its signer
    singles = [_signed((i,), job.peer, HOP_PATH, body, job.signer) for i, body in job.singles]
    return [outcome for single in singles for outcome in _send(single, client)]


def _item(hop_id: int, result: Any) -> HopOutcome:
    """One hop's slot of a batch answer: its receipt, or its refusal judged as a single hop's would be."""
    status, receipt = result.get("status"), result.get("receipt")
    if status == 200 and isinstance(receipt, str):
        return HopOutcome(hop_id, receipt=receipt)
    if status == 200 or not isinstance(status, int):
        return HopOutcome(hop_id, error="no receipt in the peer node's answer")
    problem = result.get("problem")
    reason = safe_reason(problem.get("reason") if isinstance(problem, dict) else None)
    return _refused(hop_id, status, reason)


def _outcome(hop_id: int, answer: httpx.Response) -> HopOutcome:
    if answer.status_code == 200 and answer.headers.get("content-type", "").startswith("application/json"):
        document = answer.json()
        token = document.get("receipt") if isinstance(document, dict) else None
        if isinstance(token, str):
            return HopOutcome(hop_id, receipt=token)
        return HopOutcome(hop_id, error="no receipt in the peer node's answer")
    return _refused(hop_id, answer.status_code, problem_reason(answer))


def _refused(hop_id: int, status: int, reason: str | None) -> HopOutcome:
    # A 4xx is final (the peer will refuse the same bytes again), except a timeout, too-early or rate limit,
    # and a 409 with no reason: a unique key that lost a race with a concurrent request, nothing kept, so
    # the same hop succeeds on a retry (the peer's own conflicts name a reason, e.g. hop-replayed).
    permanent = (
        400 <= status < 500 and status not in (408, 425, 429) and not (status == 409 and reason is None)
    )
    error = f"the peer node answered {status}" + (f" ({reason})" if reason else "")
    return HopOutcome(hop_id, error=error, permanent=permanent)


def settle(
    session: Session,
    outcomes: Sequence[HopOutcome],
    settings: Settings,
    *,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> dict[str, int]:
    """Record what each hop achieved; counts by result (sent, retry, dead, skipped)."""
    now = now or utcnow()
    counts = {"sent": 0, "retry": 0, "dead": 0, "skipped": 0}
    by_id = {o.hop_id: o for o in outcomes}
    if not by_id:
        return counts
    query = (
        select(Hop, Message)
        .join(Message, Message.id == Hop.message_id)
        .where(Hop.id.in_(by_id))
        .options(defer(Message.envelope))  # a receipt names the message's id and digest, never its content
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Hop)
    directory: RegionDirectory | None = None
    me: DirectoryNode | None = None
    for hop, message in session.execute(query.order_by(Hop.id)).all():
        outcome = by_id[hop.id]
        if hop.receipt is not None or hop.dead_at is not None:
            counts["skipped"] += 1
            continue
        hop.attempts += 1
        error = outcome.error
        if outcome.receipt is not None:
            try:
                directory = directory or live_directory(session).directory
                me = me or this_node(session, directory)
                peer = directory.node(hop.peer_node)
                if peer is None:
                    raise HopFailed(f"node {hop.peer_node} left the regional directory")
                statement = check_receipt(
                    outcome.receipt,
                    peer=peer,
                    me=me,
                    message=message,
                    event_id=hop.event_id,
                    digest=hop.digest,
                )
            except SpocError as exc:
                error = exc.detail
            else:
                hop.receipt, hop.next_attempt_at, hop.last_error = outcome.receipt, None, None
                record(
                    session,
                    actor=SYSTEM,
                    action=AuditAction.HOP_SENT,
                    object_type="message",
                    object_id=message.id,
                    countries=[message.origin_country, message.destination_country],
                    details={
                        "to_node": hop.peer_node,
                        "digest": hop.digest,
                        "received_at": statement.get("received_at"),
                        "attempts": hop.attempts,
                        **_event_details(hop, message),
                    },
                )
                counts["sent"] += 1
                continue
        hop.last_error = (error or "unknown error")[:500]
        if outcome.permanent or hop.attempts >= settings.push_max_attempts:
            _dead_letter(session, hop, message, now=now)
            counts["dead"] += 1
            continue
        delay = backoff(
            hop.attempts,
            base=settings.push_backoff_base_seconds,
            cap=settings.push_backoff_cap_seconds,
            rng=rng,
        )
        hop.next_attempt_at = now + timedelta(seconds=delay)
        counts["retry"] += 1
    session.flush()
    return counts


def _dead_letter(session: Session, hop: Hop, message: Message, *, now: datetime) -> None:
    """Give up: the origin's officers learn that the message did not reach the other node, and why."""
    hop.dead_at, hop.next_attempt_at = now, None
    record(
        session,
        actor=SYSTEM,
        action=AuditAction.HOP_DEAD_LETTERED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        outcome="dead-lettered",
        details={
            "to_node": hop.peer_node,
            "attempts": hop.attempts,
            "error": hop.last_error,
            **_event_details(hop, message),
        },
    )
    if hop.event_id is None:
        cp, what = contact_point_for(session, message.origin_country), f"{message.type} {message.id}"
    else:  # the contact point whose decision the peer did not learn
        kind = EventKind(str(hop.event_kind))
        cp, what = (
            contact_point_for(session, acting_country(message, kind)),
            f"the '{kind}' event of {message.id}",
        )
    notify(
        session,
        contact_point_id=cp.id,
        kind="hop-dead-letter",
        message_id=message.id,
        text=f"{what} did not reach node {hop.peer_node} after {hop.attempts} attempts: {hop.last_error}",
    )


def _event_details(hop: Hop, message: Message) -> dict[str, str]:
    """An event hop's audit details beside a message hop's: which event, and the message's own digest."""
    if hop.event_id is None:
        return {}
    return {"event_id": hop.event_id, "kind": str(hop.event_kind), "message_digest": message.digest}


def hop_batch(
    factory: sessionmaker[Session],
    master: MasterKey,
    ids: list[int],
    settings: Settings,
    client: httpx.Client,
) -> dict[str, int]:
    """Prepare (read), send (no transaction), settle (write) the hops ``ids``; counts by result."""
    with unit_of_work(factory) as session:
        jobs, known = prepare(session, DatabaseKeyStore(session, master), ids)
    outcomes = known + send(jobs, client=client, concurrency=settings.push_concurrency)
    with unit_of_work(factory) as session:
        return settle(session, outcomes, settings)


def claim_due(factory: sessionmaker[Session], settings: Settings) -> list[int]:
    with unit_of_work(factory) as session:
        return claim(session, limit=settings.push_batch_size, lease_seconds=settings.push_lease_seconds)


def hop_all_due(
    factory: sessionmaker[Session], master: MasterKey, settings: Settings, client: httpx.Client
) -> dict[str, int]:
    """Every due hop, batch after batch, in this process (tests, the CLI); counts by result."""
    return all_due(
        lambda: claim_due(factory, settings),
        lambda ids: hop_batch(factory, master, ids, settings, client),
        ("sent", "retry", "dead", "skipped"),
    )
