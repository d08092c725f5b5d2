"""Two nodes of a region on 127.0.0.1, and the benchmark of the hop between them (issue 13).

:func:`region_of_two` makes what ``docs/region.md`` describes, in child processes: two countries' nodes, each
with its own PostgreSQL database, Redis database, master key, data folder and API process (uvicorn), and with
``workers=True`` its own Celery worker with beat; one governance key (generated here, the private half never
written) signs one directory listing both, and each node installs it. Nothing is shared between the nodes but
the directory and the loopback network. The tests of reconciliation and refresh use it without workers (they
run the outbox and the hops in their own process, against the real HTTP of the other node); the benchmark uses
it with workers.

:func:`measure_hop` submits N requests at the origin node in batches, approves them through the officers' API
(``POST /v1/cp/decisions``), lets the origin's workers hop them and reads, from the two databases, when each was
approved (the approval's custody step) and when the destination received it (its ``hops`` row, the time its
transport receipt states). The figures: node-to-node messages/s (N over first approval to last receipt) and
the latency the hop adds (approval to receipt: p50, p99). The two nodes share one clock, so the difference
is meaningful; no figure is asserted anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
import redis
from pydantic import SecretStr
from sqlalchemy import func, select

from broker.audit.service import SYSTEM
from broker.bench import cpu
from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.crypto.directory import sign_directory
from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from broker.directory.seed import SeedResult
from broker.hop.models import Hop
from broker.hop.outbound import hop_all_due
from broker.keys.service import DatabaseKeyStore
from broker.launcher import free_port, prepare
from broker.messages.models import CustodyStep
from broker.messages.work import drain
from broker.region.service import install
from broker.region.sync import node_entry

__all__ = ["Node", "Region", "measure_hop", "region_of_two", "signed_directory"]

PG_ADMIN: Final = "postgresql://postgres@127.0.0.1:5432/test"
AGREEMENT: Final = {
    "reference": "AL-XK police cooperation 2024",
    "countries": ["AL", "XK"],
    "categories": ["drug-trafficking", "migrant-smuggling"],
    "max_classification": "CONFIDENTIAL",
    "valid_from": "2024-01-01T00:00:00Z",
}

Say = Callable[[str], None]


@dataclass
class Node:
    """One country's node: its settings (as its processes see them, ``env``), its seed and its processes."""

    country: str
    node_id: str
    url: str
    settings: Settings
    env: dict[str, str]
    seed: SeedResult
    entry: dict[str, Any]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def agency(self, agency_id: str) -> AgencyClient:
        return AgencyClient(self.url, self.seed.agencies[agency_id])

    def officer(self, username: str) -> OfficerClient:
        return OfficerClient(self.url, username, self.seed.accounts[username].password)

    def connect(self) -> psycopg.Connection[Any]:
        """A plain connection to this node's database (what its operator, or a hostile one, can do)."""
        return psycopg.connect(self.settings.database_url.replace("postgresql+psycopg://", "postgresql://"))

    def send_hops(self) -> dict[str, int]:
        """Do what this node's worker does, in this process: run the outbox, then send every due hop over
        real HTTP to the peer's API process. (For tests, which must not wait for a beat.)"""
        engine = make_engine(self.settings)
        try:
            factory = make_sessionmaker(engine)
            master = MasterKey.from_secret(self.settings.master_key_secret())
            with unit_of_work(factory) as session:
                drain(session, DatabaseKeyStore(session, master))
            with httpx.Client(timeout=30, trust_env=False) as client:
                return hop_all_due(factory, master, self.settings, client)
        finally:
            engine.dispose()


@dataclass
class Region:
    nodes: dict[str, Node]
    governance: KeyPair
    anchor: Path
    work_dir: Path

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        return signed_directory(document, self.governance)

    def draft(self, *, version: int, valid_for: timedelta = timedelta(days=30)) -> dict[str, Any]:
        """A directory listing both nodes as they are (their entries), at ``version``."""
        now = utcnow().replace(microsecond=0)
        return {
            "region": "western-balkans",
            "version": version,
            "issued_at": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "valid_until": (now + valid_for).isoformat().replace("+00:00", "Z"),
            "nodes": [n.entry for n in self.nodes.values()],
            "agreements": [AGREEMENT],
        }


