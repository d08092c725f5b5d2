"""One benchmark run: the machine's limits, then the exchange under load, then the ratios and a chart."""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, select

from broker.audit.models import AuditPending
from broker.audit.service import sequence_all, verify_log
from broker.bench import cpu, limits
from broker.bench.audit import queue_entries
from broker.bench.load import ROUTES, log_in_officers, officers_until_done, plan
from broker.bench.pool import LoadPool, measure_generator
from broker.bench.stack import Stack, running
from broker.crypto.bench import primitive_rates
from broker.db import make_engine, make_sessionmaker, unit_of_work

Say = Callable[[str], None]


def measure_limits(stack: Stack, say: Say) -> dict[str, Any]:
    say("limits: crypto")
    raw = primitive_rates(1.0)
    out: dict[str, Any] = {
        "ed25519_verify_raw_per_s": raw["ed25519_verify"],
        "ed25519_sign_raw_per_s": raw["ed25519_sign"],
        "envelope_verify_per_s": limits.ed25519_verify_per_s(1.0),
        "jwe_open_per_s": limits.jwe_open_per_s(1.0),
        "jwe_seal_3_readers_per_s": limits.jwe_seal_per_s(1.0),
    }
    say("limits: PostgreSQL, Redis")
    out["postgres_single_row_commits_per_s"] = limits.postgres_inserts_per_s(stack.dsn, seconds=1.0)
    out["postgres_batched_rows_per_s"] = limits.postgres_inserts_per_s(stack.dsn, seconds=1.0, batch=500)
    out["redis_round_trips_per_s"] = limits.redis_round_trips_per_s(stack.redis_url, seconds=1.0)
    say("limits: Celery trivial tasks")
    out["celery_trivial_tasks_per_s"] = limits.celery_trivial_tasks_per_s(stack.redis_url)
    say("limits: RabbitMQ bare queue")
    out["rabbitmq_bare_queue_msgs_per_s"] = limits.rabbitmq_bare_queue_per_s(
        "amqp://guest:guest@127.0.0.1:5672//", messages=3000
    )
    return out


