"""Push delivery: POST a routed message to the agency's registered endpoint, retry, dead-letter.

Three steps, so that no database transaction is held open across a network call:

1. ``claim`` (one transaction): take up to ``limit`` due pending pushes (``SKIP LOCKED``) and push their
   ``next_attempt_at`` one lease ahead, so no other worker takes them meanwhile. A worker killed
   mid-push leaves them to be claimed again when the lease runs out.
2. ``prepare`` (a short read) and ``send`` (no transaction): each push is the same JSON document as a
   pull inbox item, signed by the destination contact point as an RFC 9421 HTTP message signature
   (``broker.crypto.httpsig``), sent concurrently with connect and read timeouts. The agency's endpoint
   verifies the signature, de-duplicates by message id (``broker.client.receiver``) and answers 2xx with
   ``{"receipt": <its signed receipt>}``.
3. ``settle`` (one transaction): a valid receipt makes the delivery ``delivered`` and acknowledged; a
   failure is retried after ``backoff`` (exponential, capped, jittered; a ``Retry-After`` is honoured)
   until ``push_max_attempts``; then, or at once for an answer that retrying cannot fix (4xx other
   than 408/429), the delivery is ``dead``: a dead letter in the destination officers' queue, with
   the last error, from where an officer retries or re-routes it (``broker.delivery.deadletters``).

At-least-once: the same push may reach the endpoint twice (a lost answer, a killed worker), never zero
times without a dead letter; the receiver's de-duplication by message id makes it exactly once there.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.config import Settings
from broker.crypto import KeyPair
from broker.crypto.httpsig import sign_request
from broker.db import utcnow
from broker.delivery.egress import EgressPolicy, GuardedTransport, PushTargetRefused
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.delivery.service import (
    ReceiptWindow,
    check_receipt,
    custody_by_message,
    inbox_document,
    mark_delivered,
    start_delivery,
)
from broker.directory.models import Agency
from broker.directory.service import contact_point_for
from broker.errors import SpocError
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.notifications import notify

__all__ = ["PushJob", "PushOutcome", "backoff", "claim", "make_client", "prepare", "send", "settle"]

MAX_ANSWER_BYTES = 64 * 1024
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class PushJob:
    item_id: int
    message_id: str
    agency_id: str
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class PushOutcome:
    item_id: int
    receipt: str | None = None
    error: str | None = None
    permanent: bool = False  # retrying cannot help: dead-letter now
    retry_after: float | None = None
    to_pull: bool = False  # no endpoint any more: deliver to the pull inbox instead


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: min(cap, base * 2**(attempts-1)), jittered to 50-100 %."""
    ceiling: float = min(cap, base * float(2 ** max(0, attempts - 1)))
    jitter: float = (rng or random).uniform(0, ceiling / 2)  # jitter spreads retries, it guards no secret
    return ceiling / 2 + jitter


