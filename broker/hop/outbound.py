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
from typing import Any, Final, NamedTuple
from typing import cast as typing_cast

import httpx
import orjson
from sqlalchemy import Table, Text, bindparam, case, cast, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, record
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey, PublicKey
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.db import insert_all, new_row, unit_of_work, utcnow
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
    hop_bytes,
    live_directory,
    origin_custody,
    problem_reason,
    safe_reason,
    sender_key_token,
    this_node,
    transport_keys,
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

_HOPS = typing_cast(Table, Hop.__table__)


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
            new_row(
                Hop,
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
    """Lease due, unreceipted outgoing hops (oldest due first); the caller commits, then sends.

    One statement: ``UPDATE hops SET next_attempt_at = <lease end> WHERE id IN (<the due rows, oldest first,
    locked, skipping rows another worker holds>) RETURNING id`` (on PostgreSQL; elsewhere the read, then the
    UPDATE). The ids in hop order."""
    now = now or utcnow()
    due = (
        select(Hop.id)
        .where(
            Hop.direction == "out", Hop.receipt.is_(None), Hop.dead_at.is_(None), Hop.next_attempt_at <= now
        )
        .order_by(Hop.next_attempt_at, Hop.id)
        .limit(limit)
    )
    lease = update(_HOPS).values(next_attempt_at=now + timedelta(seconds=lease_seconds))
    if session.get_bind().dialect.name == "postgresql":
        leased = session.scalars(
            lease.where(_HOPS.c.id.in_(due.with_for_update(skip_locked=True).scalar_subquery())).returning(
                _HOPS.c.id
            )
        )
        return sorted(leased)
    ids = list(session.scalars(due))
    if ids:
        session.execute(lease.where(_HOPS.c.id.in_(ids)))
    return sorted(ids)


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
    rows = [
        _Sending._make(row)
        for row in session.execute(
            select(*_SENDING_COLUMNS)
            .join(Message, Message.id == Hop.message_id)
            .where(Hop.id.in_(ids), Hop.receipt.is_(None), Hop.dead_at.is_(None))
            .order_by(Hop.id)
        )
    ]
    jobs: list[HopJob] = []
    known: list[HopOutcome] = []
    if not rows:
        return jobs, known
    try:
        directory = live_directory(session).directory
    except SpocError as exc:  # no valid directory: nobody can be reached now; retried later
        return jobs, [HopOutcome(hop.id, error=exc.detail) for hop in rows]
    signer = keys.signing_key(TRANSPORT_PARTY)
    steps = origin_custody(session, {h.message_id: h.origin_country for h in rows if h.event_id is None})
    runs: dict[str, list[tuple[int, bytes]]] = {}  # per peer: message hops not yet in a job

    def close(base: str) -> None:
        run = runs.pop(base, [])
        for start in range(0, len(run), MAX_HOP_BATCH):
            jobs.append(_batch(base, run[start : start + MAX_HOP_BATCH], signer))

    for hop in rows:
        peer = directory.node(hop.peer_node)
        if peer is None:
            known.append(HopOutcome(hop.id, error=f"node {hop.peer_node} left the regional directory"))
            continue
        base = peer.base_url.rstrip("/")
        if hop.event_id is not None:  # an event: the token signed when it was made, the same bytes every time
            close(base)
            jobs.append(_signed((hop.id,), base, EVENTS_PATH, orjson.dumps({"event": hop.event}), signer))
            continue
        sender_key = hop.sender_key
        if sender_key is None:  # a hop queued without the statement: made now, as the hop goes out
            sender_key = sender_key_token(session, keys, session.get_one(Message, hop.message_id))
        assert hop.envelope is not None  # noqa: S101 - read for every message hop (_SENDING_COLUMNS)
        body = hop_bytes(hop.envelope, steps[hop.message_id], sender_key)
        runs.setdefault(base, []).append((hop.id, body))
    for base in list(runs):
        close(base)
    return jobs, known


class _Sending(NamedTuple):
    """What :func:`prepare` reads of a hop and its message (``_SENDING_COLUMNS``, in this order)."""

    id: int
    peer_node: str
    event_id: str | None
    event: str | None
    sender_key: str | None
    message_id: str
    origin_country: str
    envelope: str | None  # the envelope's JSON text, for a message hop only


_SENDING_COLUMNS: Final = (
    Hop.id,
    Hop.peer_node,
    Hop.event_id,
    Hop.event,
    Hop.sender_key,
    Hop.message_id,
    Message.origin_country,
    # As text: serialised into the hop as it is, never parsed here (``hop_bytes``). Not for an event hop.
    case((Hop.event_id.is_(None), cast(Message.envelope, Text)), else_=None),
)


def _batch(base: str, hops: Sequence[tuple[int, bytes]], signer: KeyPair) -> HopJob:
    """One POST for ``hops`` to the peer at ``base``: the batch, with each hop alone as its fallback (the same
    bytes: each hop is serialised once)."""
    if len(hops) == 1:
        return _signed((hops[0][0],), base, HOP_PATH, hops[0][1], signer)
    body = b'{"hops":[' + b",".join(b for _, b in hops) + b"]}"
    job = _signed(tuple(i for i, _ in hops), base, HOP_BATCH_PATH, body, signer)
    return replace(job, singles=tuple(hops), signer=signer)


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
    """Record what each hop achieved; counts by result (sent, retry, dead, skipped).

    Set-based: one read of the hops (locked, with the few columns of their messages that the receipts and
    the log name), then each hop judged alone exactly as before — its receipt verified under the peer's
    directory keys and checked to name this hop, else retried with backoff or dead-lettered — and one UPDATE
    for all of them (:func:`_update_hops`). The audit entries are made in hop order, as one hop at a time
    would make them, and written together at the flush."""
    now = now or utcnow()
    counts = {"sent": 0, "retry": 0, "dead": 0, "skipped": 0}
    by_id = {o.hop_id: o for o in outcomes}
    if not by_id:
        return counts
    query = (
        select(*_SETTLE_COLUMNS)
        .join(Message, Message.id == Hop.message_id)
        .where(Hop.id.in_(by_id))
        .order_by(Hop.id)
    )  # a receipt names the message's id and digest, never its content: the envelope stays unread
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Hop)
    judge = _Receipts(session)
    changes: list[dict[str, Any]] = []
    for row in map(_Settling._make, session.execute(query).all()):
        outcome = by_id[row.id]
        if row.receipt is not None or row.dead_at is not None:
            counts["skipped"] += 1
            continue
        attempts = row.attempts + 1
        error = outcome.error
        if outcome.receipt is not None:
            try:
                statement = judge.check(outcome.receipt, row)
            except SpocError as exc:
                error = exc.detail
            else:
                changes.append(_change(row.id, attempts, receipt=outcome.receipt))
                record(
                    session,
                    actor=SYSTEM,
                    action=AuditAction.HOP_SENT,
                    object_type="message",
                    object_id=row.message_id,
                    countries=[row.origin_country, row.destination_country],
                    details={
                        "to_node": row.peer_node,
                        "digest": row.digest,
                        "received_at": statement.get("received_at"),
                        "attempts": attempts,
                        **_event_details(row),
                    },
                )
                counts["sent"] += 1
                continue
        last_error = (error or "unknown error")[:500]
        if outcome.permanent or attempts >= settings.push_max_attempts:
            changes.append(_change(row.id, attempts, last_error=last_error, dead_at=now))
            _dead_letter(session, row, attempts=attempts, error=last_error)
            counts["dead"] += 1
            continue
        delay = backoff(
            attempts,
            base=settings.push_backoff_base_seconds,
            cap=settings.push_backoff_cap_seconds,
            rng=rng,
        )
        changes.append(
            _change(row.id, attempts, last_error=last_error, next_attempt_at=now + timedelta(seconds=delay))
        )
        counts["retry"] += 1
    _update_hops(session, changes)
    session.flush()
    return counts