def signed_directory(document: dict[str, Any], governance: KeyPair) -> dict[str, Any]:
    return {"directory": document, "signature": sign_directory(document, key=governance)}


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our interpreter and modules, no shell
            [sys.executable, "-m", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_healthy(node: Node, log_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{node.url}/health", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline or any(p.poll() is not None for p in node.processes):
            raise RuntimeError(f"node {node.node_id} did not start; see {log_dir}/api.log and worker.log")
        time.sleep(0.2)


@contextlib.contextmanager
def region_of_two(
    work_dir: Path,
    *,
    countries: tuple[str, str] = ("AL", "XK"),
    workers: bool = False,
    api_workers: int = 1,
    worker_concurrency: int = 2,
    redis_dbs: tuple[int, int] = (13, 14),
    extra_env: dict[str, str] | None = None,
) -> Iterator[Region]:
    """Two nodes in child processes, joined by one signed directory (see the module docstring); everything
    (processes, databases, Redis databases) is removed afterwards."""
    governance = KeyPair.generate("sig")
    anchor = work_dir / "anchor.jwks.json"
    anchor.write_text(json.dumps({"keys": [governance.public.jwk]}))
    names = {c: f"spoc_hop_{c.lower()}_{uuid.uuid4().hex[:8]}" for c in countries}
    nodes: dict[str, Node] = {}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        for (country, name), redis_db in zip(names.items(), redis_dbs, strict=True):
            folder = work_dir / country.lower()
            folder.mkdir(mode=0o700, exist_ok=True)
            port = free_port()
            redis_url = f"redis://127.0.0.1:6379/{redis_db}"
            redis.Redis.from_url(redis_url).flushdb()
            env = {
                "SPOC_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "SPOC_BROKER_URL": redis_url,
                "SPOC_MASTER_KEY": MasterKey.generate_secret(),
                "SPOC_DATA_DIR": str(folder),
                "SPOC_ENVIRONMENT": "test",
                "SPOC_REGION_ANCHOR": str(anchor),
                "SPOC_BEAT_INTERVAL_SECONDS": "0.5",
                "SPOC_RATE_LIMIT_PER_SECOND": "100000",
                "SPOC_RATE_LIMIT_BURST": "100000",
                "SPOC_MAX_BATCH_ENVELOPES": "500",
                **(extra_env or {}),
            }
            settings = Settings(
                environment="test",
                database_url=env["SPOC_DATABASE_URL"],
                broker_url=redis_url,
                data_dir=folder,
                master_key=SecretStr(env["SPOC_MASTER_KEY"]),
                region_anchor=anchor,
            )
            seed = prepare(settings, countries=[country])
            assert seed is not None  # noqa: S101 - a fresh database is always seeded
            engine = make_engine(settings)
            try:
                with unit_of_work(make_sessionmaker(engine)) as session:
                    master = MasterKey.from_secret(settings.master_key_secret())
                    entry = node_entry(
                        session,
                        DatabaseKeyStore(session, master),
                        master,
                        node_id=country.lower(),
                        base_url=f"http://127.0.0.1:{port}",
                    )
            finally:
                engine.dispose()
            nodes[country] = Node(
                country, country.lower(), f"http://127.0.0.1:{port}", settings, env, seed, entry
            )
        region = Region(nodes, governance, anchor, work_dir)
        directory = region.sign(region.draft(version=1))
        for node in nodes.values():
            engine = make_engine(node.settings)
            try:
                with unit_of_work(make_sessionmaker(engine)) as session:
                    install(session, directory, anchor=[governance.public], now=utcnow(), actor=SYSTEM)
            finally:
                engine.dispose()
            folder = node.settings.data_dir
            listen = node.url.rsplit(":", 1)[1]
            node.processes.append(
                _spawn(
                    [
                        "uvicorn",
                        "contact_points.app:create_app",
                        "--factory",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        listen,
                        "--workers",
                        str(api_workers),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    node.env,
                    folder / "api.log",
                )
            )
            if workers:
                node.processes.append(
                    _spawn(
                        [
                            "celery",
                            "--quiet",
                            "-A",
                            "workers.celery_app",
                            "worker",
                            "-B",
                            "--loglevel=WARNING",
                            f"--concurrency={worker_concurrency}",
                            "-n",
                            f"hop-{node.node_id}-{listen}@%h",
                        ],
                        node.env,
                        folder / "worker.log",
                    )
                )
        for node in nodes.values():
            _wait_healthy(node, node.settings.data_dir)
        yield region
    finally:
        for node in nodes.values():
            _stop(node.processes)
        for redis_db in redis_dbs:
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}").flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def measure_hop(region: Region, messages: int, say: Say, *, timeout: float = 600.0) -> dict[str, Any]:
    """Hop ``messages`` requests from the first node to the second with their workers running; the figures.

    Envelopes are built before the clock starts; submission (batches of 100) and approval (pages of 100) go
    through the HTTP API as agencies and officers use it. Counted at the destination: each message exactly
    once (``duplicated`` counts any message stored twice, which the hop's idempotency forbids)."""
    origin, destination = region.nodes.values()
    sender = next(a for a in origin.seed.agencies if a.startswith(origin.country + "-"))
    agency = origin.agency(sender)
    say(f"hop: building {messages} envelopes at {origin.node_id}")
    envelopes = [
        agency.build(
            payload=json.dumps({"ref": i, "pad": os.urandom(512).hex()}).encode(),
            destination_country=destination.country,
            category="drug-trafficking",
            classification="UNCLASSIFIED",
        )
        for i in range(messages)
    ]
    ids = [e["header"]["message_id"] for e in envelopes]
    say(f"hop: submitting {messages} at {origin.node_id}")
    for start in range(0, messages, 100):
        answer = agency.submit_batch(envelopes[start : start + 100])
        if answer.get("refused"):
            raise RuntimeError(f"the origin refused envelopes: {answer['results'][:2]}")
    officer = origin.officer(f"{origin.country.lower()}-officer")
    say(f"hop: approving {messages} at {origin.node_id}; its workers hop them to {destination.node_id}")
    roots = {
        f"{node.node_id} {role}": proc.pid
        for node in (origin, destination)
        for role, proc in zip(("api", "worker"), node.processes, strict=False)
    }
    before = cpu.sample()
    begun = time.perf_counter()
    for start in range(0, messages, 100):
        officer.decide_many([(m, {"action": "approve"}) for m in ids[start : start + 100]])
    approving = time.perf_counter() - begun
    deadline = time.monotonic() + timeout
    engine = make_engine(origin.settings)
    try:
        factory = make_sessionmaker(engine)
        unsettled = ~(Hop.receipt.is_not(None) | Hop.dead_at.is_not(None))
        while time.monotonic() < deadline:  # until each hop is receipted, or dead-lettered to the officers
            with unit_of_work(factory) as session:
                scheduled, open_hops = session.execute(
                    select(func.count(), func.count().filter(unsettled)).where(
                        Hop.message_id.in_(ids), Hop.direction == "out"
                    )
                ).one()
            if scheduled >= messages and not open_hops:
                break
            time.sleep(0.25)
        spent = cpu.per_message(before, cpu.sample(), roots=roots, messages=messages)
        with unit_of_work(factory) as session:
            approved = dict(
                session.execute(
                    select(CustodyStep.message_id, CustodyStep.at).where(
                        CustodyStep.message_id.in_(ids), CustodyStep.decision == "approved"
                    )
                ).all()
            )
            receipted, dead = session.execute(
                select(func.count(Hop.receipt), func.count(Hop.dead_at)).where(Hop.message_id.in_(ids))
            ).one()
            dead_rows = select(Hop.last_error).where(Hop.message_id.in_(ids), Hop.dead_at.is_not(None))
            errors = sorted({e or "" for e in session.scalars(dead_rows)})
    finally:
        engine.dispose()
    with destination.connect() as conn:
        got = conn.execute(
            "SELECT count(DISTINCT message_id), count(*) FROM hops WHERE direction = 'in' AND message_id = ANY(%s)",
            (ids,),
        ).fetchone()
        assert got is not None  # noqa: S101 - an aggregate always answers
        received = dict(
            conn.execute(
                "SELECT message_id, min(at) FROM hops WHERE direction = 'in' AND message_id = ANY(%s) "
                "GROUP BY message_id",
                (ids,),
            ).fetchall()
        )
    latencies = [(received[m] - approved[m]).total_seconds() for m in ids if m in received and m in approved]
    span = (max(received.values()) - min(approved.values())).total_seconds() if received and approved else 0.0
    return {
        "messages": messages,
        "received": len(received),
        "duplicated": got[1] - got[0],
        "lost": messages - len(received),
        "receipted_at_origin": receipted,
        "dead_lettered_at_origin": dead,
        "dead_letter_errors": [e for e in errors if e],
        "approve_seconds": round(approving, 2),
        "span_seconds": round(span, 2),
        "hop_msgs_per_s": round(len(received) / span, 1) if span > 0 else None,
        "hop_added_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99": round(_percentile(latencies, 99) * 1000, 1) if latencies else None,
            "max": round(max(latencies) * 1000, 1) if latencies else None,
        },
        "nodes": [origin.node_id, destination.node_id],
        # From the first approval until every hop is settled, by process (``broker.bench.cpu``): the two
        # nodes' API and worker processes, PostgreSQL (both databases), this process (the officer's
        # approvals and the polling) and "other" (anything else running on the machine meanwhile).
        "cpu_ms_per_message": spent,
    }


def run_hop(messages: int, say: Say) -> dict[str, Any]:
    """Two nodes with their workers in a temporary folder, ``messages`` hopped, everything removed after."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="spoc-bench-hop-") as folder:
        say("hop: starting two nodes (AL, XK): own PostgreSQL databases, API and worker processes each")
        with region_of_two(Path(folder), workers=True) as region:
            return measure_hop(region, messages, say)


def latest_single_node(out_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """The newest single-node run in ``out_dir`` (by its ``date``), to print the hop's figures beside."""
    found = []
    for path in out_dir.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("date"), str) and data.get("submit"):
            found.append((data["date"], path.name, data))
    if not found:
        return None
    date, _, data = max(found, key=lambda item: item[0])
    return date, data


