"""Audit-log figures for the benchmark: append rate, proof latency at the log's size, full verification rate.

``measure(session_factory, n)`` is what ``broker.bench`` calls; ``hammer`` is one concurrent writer (the
concurrency test runs several as separate processes). From a shell::

    SPOC_DATABASE_URL=postgresql+psycopg://... python -m broker.audit.bench --entries 100000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, Actor, record, sequence_all, verify_log
from broker.audit.tree import StoredTree
from broker.db import unit_of_work


def write_entries(
    factory: sessionmaker[Session], n: int, *, batch: int, actor: Actor = SYSTEM, tag: str = "bench"
) -> list[int]:
    """Record ``n`` synthetic entries, ``batch`` per committed transaction; their ids."""
    ids: list[int] = []
    written = 0
    while written < n:
        with unit_of_work(factory) as session:
            entries = [
                record(
                    session,
                    actor=actor,
                    action=AuditAction.MESSAGE_QUEUED,
                    object_type="message",
                    object_id=f"{tag}-{written + i}",
                    countries=["AL", "RS"],
                )
                for i in range(min(batch, n - written))
            ]
            session.flush()  # one batched INSERT of the entries and their queue rows
            ids.extend(e.id for e in entries)
        written = len(ids)
    return ids


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def measure(
    session_factory: sessionmaker[Session], n: int, *, batch: int = 1000, proofs: int = 50
) -> dict[str, Any]:
    """Write ``n`` entries (transactions of ``batch``), sequence them, then time proofs and verification.

    * ``entries_appended_per_s``: the sequencer's rate (leaf hashes, chain links, subtree nodes, queue);
    * ``inclusion_proof_ms`` / ``consistency_proof_ms``: median time to build a proof from the stored
      tree at the log's full size (random leaves / random older sizes);
    * ``verify_entries_per_s``: full recomputation of every leaf, link, node and checkpoint root.
    """
    begun = time.perf_counter()
    write_entries(session_factory, n, batch=batch)
    wrote = time.perf_counter() - begun
    begun = time.perf_counter()
    with unit_of_work(session_factory) as session:
        appended = sequence_all(session)
    sequenced = time.perf_counter() - begun
    rng = random.Random(n)  # noqa: S311 - sampling positions, not secrets
    with unit_of_work(session_factory) as session:
        tree = StoredTree(session)
        size = tree.size()
        inclusion, consistency = [], []
        for _ in range(proofs):
            index = rng.randrange(size)
            t = time.perf_counter()
            tree.inclusion_proof(index, size)
            inclusion.append(time.perf_counter() - t)
            old = rng.randrange(1, size + 1)
            t = time.perf_counter()
            tree.consistency_proof(old, size)
            consistency.append(time.perf_counter() - t)
    begun = time.perf_counter()
    with unit_of_work(session_factory) as session:
        report = verify_log(session)
    verified = time.perf_counter() - begun
    return {
        "entries": n,
        "entries_written_per_s": round(n / wrote, 1),
        "entries_appended_per_s": round(appended / sequenced, 1) if sequenced else None,
        "log_size": size,
        "inclusion_proof_ms": _ms(inclusion),
        "consistency_proof_ms": _ms(consistency),
        "verify_entries_per_s": round(report.size / verified, 1) if verified else None,
        "verified": report.ok,
    }


def hammer(
    database_url: str, entries: int, *, tag: str, per_txn: int = 1, sequence_every: int = 20
) -> list[int]:
    """One writer as an API process or worker is: ``entries`` entries in small transactions of ``per_txn``,
    running the sequencer itself every ``sequence_every`` transactions (as the beat task does, concurrently
    with the others). Returns the ids it wrote."""
    from broker.config import Settings
    from broker.db import make_engine, make_sessionmaker

    engine = make_engine(Settings(database_url=database_url, db_pool_size=2))
    factory = make_sessionmaker(engine)
    ids: list[int] = []
    try:
        rounds = 0
        while len(ids) < entries:
            ids.extend(
                write_entries(
                    factory,
                    min(per_txn, entries - len(ids)),
                    batch=per_txn,
                    actor=Actor(tag, "system"),
                    tag=f"{tag}-{len(ids)}",
                )
            )
            rounds += 1
            if rounds % sequence_every == 0:
                with unit_of_work(factory) as session:
                    sequence_all(session, batch=500)
        with unit_of_work(factory) as session:
            sequence_all(session, batch=500)
    finally:
        engine.dispose()
    return ids


def main() -> None:
    """``python -m broker.audit.bench [--entries N]``: print ``measure`` as JSON for SPOC_DATABASE_URL."""
    from broker.config import get_settings
    from broker.db import make_engine, make_sessionmaker
    from broker.migrate import upgrade

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=20000)
    args = parser.parse_args()
    settings = get_settings()
    upgrade(settings)
    engine = make_engine(settings)
    try:
        result = measure(make_sessionmaker(engine), args.entries)
    finally:
        engine.dispose()
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
