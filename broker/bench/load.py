"""Load generation: agency systems submitting pre-built envelopes over HTTP, scripted officers deciding.

Envelopes are built (sealed and signed) before the clock starts, so the figures measure the exchange,
not the load generator's crypto; each HTTP request is still signed per call (RFC 9421), as in real use.
Load runs in several processes (one GIL each), each with a few threads holding their own HTTP client.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from broker.client.agency import AgencyClient, ClientError
from broker.client.credentials import AgencyCredentials
from broker.client.officer import OfficerClient

# Pairs with an agreement covering UNCLASSIFIED/RESTRICTED, sender → addressed agency.
ROUTES: tuple[tuple[str, str], ...] = (
    ("AL-ASP", "MK-MOI"),
    ("MK-MOI", "AL-ASP"),
    ("HR-POL", "SI-POL"),
    ("SI-POL", "HR-POL"),
    ("ME-UP", "RS-MUP"),
    ("RS-MUP", "ME-UP"),
    ("XK-KP", "AL-ASP"),
    ("BA-SIPA", "HR-POL"),
)


def credentials(data_dir: Path, agency_id: str) -> AgencyCredentials:
    return AgencyCredentials.load(data_dir / "agencies" / f"{agency_id}.json")


def build_envelopes(
    url: str,
    data_dir: Path,
    count: int,
    *,
    payload_bytes: int = 2048,
    transport: httpx.BaseTransport | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``count`` signed, sealed envelopes spread over ``ROUTES``: (sender agency, envelope)."""
    clients = {s: AgencyClient(url, credentials(data_dir, s), transport=transport) for s, _ in ROUTES}
    out = []
    try:
        for i in range(count):
            sender, target = ROUTES[i % len(ROUTES)]
            body = json.dumps(
                {"ref": i, "pad": os.urandom(payload_bytes // 2).hex()[: payload_bytes - 32]}
            ).encode()
            envelope = clients[sender].build(
                payload=body,
                destination_country=target.split("-")[0],
                destination_agency=target,
                category="fraud",
                classification="RESTRICTED",
            )
            out.append((sender, envelope))
    finally:
        for client in clients.values():
            client.close()
    return out


def _submit_worker(
    url: str,
    data_dir: str,
    work: Sequence[tuple[str, dict[str, Any]]],
    threads: int,
    rate: float | None,
    results: Any,
) -> None:
    """One load process: ``threads`` threads pull envelopes and submit them; latencies to ``results``."""
    todo: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()
    start = time.perf_counter()
    for i, (sender, env) in enumerate(work):
        todo.put((start + i / rate if rate else 0.0, sender, env))
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        clients: dict[str, AgencyClient] = {}
        try:
            while True:
                try:
                    due, sender, env = todo.get_nowait()
                except queue.Empty:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                client = clients.get(sender)
                if client is None:
                    client = clients[sender] = AgencyClient(
                        url, credentials(Path(data_dir), sender), timeout=30
                    )
                began = time.perf_counter()
                try:
                    client.submit(env)
                    elapsed = time.perf_counter() - began
                    with lock:
                        latencies.append(elapsed)
                except (ClientError, httpx.HTTPError) as exc:
                    with lock:
                        errors.append(str(exc)[:200])
        finally:
            for client in clients.values():
                client.close()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((latencies, errors))


@dataclass
class SubmitResult:
    sent: int
    accepted: int
    errors: list[str]
    seconds: float
    latencies: list[float] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def submit_all(
    url: str,
    data_dir: Path,
    envelopes: Sequence[tuple[str, dict[str, Any]]],
    *,
    concurrency: int,
    processes: int = 2,
    rate: float | None = None,
) -> SubmitResult:
    """Submit every envelope with ``concurrency`` clients in flight (closed loop), or at ``rate`` msg/s."""
    # spawn, not fork: the caller has threads (officers, a progress bar); a forked child can inherit a
    # lock one of them held and hang for ever.
    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    shares = [list(envelopes[i::processes]) for i in range(processes)]
    per_rate = rate / processes if rate else None
    threads = max(1, concurrency // processes)
    began = time.perf_counter()
    procs = [
        ctx.Process(target=_submit_worker, args=(url, str(data_dir), share, threads, per_rate, results))
        for share in shares
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors: list[str] = []
    for _ in procs:
        lat, err = results.get(timeout=600)
        latencies += lat
        errors += err
    for p in procs:
        p.join()
    seconds = time.perf_counter() - began
    return SubmitResult(len(envelopes), len(latencies), errors, seconds, latencies)


def officers_until_done(
    url: str, data_dir: Path, countries: Sequence[str], expected: int, *, timeout: float
) -> int:
    """Scripted officers: each contact point approves its outbound queue and routes its inbound queue.

    Returns how many decisions were taken. Stops when ``expected`` messages have been routed or on timeout.
    """
    accounts = json.loads((data_dir / "demo-accounts.json").read_text())
    routed = 0
    decisions = 0
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def officer(cc: str) -> None:
        nonlocal routed, decisions
        name = f"{cc.lower()}-officer"
        with OfficerClient(url, name, accounts[name]["password"], timeout=30) as client:
            while time.monotonic() < deadline:
                with lock:
                    if routed >= expected:
                        return
                did = 0
                for item in client.queue("outbound"):
                    client.decide(item["message_id"], "approve")
                    did += 1
                for item in client.queue("inbound"):
                    client.decide(item["message_id"], "route", route_to_agency=item["destination_agency"])
                    did += 1
                    with lock:
                        routed += 1
                with lock:
                    decisions += did
                if not did:
                    time.sleep(0.1)

    pool = [threading.Thread(target=officer, args=(cc,)) for cc in countries]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return decisions
