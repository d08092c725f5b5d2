"""The edges of push delivery: each step in its own unit of work, no transaction across a network call.

The worker's tasks (``workers.tasks``) and the in-process tests call these; there is one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpx
from sqlalchemy.orm import Session, sessionmaker

from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import unit_of_work
from broker.delivery import push
from broker.keys.service import DatabaseKeyStore


def claim_due(factory: sessionmaker[Session], settings: Settings) -> list[int]:
    """Lease a batch of due pushes (committed before anything is sent)."""
    with unit_of_work(factory) as session:
        return push.claim(session, limit=settings.push_batch_size, lease_seconds=settings.push_lease_seconds)


def push_batch(
    factory: sessionmaker[Session],
    master: MasterKey,
    ids: list[int],
    settings: Settings,
    client: httpx.Client,
) -> dict[str, int]:
    """Prepare (read), send (no transaction), settle (write) the pushes ``ids``; counts by result."""
    with unit_of_work(factory) as session:
        jobs, known = push.prepare(session, DatabaseKeyStore(session, master), ids)
    outcomes = known + push.send(jobs, client=client, concurrency=settings.push_concurrency)
    with unit_of_work(factory) as session:
        return push.settle(session, DatabaseKeyStore(session, master), outcomes, settings)


def all_due(
    claim: Callable[[], list[int]], batch: Callable[[list[int]], dict[str, int]], results: Iterable[str]
) -> dict[str, int]:
    """Claim and run batches until nothing is due (tests, the CLI; workers run one batch per task); counts by
    result. Shared by pushes to agencies and hops to peer nodes, which have the same lease-send-settle shape."""
    totals = dict.fromkeys(results, 0)
    while ids := claim():
        for name, count in batch(ids).items():
            totals[name] += count
    return totals


def push_all_due(
    factory: sessionmaker[Session], master: MasterKey, settings: Settings, client: httpx.Client
) -> dict[str, int]:
    """Every due push, batch after batch, in this process; counts by result."""
    return all_due(
        lambda: claim_due(factory, settings),
        lambda ids: push_batch(factory, master, ids, settings, client),
        ("delivered", "retry", "dead", "skipped"),
    )
