"""Load generation: agency systems submitting envelopes over HTTP, scripted officers deciding.

The load processes (:class:`LoadPool`) start once per run and seal one payload per route before any
clock starts; in a timed window each message gets a fresh header signed by its sender
(``broker.bench.generator``) and each request is signed (RFC 9421), as in real use. The CPU those
processes spend inside the window is reported as the generator's own, per message. Load runs in several
processes (one GIL each), each with a few threads holding their own HTTP client.

``build_envelopes`` is the slow, faithful path (every envelope sealed and signed by the real client) for
in-process profiles and tests.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from broker.bench.generator import EnvelopeFactory, fake_credentials, fake_exchange, route_payload
from broker.client.agency import AgencyClient
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


T = TypeVar("T")

Work = tuple[str, list[tuple[str, str]]]
"""One request's worth: the sending agency and its messages, (target agency, message id) each (one, or a batch)."""


def plan(count: int, *, offset: int = 0) -> list[tuple[str, tuple[str, str]]]:
    """``count`` messages spread over ``ROUTES`` (starting at route ``offset``), each with a fresh id:
    (sender, (target, message id)). Only ids: the envelopes are signed by the load processes."""
    return [
        (ROUTES[(offset + i) % len(ROUTES)][0], (ROUTES[(offset + i) % len(ROUTES)][1], str(uuid.uuid4())))
        for i in range(count)
    ]


def chunks(items: Sequence[tuple[str, T]], batch: int) -> list[tuple[str, list[T]]]:
    """Requests of ``batch`` items of one sender each (a batch is one agency's), in order."""
    if batch <= 1:
        return [(sender, [item]) for sender, item in items]
    by_sender: dict[str, list[T]] = {}
    for sender, item in items:
        by_sender.setdefault(sender, []).append(item)
    return [
        (sender, group[i : i + batch])
        for sender, group in by_sender.items()
        for i in range(0, len(group), batch)
    ]


@dataclass
class SubmitResult:
    sent: int
    accepted: int
    errors: list[str]
    seconds: float
    latencies: list[float] = field(repr=False)  # per request (a batch is one request)
    generator_cpu_s: float = 0.0  # CPU time of the load processes within the timed window
    load_processes: int = 0
    threads_per_process: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _factories(
    url: str | None, data_dir: str | None
) -> tuple[dict[str, EnvelopeFactory], httpx.BaseTransport | None]:
    """Each sender's envelope factory, its routes sealed once; with no ``url``, against the stand-in."""
    transport = fake_exchange() if url is None else None
    base = url or "http://bench.invalid"
    payload = route_payload()
    factories = {}
    for sender in dict.fromkeys(s for s, _ in ROUTES):
        creds = fake_credentials(sender) if data_dir is None else credentials(Path(data_dir), sender)
        with AgencyClient(base, creds, transport=transport, timeout=30) as client:
            targets = dict.fromkeys(t for s, t in ROUTES if s == sender)
            factories[sender] = EnvelopeFactory.sealed_by(client, targets, payload=payload)
    return factories, transport


def _load_process(url: str | None, data_dir: str | None, tasks: Any, results: Any, barrier: Any) -> None:
    """One load process, started once per run: seals its routes, then runs phases until told to stop.

    A phase: ``threads`` threads pull requests from a queue; each request's envelopes are signed just
    before it is sent (outside its latency), the request is signed (RFC 9421) and posted. Everything
    that is not per message (interpreter start, imports, keys, sealing, threads, HTTP clients) happens
    before the barrier that starts the parent's clock, and the CPU this process spends after it is
    reported as the generator's own.
    """
    factories, transport = _factories(url, data_dir)
    base = url or "http://bench.invalid"
    clients: list[httpx.Client] = []
    results.put(("ready", os.getpid()))
    while (task := tasks.get()) is not None:
        work, threads, rate = task
        while len(clients) < threads:
            clients.append(httpx.Client(base_url=base, timeout=30, transport=transport))
        results.put(_phase(factories, clients[:threads], work, rate, barrier))
    for http in clients:
        http.close()


def _phase(
    factories: dict[str, EnvelopeFactory],
    clients: list[httpx.Client],
    work: Sequence[Work],
    rate: float | None,
    barrier: Any,
) -> tuple[list[float], list[str], int, float]:
    """One phase in one load process: (latencies, errors, accepted, CPU seconds after the barrier)."""
    todo: queue.Queue[tuple[float, str, list[tuple[str, str]]]] = queue.Queue()
    for i, (sender, items) in enumerate(work):
        todo.put((i / rate if rate else 0.0, sender, items))
    latencies: list[float] = []
    errors: list[str] = []
    accepted = 0
    lock = threading.Lock()
    go = threading.Event()
    start = 0.0

    def run(http: httpx.Client) -> None:
        nonlocal accepted
        go.wait()
        while True:
            try:
                due, sender, items = todo.get_nowait()
            except queue.Empty:
                return
            delay = start + due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            factory = factories[sender]
            envelopes = [factory.envelope(target, message_id) for target, message_id in items]
            try:
                elapsed, took, problems = _post(http, factory, envelopes)
                with lock:
                    latencies.append(elapsed)
                    accepted += took
                    errors.extend(problems)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                with lock:
                    errors.extend([f"{type(exc).__name__}: {exc}"[:200]] * len(items))

    pool = [threading.Thread(target=run, args=(http,)) for http in clients]
    for t in pool:
        t.start()
    barrier.wait()
    cpu = time.process_time()
    start = time.perf_counter()
    go.set()
    for t in pool:
        t.join()
    return latencies, errors, accepted, time.process_time() - cpu