class _Settling(NamedTuple):
    """What :func:`settle` reads of a hop and its message (``_SETTLE_COLUMNS``, in this order)."""

    id: int
    receipt: str | None
    dead_at: datetime | None
    attempts: int
    peer_node: str
    digest: str
    event_id: str | None
    event_kind: str | None
    message_id: str
    type: str
    origin_country: str
    destination_country: str
    message_digest: str


_SETTLE_COLUMNS: Final = (
    Hop.id,
    Hop.receipt,
    Hop.dead_at,
    Hop.attempts,
    Hop.peer_node,
    Hop.digest,
    Hop.event_id,
    Hop.event_kind,
    Message.id,
    Message.type,
    Message.origin_country,
    Message.destination_country,
    Message.digest,
)


class _Receipts:
    """The receipts of one settle step, each verified on its own; what they are checked against (the
    directory, this node, each peer's transport keys) is read once for the step, when the first is checked."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._directory: RegionDirectory | None = None
        self._me: DirectoryNode | None = None
        self._keys: dict[str, dict[str, PublicKey]] = {}

    def check(self, token: str, row: _Settling) -> dict[str, Any]:
        if self._directory is None or self._me is None:
            self._directory = live_directory(self._session).directory
            self._me = this_node(self._session, self._directory)
        peer = self._directory.node(row.peer_node)
        if peer is None:
            raise HopFailed(f"node {row.peer_node} left the regional directory")
        keys = self._keys.get(peer.node_id)
        if keys is None:
            keys = self._keys[peer.node_id] = transport_keys(peer)
        return check_receipt(
            token,
            peer=peer,
            me=self._me,
            message_id=row.message_id,
            digest=row.digest,
            event_id=row.event_id,
            keys=keys,
        )


def _change(
    hop_id: int,
    attempts: int,
    *,
    receipt: str | None = None,
    last_error: str | None = None,
    next_attempt_at: datetime | None = None,
    dead_at: datetime | None = None,
) -> dict[str, Any]:
    """A hop's columns after this attempt: receipted (no next attempt, no error), retried or dead."""
    return {
        "id": hop_id,
        "attempts": attempts,
        "receipt": receipt,
        "last_error": last_error,
        "next_attempt_at": next_attempt_at,
        "dead_at": dead_at,
    }