def measure_audit(stack: Stack, say: Say, *, entries: int) -> dict[str, Any]:
    """Queue ``entries`` audit entries, then time the sequencer appending that backlog to the log, and a
    full verification of the whole log (the exchange's entries included).

    The entries are queued by one bulk statement (``broker.bench.audit.queue_entries``), so the backlog
    appears at once: the stack's own beat sequencer and this one then compete for it under the same lock,
    and the rate is the backlog divided by the time until the queue is empty, whoever appended it.

    The PostgreSQL batched-rows limit the appends are compared with is sampled beside them, on the log's
    database at its size by then (once before, between and after the timed parts; the median counts, as in
    ``spoc bench --audit-only``): the run's first sample, minutes earlier on an empty database, varies by
    tens of percent from second to second on a shared machine.
    """
    say(f"audit: {entries} entries")
    engine = make_engine(stack.settings)
    factory = make_sessionmaker(engine)
    samples = [limits.postgres_inserts_per_s(stack.dsn, seconds=1.0, batch=500)]
    try:
        queue_entries(stack.dsn, entries)
        begun = time.perf_counter()
        with unit_of_work(factory) as session:
            sequence_all(session, batch=stack.settings.audit_batch_size)
        while True:
            with unit_of_work(factory) as session:
                if not session.scalar(select(func.count()).select_from(AuditPending)):
                    break
            time.sleep(0.01)
        sequenced = time.perf_counter() - begun
        samples.append(limits.postgres_inserts_per_s(stack.dsn, seconds=1.0, batch=500))
        begun = time.perf_counter()
        with unit_of_work(factory) as session:
            report = verify_log(session)
        verified = time.perf_counter() - begun
        samples.append(limits.postgres_inserts_per_s(stack.dsn, seconds=1.0, batch=500))
        result: dict[str, Any] = {
            "entries": entries,
            "entries_appended_per_s": entries / sequenced if sequenced else None,
            "postgres_batched_rows_samples": [round(x) for x in samples],
            "postgres_batched_rows_per_s": sorted(samples)[len(samples) // 2],
            "log_size": report.size,
            "verify_entries_per_s": report.size / verified if verified else None,
            "verified": report.ok,
        }
        if report.size:
            result["inclusion_proof_ms"] = _proof_time(factory, report.size)
        return result
    finally:
        engine.dispose()


def _proof_time(factory: Any, size: int) -> float:
    """Median inclusion-proof time (ms) at the log's size: first, middle and last leaf."""
    from broker.audit.merkle import inclusion_proof_for_bench

    with unit_of_work(factory) as session:
        samples = []
        for index in (0, size // 2, size - 1):
            begun = time.perf_counter()
            inclusion_proof_for_bench(session, index, size)
            samples.append((time.perf_counter() - begun) * 1000)
    return statistics.median(samples)


def delivered_stats(dsn: str, message_ids: list[str]) -> dict[str, Any]:
    """End-to-end figures from the server's own timestamps (received_at → delivered_at)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT m.received_at, i.delivered_at FROM messages m JOIN inbox_items i ON i.message_id = m.id "
            "WHERE m.id = ANY(%s)",
            (message_ids,),
        ).fetchall()
    if not rows:
        return {"delivered": 0}
    first = min(r[0] for r in rows)
    last = max(r[1] for r in rows)
    latencies = sorted((r[1] - r[0]).total_seconds() for r in rows)
    span = (last - first).total_seconds()
    return {
        "delivered": len(rows),
        "delivered_per_s": len(rows) / span if span else None,
        "p50_submit_to_delivery_s": latencies[len(latencies) // 2],
        "p99_submit_to_delivery_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def _submit_phase(
    stack: Stack,
    pool: LoadPool,
    messages: list[tuple[str, tuple[str, str]]],
    *,
    concurrency: int,
    rate: float | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    """Submit ``messages`` and report rates, per-request latency and CPU per accepted message (by role, and
    the load processes' own CPU per message sent)."""
    before = cpu.sample()
    result = pool.run(messages, concurrency=concurrency, rate=rate, batch=batch)
    roots = {"api": stack.processes[0].pid, "worker": stack.processes[1].pid}
    return {
        "cpu_ms_per_accepted": cpu.per_message(before, cpu.sample(), roots=roots, messages=result.accepted),
        "generator_cpu_ms_per_msg": round(result.generator_cpu_s * 1000 / result.sent, 3)
        if result.sent
        else None,
        "concurrency": concurrency,
        "batch": batch,
        "offered_per_s": rate,
        "sent": result.sent,
        "accepted": result.accepted,
        "errors": len(result.errors),
        "first_error": result.errors[0] if result.errors else None,
        "accepted_per_s": result.rate,
        "p50_ms": result.percentile(50) * 1000,
        "p95_ms": result.percentile(95) * 1000,
        "p99_ms": result.percentile(99) * 1000,
    }


BATCH_LEVELS = (2, 8)
"""Concurrent batch requests: each carries ``batch`` envelopes, so a few keep both API workers busy."""


def measure_end_to_end(stack: Stack, pool: LoadPool, count: int, *, batch: int) -> dict[str, Any]:
    """``count`` messages submitted (``batch`` per request, 8 in flight) while scripted officers approve them
    at the origin and route them at the destination a page at a time, until every one is delivered to its
    agency. Reports the delivery rate and latencies, and where the CPU went over the whole phase, per
    delivered message (the submission's own share is in ``submitted``)."""
    e2e = plan(count)
    ids = [message_id for _, (_, message_id) in e2e]
    countries = sorted({s.split("-")[0] for s, _ in ROUTES} | {t.split("-")[0] for _, t in ROUTES})
    phase: dict[str, Any] = {}
    submitter = threading.Thread(
        target=lambda: phase.update(_submit_phase(stack, pool, e2e, concurrency=8, batch=batch)),
        daemon=True,
    )
    officers = log_in_officers(stack.url, stack.settings.data_dir, countries)
    try:
        before = cpu.sample()
        begun = time.perf_counter()
        submitter.start()
        decisions = officers_until_done(officers, count, timeout=max(60.0, count / 10))
        submitter.join()
    finally:
        for client in officers.values():
            client.close()
    _wait_delivered(stack.dsn, ids, timeout=60)
    wall = time.perf_counter() - begun
    roots = {"api": stack.processes[0].pid, "worker": stack.processes[1].pid}
    return {
        **delivered_stats(stack.dsn, ids),
        "cpu_ms_per_delivered": cpu.per_message(before, cpu.sample(), roots=roots, messages=len(ids)),
        "submitted": phase,
        "decisions": decisions,
        "wall_s": wall,
    }


def run(
    *,
    messages: int,
    levels: tuple[int, ...],
    out_dir: Path,
    say: Say,
    scaling: bool = True,
    batch: int = 100,
    api_processes: int = 2,
    workers: int = 2,
    load_processes: int = 2,
) -> dict[str, Any]:
    """The whole benchmark. ``messages`` per concurrency level; the end-to-end phase max(1000, half of it),
    submitted in batches of up to 50 and decided by scripted officers a page at a time;
    batched submission (``batch`` envelopes per request; 0 or 1 skips it) twice as many per level.

    ``api_processes`` uvicorn workers and ``workers`` Celery worker processes (the stack's one beat runs
    the audit sequencer, one at a time under the log's lock); ``load_processes`` load processes."""
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
        "parameters": {
            "messages_per_level": messages,
            "levels": list(levels),
            "payload_bytes": 2048,
            "batch": batch,
            "batch_levels": list(BATCH_LEVELS) if batch > 1 else [],
        },
        "processes": processes(api_processes, workers, load_processes),
    }
    say("the generator alone (no server)")
    results["generator_alone"] = measure_generator(min(2000, max(400, messages)), processes=load_processes)
    with (
        tempfile.TemporaryDirectory(prefix="spoc-bench-") as tmp,
        running(Path(tmp), api_workers=api_processes, worker_concurrency=workers) as stack,
    ):
        results["limits"] = measure_limits(stack, say)
        end_to_end = max(1000, messages // 2)
        open_loop = max(500, messages // 2)
        batched = max(2000, 2 * messages) if batch > 1 else 0
        say(f"starting {load_processes} load processes (each route's payload sealed once)")
        with LoadPool(stack.url, stack.settings.data_dir, processes=load_processes) as pool:
            # End to end first, while the queues are empty: officers then work on exactly this flow.
            say(f"end to end: {end_to_end} messages through both contact points to the agencies")
            results["end_to_end"] = measure_end_to_end(stack, pool, end_to_end, batch=min(batch, 50))
            results["submit"] = []
            for level in levels:
                say(f"submit: {messages} messages at concurrency {level}")
                results["submit"].append(_submit_phase(stack, pool, plan(messages), concurrency=level))
            results["submit_batched"] = []
            for level in BATCH_LEVELS if batch > 1 else ():
                say(f"submit: {batched} messages in batches of {batch}, {level} batches in flight")
                results["submit_batched"].append(
                    _submit_phase(stack, pool, plan(batched), concurrency=level, batch=batch)
                )
            say(f"submit: {open_loop} messages offered at 500 msg/s")
            results["submit_at_500"] = _submit_phase(stack, pool, plan(open_loop), concurrency=64, rate=500.0)
            if scaling:  # before the audit phase, whose synthetic entries are not the exchange's volume
                probe = max(100, messages // 10)
                results["scaling"] = measure_scaling(stack, pool, say, probes=[plan(probe) for _ in range(3)])
        results["audit"] = measure_audit(stack, say, entries=100_000)
    results["ratios"] = ratios(results)
    return results


def processes(api: int, workers: int, load: int) -> dict[str, int]:
    """How many processes of each stage a run used, and the cores they shared."""
    return {
        "cpus": _cpus(),
        "api_processes": api,
        "worker_processes": workers,
        "beat_processes": 1,
        "sequencers": 1,  # the beat's audit task; one appends at a time (the log's advisory lock)
        "load_processes": load,
    }


def _stored(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        messages = conn.execute("SELECT count(*) FROM messages").fetchone()
        leaves = conn.execute("SELECT count(*) FROM audit_leaves").fetchone()
    return int(messages[0] if messages else 0), int(leaves[0] if leaves else 0)


def _grow_messages(dsn: str, count: int) -> None:
    """Add ``count`` finished messages, copies of a stored one with fresh ids (a bulk INSERT ... SELECT).

    They are ``answered``: in the tables and indexes every query walks, in no queue, no deadline.
    """
    if count <= 0:
        return
    fresh = {
        "id": "gen_random_uuid()::text",
        "conversation_id": "gen_random_uuid()::text",
        "in_reply_to": "NULL",
        "supersedes": "NULL",
        "state": "'answered'",
        "deadline_at": "NULL",
        "deadline_warn_at": "NULL",
    }
    with psycopg.connect(dsn) as conn:
        columns = [
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'messages' AND table_schema = current_schema() ORDER BY ordinal_position"
            ).fetchall()
        ]
        chosen = ", ".join(fresh.get(c, f"m.{c}") for c in columns)
        conn.execute(
            f"INSERT INTO messages ({', '.join(columns)}) SELECT {chosen} "  # noqa: S608 - our own column names
            "FROM (SELECT * FROM messages LIMIT 1) m, generate_series(1, %s)",
            (count,),
        )


def _grow_log(stack: Stack, count: int) -> None:
    """Append ``count`` audit entries: queued by one bulk INSERT (as many transactions would have left
    them), then put in the log by the real sequencer, which hashes them and stores the tree's nodes."""
    if count <= 0:
        return
    with psycopg.connect(stack.dsn) as conn:
        conn.execute(
            "WITH e AS (INSERT INTO audit_entries "
            "(at, actor, role, action, object_type, object_id, countries, outcome, details) "
            "SELECT now(), 'spoc', 'system', 'message:queued', 'message', 'grow-' || g, "
            "'[\"AL\", \"RS\"]'::jsonb, 'ok', '{}'::jsonb FROM generate_series(1, %s) g RETURNING id) "
            "INSERT INTO audit_pending (entry_id) SELECT id FROM e",
            (count,),
        )
    engine = make_engine(stack.settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            sequence_all(session)
    finally:
        engine.dispose()


def measure_scaling(
    stack: Stack, pool: LoadPool, say: Say, *, probes: list[list[tuple[str, tuple[str, str]]]]
) -> list[dict[str, Any]]:
    """Submit latency, inclusion-proof time and the API's and worker's resident memory (after the probe)
    at 1x, 4x and 16x the volume stored by the run so far.

    The stored messages and the audit log are grown between probes (copies of stored messages; real
    audit entries through the sequencer); each probe submits the same number of fresh envelopes at
    concurrency 4. Flat or log n growth is the goal: no query may scan what is stored.
    """
    base_messages, base_log = _stored(stack.dsn)
    engine = make_engine(stack.settings)
    factory = make_sessionmaker(engine)
    out = []
    try:
        for factor, probe in zip((1, 4, 16), probes, strict=True):
            messages, log = _stored(stack.dsn)
            if factor > 1:
                say(f"scaling: growing to {factor}x the stored volume")
                _grow_messages(stack.dsn, base_messages * factor - messages)
                _grow_log(stack, base_log * factor - log)
                with unit_of_work(factory) as session:
                    sequence_all(session)
            messages, log = _stored(stack.dsn)
            say(f"scaling: {factor}x ({messages} messages, {log} log entries)")
            phase = _submit_phase(stack, pool, probe, concurrency=4)
            roots = {"api": stack.processes[0].pid, "worker": stack.processes[1].pid}
            out.append(
                {
                    "resident": cpu.resident_mb(roots),
                    "factor": factor,
                    "messages_stored": messages,
                    "log_size": log,
                    "accepted_per_s": phase["accepted_per_s"],
                    "p50_ms": phase["p50_ms"],
                    "p99_ms": phase["p99_ms"],
                    "inclusion_proof_ms": _proof_time(factory, log) if log else None,
                }
            )
    finally:
        engine.dispose()
    return out


def _wait_delivered(dsn: str, ids: list[str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM inbox_items WHERE message_id = ANY(%s)", (ids,)
            ).fetchone()
        if row and row[0] >= len(ids):
            return
        time.sleep(0.5)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    lim = results["limits"]
    best = max((p["accepted_per_s"] for p in results["submit"]), default=0.0)
    batched = max((p["accepted_per_s"] for p in results.get("submit_batched", [])), default=0.0)
    out: dict[str, Any] = {
        "accepted_vs_envelope_verify": best / lim["envelope_verify_per_s"]
        if lim["envelope_verify_per_s"]
        else None,
        "accepted_vs_postgres_single_row": best / lim["postgres_single_row_commits_per_s"],
    }
    rabbit = lim.get("rabbitmq_bare_queue_msgs_per_s")
    delivered = results.get("end_to_end", {}).get("delivered_per_s")
    if rabbit:
        out["accepted_vs_bare_queue"] = best / rabbit
        if batched:
            out["accepted_batched_vs_bare_queue"] = batched / rabbit
        if delivered:
            out["delivered_vs_bare_queue"] = delivered / rabbit
    scaling = results.get("scaling", [])
    if len(scaling) >= 2:
        first, last = scaling[0].get("resident", {}), scaling[-1].get("resident", {})
        for role in ("api", "worker"):
            if first.get(role, {}).get("total_mb") and last.get(role, {}).get("total_mb"):
                factor = scaling[-1]["factor"]
                out[f"{role}_resident_{factor}x_vs_1x"] = last[role]["total_mb"] / first[role]["total_mb"]
    audit = results.get("audit", {})
    appended = audit.get("entries_appended_per_s")
    if appended:  # against the limit sampled beside the appends (older results: the run's first sample)
        out["audit_append_vs_postgres_batched"] = appended / audit.get(
            "postgres_batched_rows_per_s", lim["postgres_batched_rows_per_s"]
        )
    return out


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["date"][:19].replace(":", "-")
    path = out_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    chart = _chart(results, out_dir / f"{stamp}.png")
    return path, chart


def _chart(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    levels = [p["concurrency"] for p in results["submit"]]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(
        levels,
        [p["accepted_per_s"] for p in results["submit"]],
        "o-",
        color="#0b4f8a",
        label="accepted msg/s",
    )
    batched = results.get("submit_batched", [])
    if batched:
        left.plot(
            [p["concurrency"] for p in batched],
            [p["accepted_per_s"] for p in batched],
            "D-",
            color="#2a9d8f",
            label=f"accepted msg/s, batches of {batched[0]['batch']}",
        )
    left.set_xlabel("concurrent agency requests")
    left.set_ylabel("accepted msg/s", color="#0b4f8a")
    left.set_xscale("log", base=2)
    right = left.twinx()
    right.plot(levels, [p["p50_ms"] for p in results["submit"]], "s--", color="#a4161a", label="p50 ms")
    right.plot(levels, [p["p99_ms"] for p in results["submit"]], "^--", color="#e07a5f", label="p99 ms")
    right.set_ylabel("submit latency (ms)", color="#a4161a")
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize=8)
    left.set_title(f"spoc submit throughput and latency ({results['date'][:10]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