def _post(
    http: httpx.Client, factory: EnvelopeFactory, envelopes: list[dict[str, Any]], *, attempts: int = 3
) -> tuple[float, int, list[str]]:
    """Post one envelope (``/v1/messages``) or a batch as the client does (idempotency key, retried on
    transport failures, each attempt signed afresh): (seconds, accepted, problems)."""
    single = len(envelopes) == 1
    body = orjson.dumps(envelopes[0] if single else {"envelopes": envelopes})
    path = "/v1/messages" if single else "/v1/messages/batches"
    key = envelopes[0]["header"]["message_id"] if single else "batch-" + hashlib.sha256(body).hexdigest()
    began = time.perf_counter()
    for attempt in range(1, attempts + 1):
        request = http.build_request(
            "POST", path, content=body, headers={"Content-Type": "application/json", "Idempotency-Key": key}
        )
        factory.signer.sign("POST", str(request.url), request.headers, body)
        try:
            response = http.send(request)
            break
        except httpx.TransportError:
            if attempt >= attempts:
                raise
            time.sleep(0.05 * 4 ** (attempt - 1))
    elapsed = time.perf_counter() - began
    if response.status_code >= 400:
        return elapsed, 0, [f"{response.status_code}: {response.text[:200]}"] * len(envelopes)
    if single:
        return elapsed, 1, []
    answer = response.json()
    problems = [str(r["problem"])[:200] for r in answer["results"] if r.get("problem")]
    return elapsed, int(answer["accepted"]), problems


class LoadPool:
    """The load processes of a run (one GIL each, a few threads with their own HTTP client each).

    Started once, before the first timed window, and kept for every phase, so neither interpreter
    start-up nor sealing is inside a measurement. ``url`` None measures the generator alone, against the
    in-process stand-in (:func:`broker.bench.generator.fake_exchange`).
    """

    def __init__(self, url: str | None, data_dir: Path | None, *, processes: int = 2) -> None:
        # spawn, not fork: the caller has threads (officers, a progress bar); a forked child can inherit a
        # lock one of them held and hang for ever.
        self._ctx = mp.get_context("spawn")
        self.processes = processes
        self._url = url
        self._data_dir = str(data_dir) if data_dir is not None else None
        self._tasks: list[Any] = []
        self._results: Any = None
        self._barrier: Any = None
        self._procs: list[Any] = []
        self.pids: list[int] = []

    def __enter__(self) -> LoadPool:
        self._results = self._ctx.Queue()
        self._barrier = self._ctx.Barrier(self.processes + 1)
        for _ in range(self.processes):
            tasks = self._ctx.Queue()
            proc = self._ctx.Process(
                target=_load_process, args=(self._url, self._data_dir, tasks, self._results, self._barrier)
            )
            proc.start()
            self._tasks.append(tasks)
            self._procs.append(proc)
        for _ in self._procs:
            _ready, pid = self._results.get(timeout=300)
            self.pids.append(int(pid))
        return self

    def __exit__(self, *_: object) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()

    def run(
        self,
        messages: Sequence[tuple[str, tuple[str, str]]],
        *,
        concurrency: int,
        rate: float | None = None,
        batch: int = 1,
    ) -> SubmitResult:
        """Send ``messages`` with ``concurrency`` requests in flight (closed loop), or at ``rate`` msg/s;
        ``batch`` > 1 sends them ``batch`` at a time through ``POST /v1/messages/batches``. The clock runs
        from the moment every load process is ready to the last answer."""
        work = chunks(messages, batch)
        threads = max(1, concurrency // self.processes)
        per_rate = rate / self.processes / max(1, batch) if rate else None
        for i, tasks in enumerate(self._tasks):
            tasks.put((work[i :: self.processes], threads, per_rate))
        self._barrier.wait(timeout=300)
        began = time.perf_counter()
        latencies: list[float] = []
        errors: list[str] = []
        accepted = 0
        cpu = 0.0
        for _ in self._procs:
            lat, err, took, used = self._results.get(timeout=900)
            latencies += lat
            errors += err
            accepted += took
            cpu += used
        seconds = time.perf_counter() - began
        return SubmitResult(len(messages), accepted, errors, seconds, latencies, cpu, self.processes, threads)


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


def measure_generator(messages: int, *, processes: int = 2, batch: int = 100) -> dict[str, Any]:
    """The load generator measured alone, against the in-process stand-in (no server, no network).

    * ``signed_per_s_one_core``: envelopes built (fresh header), signed (Ed25519 over RFC 8785) and put in
      a signed request (RFC 9421, JSON body) per second of one process's CPU, no HTTP client;
    * one envelope per request and batches of ``batch``, through the load processes and their HTTP
      clients at concurrency 16 and 2: messages/s and the load processes' CPU per message.
    """
    factories, _ = _factories(None, None)
    items = plan(messages)
    url = "http://bench.invalid/v1/messages"
    begun = time.process_time()
    for sender, (target, message_id) in items:
        factory = factories[sender]
        body = orjson.dumps(factory.envelope(target, message_id))
        factory.signer.sign("POST", url, {"Idempotency-Key": message_id}, body)
    one_core = messages / (time.process_time() - begun)
    out: dict[str, Any] = {"messages": messages, "signed_per_s_one_core": round(one_core, 1)}
    with LoadPool(None, None, processes=processes) as pool:
        for name, concurrency, size in (("single", 16, 1), ("batched", 2, batch)):
            result = pool.run(plan(messages), concurrency=concurrency, batch=size)
            out[name] = {
                "concurrency": concurrency,
                "batch": size,
                "sent_per_s": round(result.rate, 1),
                "errors": len(result.errors),
                "generator_cpu_ms_per_msg": round(result.generator_cpu_s * 1000 / messages, 3),
            }
    out["load_processes"] = processes
    return out