def hop_rows(hop: dict[str, Any], single: tuple[str, dict[str, Any]] | None) -> list[tuple[str, str]]:
    """The hop's figures as (measure, figure) rows, then the single-node ones they compare with."""
    latency = hop["hop_added_latency_ms"]
    rows = [
        (
            f"hop {hop['nodes'][0]} -> {hop['nodes'][1]}: node-to-node msg/s (approval to receipt)",
            f"{hop['hop_msgs_per_s']} ({hop['received']} of {hop['messages']} received, "
            f"{hop['lost']} not received, {hop['duplicated']} duplicated, "
            f"{hop['dead_lettered_at_origin']} dead-lettered at the origin)",
        ),
        (
            "hop added latency (origin approval -> destination receipt)",
            f"p50 {latency['p50']} ms, p99 {latency['p99']} ms, max {latency['max']} ms",
        ),
    ]
    if hop.get("span_seconds") is not None and hop.get("approve_seconds") is not None:
        # The rate's span starts at the first approval, and the officer's pages of approvals go one after the
        # other: a hop that keeps up with them is bound by them.
        rows.append(
            (
                "hop span (first approval to last receipt), of which approving",
                f"{hop['span_seconds']} s, {hop['approve_seconds']} s",
            )
        )
    if hop.get("cpu_ms_per_message"):
        rows.append(
            (
                "hop CPU ms per message, approval to last receipt",
                ", ".join(f"{role} {ms}" for role, ms in hop["cpu_ms_per_message"].items()),
            )
        )
    if hop.get("dead_letter_errors"):
        rows.append(("hop dead letters at the origin, why", "; ".join(hop["dead_letter_errors"])))
    if single is not None:
        date, data = single
        first = data["submit"][0]
        rows.append(
            (
                f"single node ({date}): accepted msg/s at concurrency {first['concurrency']}",
                f"{first['accepted_per_s']:.0f} (p99 {first['p99_ms']:.1f} ms)",
            )
        )
        e2e = data.get("end_to_end") or {}
        if e2e.get("delivered_per_s") is not None:
            rows.append(
                (
                    f"single node ({date}): delivered msg/s end to end",
                    f"{e2e['delivered_per_s']:.0f} (p99 submit to delivery {e2e['p99_submit_to_delivery_s']:.2f} s)",
                )
            )
    return rows
