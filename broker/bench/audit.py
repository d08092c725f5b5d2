"""``spoc bench --audit-only``: the audit log alone, on a fresh PostgreSQL database, against the same run's
PostgreSQL batched-rows limit.

Entries like the exchange's (a message id, two countries, a request id, details with a type, category,
classification, legal basis and digest) are queued in one bulk statement, as many committed transactions
would have left them; the timed parts are what the log itself does:

* **append**: the real sequencer (``sequence_all``, the beat task's batch size) hashing them into leaves,
  chain links and tree nodes, until the queue is empty;
* **verify**: the real full verification (``verify_log``) recomputing every leaf, link, node and
  checkpoint root and checking every entry against the bytes it hashed.

The ratio the issue sets (appends >= 0.5 x batched rows/s) uses ``limits.postgres_inserts_per_s`` with
500 rows per commit, measured in this run: the median of three one-second samples (before, between and
after the timed parts).
"""

from __future__ import annotations

import datetime
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from broker.audit.service import sequence_all, verify_log
from broker.bench import limits
from broker.bench.stack import database
from broker.config import Settings
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.migrate import upgrade

__all__ = ["audit_rows", "queue_entries", "run_audit"]

Say = Callable[[str], None]


def queue_entries(dsn: str, count: int) -> None:
    """Queue ``count`` exchange-like entries (and their ``audit_pending`` rows) in one statement."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "WITH e AS (INSERT INTO audit_entries "
            "(at, actor, role, action, object_type, object_id, countries, outcome, request_id, details) "
            "SELECT clock_timestamp(), 'AL-ASP', 'agency', 'message:submitted', 'message', "
            "gen_random_uuid()::text, '[\"AL\", \"MK\"]'::jsonb, 'ok', gen_random_uuid()::text, "
            "jsonb_build_object('type', 'request', 'category', 'fraud', 'classification', 'RESTRICTED', "
            "'legal_basis', 'bilateral police-cooperation agreement', "
            "'digest', 'sha-256:' || md5(g::text) || md5((g + 1)::text)) "
            "FROM generate_series(1, %s) g RETURNING id) "
            "INSERT INTO audit_pending (entry_id) SELECT id FROM e",
            (count,),
        )


def run_audit(entries: int, say: Say, *, batch: int | None = None) -> dict[str, Any]:
    """Append ``entries`` entries with the real sequencer and verify the whole log; the figures beside the
    PostgreSQL batched-rows limit of this run."""
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "entries": entries,
    }
    with database() as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        settings = Settings(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", data_dir=Path()
        )
        upgrade(settings)
        batch = batch or settings.audit_batch_size
        say("limit: PostgreSQL batched rows/s")
        samples = [limits.postgres_inserts_per_s(dsn, seconds=1.0, batch=500)]
        say(f"queueing {entries} entries")
        queue_entries(dsn, entries)
        engine = make_engine(settings)
        factory = make_sessionmaker(engine)
        try:
            say(f"append: the sequencer, batches of {batch}")
            cpu, begun = time.process_time(), time.perf_counter()
            with unit_of_work(factory) as session:
                appended = sequence_all(session, batch=batch)
            seconds = time.perf_counter() - begun
            out["append"] = {
                "entries": appended,
                "batch": batch,
                "seconds": round(seconds, 3),
                "entries_per_s": round(appended / seconds, 1),
                "python_cpu_s": round(time.process_time() - cpu, 3),
            }
            samples.append(limits.postgres_inserts_per_s(dsn, seconds=1.0, batch=500))
            say("verify: the whole log")
            cpu, begun = time.process_time(), time.perf_counter()
            with unit_of_work(factory) as session:
                report = verify_log(session)
            seconds = time.perf_counter() - begun
            out["verify"] = {
                "ok": report.ok,
                "size": report.size,
                "seconds": round(seconds, 3),
                "entries_per_s": round(report.size / seconds, 1),
                "python_cpu_s": round(time.process_time() - cpu, 3),
                "problem": report.problem,
            }
            samples.append(limits.postgres_inserts_per_s(dsn, seconds=1.0, batch=500))
        finally:
            engine.dispose()
    # The limit varies by tens of percent from second to second on a shared machine: three samples, one
    # before, one between and one after the timed parts, and their median is the denominator.
    out["postgres_batched_rows_samples"] = [round(x) for x in samples]
    out["postgres_batched_rows_per_s"] = sorted(samples)[len(samples) // 2]
    out["append_vs_postgres_batched"] = round(
        out["append"]["entries_per_s"] / out["postgres_batched_rows_per_s"], 3
    )
    return out


def audit_rows(found: dict[str, Any]) -> list[tuple[str, str]]:
    """The audit figures as (measure, figure) lines."""
    append, verify = found["append"], found["verify"]
    return [
        (
            "limit: PostgreSQL batched rows/s (500 per commit, median of 3)",
            f"{found['postgres_batched_rows_per_s']:,.0f} (samples {found['postgres_batched_rows_samples']})",
        ),
        (
            f"audit appends/s ({append['entries']:,} entries, sequencer batches of {append['batch']})",
            f"{append['entries_per_s']:,.0f} ({append['python_cpu_s']:.2f} s of sequencer CPU in "
            f"{append['seconds']:.2f} s)",
        ),
        (
            "ratio: audit append vs postgres batched",
            f"{found['append_vs_postgres_batched']:.2f} (target 0.5)",
        ),
        (
            f"audit full verification entries/s ({verify['size']:,} entries, {'ok' if verify['ok'] else 'FAILED'})",
            f"{verify['entries_per_s']:,.0f} ({verify['python_cpu_s']:.2f} s of verifier CPU in "
            f"{verify['seconds']:.2f} s; target 100,000)",
        ),
    ]
