"""Celery tasks. Each is idempotent, takes ids (never objects), and owns its transaction.

``relay`` claims outbox rows and commits *before* it sends the batch tasks, so a task can never run
ahead of the commit that made its work; if sending fails (Redis down) or a task is lost (Redis flushed,
worker killed), the rows are claimed again after ``outbox_redispatch_seconds``. ``dispatch`` does the
same for due pushes and hops to peer nodes, whose lease (``push_lease_seconds``) plays that part. Beat
tasks (relay, dispatch, purge) never retry: the next tick is their retry.
"""

from __future__ import annotations

import logging

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from broker.audit.service import sequence_all
from broker.config import get_settings
from broker.db import unit_of_work
from broker.delivery.runner import claim_due, push_batch
from broker.hop.outbound import claim_due as claim_due_hops
from broker.hop.outbound import hop_batch
from broker.keys.service import DatabaseKeyStore, forget_old_nonces
from broker.messages import idempotency
from broker.messages.work import process as process_rows
from broker.ops.metrics import count_deliveries
from broker.outbox import service as outbox
from workers.celery_app import app
from workers.runtime import http, peer_http, runtime

log = logging.getLogger("spoc.workers")
# Outbox rows per ``process`` task. Each batch pays a dozen statements whatever its size (claim, prefetch, the
# set-based step, the done marks, commit) and one Celery task, plus the ``dispatch`` it sends: 100 halves that
# per message against 50, and the relay's 200 rows a tick still make two tasks, one per worker process.
BATCH = 100
MAX_DISPATCH_ROUNDS = 20  # one dispatch hands over at most this many push batches
MAX_RELAY_ROUNDS = 20  # one relay tick claims at most this many times outbox_batch_size rows
IN_FLIGHT_BATCHES = 10  # ... and claims again only while fewer rows than this many claims wait for workers


class SpocTask(Task):  # type: ignore[type-arg]  # celery-types: Task is generic in its call signature
    """Base task: JSON arguments, late acks, bounded retries on connection errors only."""

    acks_late = True
    autoretry_for: tuple[type[Exception], ...] = (
        ConnectionError,
        TimeoutError,
        OperationalError,
        InterfaceError,
    )
    retry_backoff = True
    retry_backoff_max = 30
    max_retries = 5


class BeatTask(SpocTask):
    """A task beat sends every tick: no retries of its own (the next tick retries)."""

    autoretry_for = ()


@app.task(name="spoc.outbox.relay", base=BeatTask)
def relay() -> int:
    """Hand over due outbox rows, ``outbox_batch_size`` per claim, claim after claim while they come full.

    One claim a tick capped the whole exchange at ``outbox_batch_size`` rows per beat interval: a message
    that crosses both contact points needs two rows (forward, deliver), so at the defaults no more than 100
    messages a second could move, whatever the workers could do. Each claim commits before its tasks are
    sent, as a single one did; ``MAX_RELAY_ROUNDS`` bounds a tick. Backpressure: after its first claim a tick
    claims again only while fewer than ``IN_FLIGHT_BATCHES`` claims' worth of rows wait for the workers, so a
    backlog never sits in Redis long enough to be handed over a second time (``outbox_redispatch_seconds``)."""
    settings = get_settings()
    total = 0
    for _ in range(MAX_RELAY_ROUNDS):
        with unit_of_work(runtime().sessionmaker) as session:
            waiting = outbox.in_flight(session, redispatch_after=settings.outbox_redispatch_seconds)
            if total and waiting >= IN_FLIGHT_BATCHES * settings.outbox_batch_size:
                break
            ids = outbox.claim(
                session, limit=settings.outbox_batch_size, redispatch_after=settings.outbox_redispatch_seconds
            )
        for start in range(0, len(ids), BATCH):
            process.delay(ids[start : start + BATCH])
        total += len(ids)
        if len(ids) < settings.outbox_batch_size:
            break
    return total


@app.task(name="spoc.outbox.process", base=SpocTask)
def process(ids: list[int]) -> int:
    with unit_of_work(runtime().sessionmaker) as session:
        done = process_rows(
            session,
            DatabaseKeyStore(session, runtime().master_key),
            ids,
            redispatch_after=get_settings().outbox_redispatch_seconds,
        )
    if done:
        dispatch.delay()  # pushes it scheduled go out now, not at the next tick
    return done


@app.task(name="spoc.delivery.dispatch", base=BeatTask)
def dispatch() -> int:
    """Lease due pushes and due hops to peer nodes batch by batch, and hand each batch to its task."""
    settings = get_settings()
    total = 0
    for claim, task in ((claim_due, push), (claim_due_hops, hop)):
        for _ in range(MAX_DISPATCH_ROUNDS):
            ids = claim(runtime().sessionmaker, settings)
            if not ids:
                break
            task.delay(ids)
            total += len(ids)
    return total


@app.task(name="spoc.hop.send", base=SpocTask)
def hop(ids: list[int]) -> dict[str, int]:
    """Send a batch of hops to peer nodes and record the outcomes (idempotent: settled rows are skipped)."""
    results = hop_batch(runtime().sessionmaker, runtime().master_key, ids, get_settings(), peer_http())
    count_deliveries("hop", results)
    return results


@app.task(name="spoc.delivery.push", base=SpocTask)
def push(ids: list[int]) -> dict[str, int]:
    """Push a batch to the agencies' endpoints and record the outcomes (idempotent: settled rows are skipped)."""
    results = push_batch(runtime().sessionmaker, runtime().master_key, ids, get_settings(), http())
    count_deliveries("push", results)
    return results


@app.task(name="spoc.audit.sequence", base=SpocTask)
def sequence() -> int:
    with unit_of_work(runtime().sessionmaker) as session:
        return sequence_all(session, batch=get_settings().audit_batch_size)


@app.task(name="spoc.maintenance.purge", base=BeatTask)
def purge() -> dict[str, int]:
    """Forget expired Idempotency-Keys, request nonces past the replay window, and old finished outbox rows."""
    settings = get_settings()
    with unit_of_work(runtime().sessionmaker) as session:
        return {
            "idempotency_keys": idempotency.purge(session, ttl_seconds=settings.idempotency_ttl_seconds),
            "nonces": forget_old_nonces(session, older_than_seconds=2 * settings.request_signature_max_age),
            "outbox_rows": outbox.purge_done(session, older_than_seconds=settings.outbox_keep_done_seconds),
        }
