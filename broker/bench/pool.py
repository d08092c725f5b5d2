"""The load processes: agency systems submitting envelopes over HTTP, out of the way of what they measure.

The processes (:class:`LoadPool`) start once per run and seal one payload per route before any clock
starts; in a timed window each message gets a fresh header signed by its sender
(``broker.bench.generator``) and each request is signed (RFC 9421), as in real use. The CPU those
processes spend inside the window is reported as the generator's own, per message. Load runs in several
processes (one GIL each), each with a few threads holding their own HTTP client. ``measure_generator``
measures them alone, against an in-process stand-in for the server.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from broker.bench.generator import EnvelopeFactory, fake_credentials, fake_exchange, route_payload
from broker.bench.load import ROUTES, SubmitResult, Work, chunks, credentials, plan
from broker.client.agency import AgencyClient

__all__ = ["LoadPool", "measure_generator"]


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