def _update_hops(session: Session, changes: Sequence[dict[str, Any]]) -> None:
    """Write the hops' new columns: on PostgreSQL one ``UPDATE hops … FROM unnest(<one array per column>)``
    for the whole step; elsewhere one UPDATE per hop (the driver's executemany). The rows were read ``FOR
    UPDATE`` in this transaction, so nothing else changed them since."""
    if not changes:
        return
    columns = [c for c in changes[0] if c != "id"]
    if session.get_bind().dialect.name != "postgresql":
        statement = (
            update(_HOPS).where(_HOPS.c.id == bindparam("hop_id")).values({c: bindparam(c) for c in columns})
        )
        session.execute(statement, [{"hop_id": c["id"], **{k: c[k] for k in columns}} for c in changes])
        return
    arrays = [
        bindparam(name, [c[name] for c in changes], type_=ARRAY(_HOPS.c[name].type))
        for name in ["id", *columns]
    ]
    given = func.unnest(*arrays).table_valued("id", *columns).render_derived(name="given")
    session.execute(update(_HOPS).where(_HOPS.c.id == given.c.id).values({c: given.c[c] for c in columns}))


def _dead_letter(session: Session, row: _Settling, *, attempts: int, error: str) -> None:
    """Give up: the origin's officers learn that the message did not reach the other node, and why."""
    record(
        session,
        actor=SYSTEM,
        action=AuditAction.HOP_DEAD_LETTERED,
        object_type="message",
        object_id=row.message_id,
        countries=[row.origin_country, row.destination_country],
        outcome="dead-lettered",
        details={
            "to_node": row.peer_node,
            "attempts": attempts,
            "error": error,
            **_event_details(row),
        },
    )
    if row.event_id is None:
        country, what = row.origin_country, f"{row.type} {row.message_id}"
    else:  # the contact point whose decision the peer did not learn
        kind = EventKind(str(row.event_kind))
        country, what = acting_country(row, kind), f"the '{kind}' event of {row.message_id}"
    notify(
        session,
        contact_point_id=contact_point_for(session, country).id,
        kind="hop-dead-letter",
        message_id=row.message_id,
        text=f"{what} did not reach node {row.peer_node} after {attempts} attempts: {error}",
    )


def _event_details(row: _Settling) -> dict[str, str]:
    """An event hop's audit details beside a message hop's: which event, and the message's own digest."""
    if row.event_id is None:
        return {}
    return {"event_id": row.event_id, "kind": str(row.event_kind), "message_digest": row.message_digest}


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
        return claim(session, limit=settings.hop_batch_size, lease_seconds=settings.push_lease_seconds)


def hop_all_due(
    factory: sessionmaker[Session], master: MasterKey, settings: Settings, client: httpx.Client
) -> dict[str, int]:
    """Every due hop, batch after batch, in this process (tests, the CLI); counts by result."""
    return all_due(
        lambda: claim_due(factory, settings),
        lambda ids: hop_batch(factory, master, ids, settings, client),
        ("sent", "retry", "dead", "skipped"),
    )
