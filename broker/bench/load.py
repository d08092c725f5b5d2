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


Work = tuple[str, list[dict[str, Any]]]
"""One request's worth: the sending agency and its envelopes (one, or a batch)."""


def chunks(envelopes: Sequence[tuple[str, dict[str, Any]]], batch: int) -> list[Work]:
    """Requests of ``batch`` envelopes of one sender each (a batch is one agency's), in order."""
    if batch <= 1:
        return [(sender, [env]) for sender, env in envelopes]
    by_sender: dict[str, list[dict[str, Any]]] = {}
    for sender, env in envelopes:
        by_sender.setdefault(sender, []).append(env)
    return [
        (sender, envs[i : i + batch])
        for sender, envs in by_sender.items()
        for i in range(0, len(envs), batch)
    ]


def _submit_worker(
    url: str,
    data_dir: str,
    work: Sequence[Work],
    threads: int,
    rate: float | None,
    results: Any,
) -> None:
    """One load process: ``threads`` threads pull requests and send them; per-request latencies and the
    number of envelopes accepted go to ``results``. ``rate`` is in requests per second."""
    todo: queue.Queue[tuple[float, str, list[dict[str, Any]]]] = queue.Queue()
    start = time.perf_counter()
    for i, (sender, envs) in enumerate(work):
        todo.put((start + i / rate if rate else 0.0, sender, envs))
    latencies: list[float] = []
    errors: list[str] = []
    accepted = 0
    lock = threading.Lock()

    def run() -> None:
        nonlocal accepted
        clients: dict[str, AgencyClient] = {}
        try:
            while True:
                try:
                    due, sender, envs = todo.get_nowait()
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
                    if len(envs) == 1:
                        client.submit(envs[0])
                        took, problems = 1, []
                    else:
                        answer = client.submit_batch(envs)
                        took = int(answer["accepted"])
                        problems = [str(r["problem"])[:200] for r in answer["results"] if r["problem"]]
                    elapsed = time.perf_counter() - began
                    with lock:
                        latencies.append(elapsed)
                        accepted += took
                        errors.extend(problems)
                except (ClientError, httpx.HTTPError) as exc:
                    with lock:
                        errors.extend([str(exc)[:200]] * len(envs))
        finally:
            for client in clients.values():
                client.close()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((latencies, errors, accepted))


@dataclass
class SubmitResult:
    sent: int
    accepted: int
    errors: list[str]
    seconds: float
    latencies: list[float] = field(repr=False)  # per request (a batch is one request)

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
    batch: int = 1,
) -> SubmitResult:
    """Submit every envelope with ``concurrency`` requests in flight (closed loop), or at ``rate`` msg/s;
    ``batch`` > 1 sends them ``batch`` at a time through ``POST /v1/messages/batches``."""
    # spawn, not fork: the caller has threads (officers, a progress bar); a forked child can inherit a
    # lock one of them held and hang for ever.
    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    work = chunks(envelopes, batch)
    shares = [work[i::processes] for i in range(processes)]
    per_rate = rate / processes / max(1, batch) if rate else None
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
    accepted = 0
    for _ in procs:
        lat, err, took = results.get(timeout=600)
        latencies += lat
        errors += err
        accepted += took
    for p in procs:
        p.join()
    seconds = time.perf_counter() - began
    return SubmitResult(len(envelopes), accepted, errors, seconds, latencies)


def officers_until_done(
    url: str, data_dir: Path, countries: Sequence[str], expected: int, *, timeout: float
) -> int:
    """Scripted officers: each contact point approves its outbound queue and routes its inbound queue, a page
    (up to 100) at a time through ``POST /v1/cp/decisions``.

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
                # A page of each queue decided in one call (POST /v1/cp/decisions), each decision taken as
                # alone: approve the outbound page, route the inbound page to its addressed agencies.
                outbound = [(i["message_id"], {"action": "approve"}) for i in client.queue("outbound")]
                inbound = [
                    (i["message_id"], {"action": "route", "route_to_agency": i["destination_agency"]})
                    for i in client.queue("inbound")
                ]
                approved = client.decide_many(outbound)["decided"] if outbound else 0
                routed_now = client.decide_many(inbound)["decided"] if inbound else 0
                did = int(approved) + int(routed_now)
                with lock:
                    routed += int(routed_now)
                    decisions += did
                if not did:
                    time.sleep(0.1)

    pool = [threading.Thread(target=officer, args=(cc,)) for cc in countries]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return decisions