def claim(session: Session, *, limit: int, lease_seconds: float, now: datetime | None = None) -> list[int]:
    """Take due pending pushes (oldest due first) and lease them; the caller commits, then sends."""
    now = now or utcnow()
    query = (
        select(InboxItem)
        .where(
            InboxItem.status == DeliveryStatus.PENDING,
            InboxItem.channel == Channel.PUSH,
            InboxItem.next_attempt_at <= now,
        )
        .order_by(InboxItem.next_attempt_at, InboxItem.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    items = list(session.scalars(query).all())
    for item in items:
        item.next_attempt_at = now + timedelta(seconds=lease_seconds)
    session.flush()
    return [i.id for i in items]


def prepare(
    session: Session, keys: DatabaseKeyStore, ids: Sequence[int]
) -> tuple[list[PushJob], list[PushOutcome]]:
    """The signed requests for the still-pending pushes among ``ids`` (three queries for the batch), and
    the outcomes already known: an agency that withdrew its endpoint gets the message in its pull inbox."""
    rows = session.execute(
        select(InboxItem, Message, Agency)
        .join(Message, Message.id == InboxItem.message_id)
        .join(Agency, Agency.id == InboxItem.agency_id)
        .where(InboxItem.id.in_(ids), InboxItem.status == DeliveryStatus.PENDING)
        .order_by(InboxItem.id)
    ).all()
    custody = custody_by_message(session, (m.id for _, m, _ in rows))
    signers: dict[str, KeyPair] = {}
    jobs, known = [], []
    for item, message, agency in rows:
        if not agency.push_url:
            known.append(PushOutcome(item.id, error="no push endpoint registered", to_pull=True))
            continue
        cp = f"{agency.country}-SPOC"
        if cp not in signers:
            signers[cp] = keys.signing_key(cp)
        body = orjson.dumps(inbox_document(item, message, custody.get(message.id, [])))
        headers = {"content-type": "application/json", "spoc-message-id": message.id}
        sign_request("POST", agency.push_url, headers, body, key=signers[cp])
        jobs.append(PushJob(item.id, message.id, agency.id, agency.push_url, body, headers))
    return jobs, known


def make_client(settings: Settings) -> httpx.Client:
    """The HTTP client of pushes: timeouts on every phase, no redirects, pooled connections, and only to
    the addresses ``broker.delivery.egress`` allows (checked after resolving, connected to as checked)."""
    limits = httpx.Limits(max_connections=settings.push_concurrency * 2)
    return httpx.Client(
        transport=GuardedTransport(EgressPolicy(settings.push_allowed_networks), limits=limits),
        timeout=httpx.Timeout(settings.push_timeout_seconds, connect=settings.push_connect_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "spoc-push/1"},
    )


def send(jobs: Sequence[PushJob], *, client: httpx.Client, concurrency: int) -> list[PushOutcome]:
    """POST every job, ``concurrency`` at a time; never raises (each failure is an outcome)."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(jobs))) as pool:
        return list(pool.map(lambda job: _send_one(job, client), jobs))


def _send_one(job: PushJob, client: httpx.Client) -> PushOutcome:
    try:
        with client.stream("POST", job.url, content=job.body, headers=job.headers) as response:
            answer = b""
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) > MAX_ANSWER_BYTES:
                    return PushOutcome(job.item_id, error="the endpoint's answer is too large")
    except PushTargetRefused as exc:  # nothing was sent; retrying the same address cannot help
        return PushOutcome(job.item_id, error=exc.detail, permanent=True)
    except httpx.TimeoutException as exc:
        return PushOutcome(job.item_id, error=f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        # The exception's kind only: its text can quote what the endpoint sent (a malformed answer).
        return PushOutcome(job.item_id, error=f"{type(exc).__name__}: the push did not complete")
    status = response.status_code
    if 200 <= status < 300:
        try:
            receipt = orjson.loads(answer).get("receipt")
        except (orjson.JSONDecodeError, AttributeError):
            receipt = None
        if not isinstance(receipt, str) or not receipt:
            return PushOutcome(job.item_id, error=f"HTTP {status} without a receipt")
        return PushOutcome(job.item_id, receipt=receipt)
    # The status and a fixed reason only, never the answer's body: an endpoint must not be able to
    # show officers (or the database) what some service answered to a signed POST.
    error = f"HTTP {status} from the endpoint (its answer is not kept)"
    retry_after = _retry_after(response.headers.get("retry-after"))
    permanent = 400 <= status < 500 and status not in RETRYABLE_STATUS
    return PushOutcome(job.item_id, error=error, permanent=permanent, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def settle(
    session: Session,
    keys: DatabaseKeyStore,
    outcomes: Sequence[PushOutcome],
    settings: Settings,
    *,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> dict[str, int]:
    """Record what each push achieved; returns counts by result (delivered, retry, dead, skipped)."""
    now = now or utcnow()
    counts = {"delivered": 0, "retry": 0, "dead": 0, "skipped": 0}
    if not outcomes:
        return counts
    by_id = {o.item_id: o for o in outcomes}
    query = (
        select(InboxItem, Message)
        .join(Message, Message.id == InboxItem.message_id)
        .where(InboxItem.id.in_(by_id))
        .order_by(InboxItem.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=InboxItem)
    for item, message in session.execute(query).all():
        outcome = by_id[item.id]
        if item.status != DeliveryStatus.PENDING:
            counts["skipped"] += 1  # settled by another run of the same push, or acknowledged over the API
            continue
        if outcome.to_pull:
            agency = session.get(Agency, item.agency_id)
            if agency is not None:
                start_delivery(session, message, agency, channel=Channel.PULL, item=item, now=now)
                counts["delivered"] += 1
                continue
        item.last_attempt_at = now
        item.attempts += 1
        error = outcome.error
        if outcome.receipt is not None:
            try:
                check_receipt(
                    keys, item.agency_id, message, outcome.receipt, window=ReceiptWindow.of(settings)
                )
            except SpocError as exc:
                error = f"the receipt does not verify: {exc.detail}"
            else:
                actor = Actor(item.agency_id, "agency")
                mark_delivered(session, item, message, receipt=outcome.receipt, actor=actor, channel="push")
                counts["delivered"] += 1
                continue
        item.last_error = (error or "unknown error")[:2000]
        if outcome.permanent or item.attempts >= settings.push_max_attempts:
            dead_letter(session, item, message, now=now)
            counts["dead"] += 1
            continue
        delay = backoff(
            item.attempts,
            base=settings.push_backoff_base_seconds,
            cap=settings.push_backoff_cap_seconds,
            rng=rng,
        )
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, settings.push_backoff_cap_seconds))
        item.next_attempt_at = now + timedelta(seconds=delay)
        counts["retry"] += 1
    session.flush()
    return counts


def dead_letter(session: Session, item: InboxItem, message: Message, *, now: datetime) -> None:
    """Give up pushing: the delivery waits in the destination officers' queue, with its last error."""
    item.status = DeliveryStatus.DEAD
    item.next_attempt_at = None
    # TODO(audit owner): a dedicated "delivery:dead-lettered" tag; until then the delivery tag, outcome dead.
    record(
        session,
        actor=Actor("spoc", "system"),
        action=AuditAction.MESSAGE_DELIVERED,
        object_type="message",
        object_id=message.id,
        countries=[message.origin_country, message.destination_country],
        outcome="dead-lettered",
        details={"agency": item.agency_id, "channel": item.channel, "attempts": item.attempts},
    )
    # The destination officers must learn of it: the dead letter waits for them to retry or re-route it.
    cp = contact_point_for(session, message.destination_country)
    notify(
        session,
        contact_point_id=cp.id,
        kind="dead-letter",
        message_id=message.id,
        text=(
            f"Delivery of {message.type} {message.id[:8]} to {item.agency_id} failed after "
            f"{item.attempts} attempt{'s' if item.attempts != 1 else ''}: retry or re-route it "
            "under Dead letters."
        ),
    )
