"""Load generation: which agencies send to whom, how messages are cut into requests, scripted officers.

The load processes that send them are ``broker.bench.pool``. ``build_envelopes`` is the slow, faithful
path (every envelope sealed and signed by the real client) for in-process profiles and tests.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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


T = TypeVar("T")

Work = tuple[str, list[tuple[str, str]]]
"""One request's worth: the sending agency and its messages, (target agency, message id) each (one, or a batch)."""


def plan(count: int) -> list[tuple[str, tuple[str, str]]]:
    """``count`` messages spread over ``ROUTES``, each with a fresh id: (sender, (target, message id)).
    Only ids: the envelopes are made and signed by the load processes (``broker.bench.pool``)."""
    return [
        (ROUTES[i % len(ROUTES)][0], (ROUTES[i % len(ROUTES)][1], str(uuid.uuid4()))) for i in range(count)
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


IDLE_FIRST = 0.05
IDLE_MAX = 0.4


def log_in_officers(url: str, data_dir: Path, countries: Sequence[str]) -> dict[str, OfficerClient]:
    """One signed-in officer per contact point of ``countries`` (close them after). Done before a timed
    window: a login is an argon2id verification (64 MiB, t=3: about as much API CPU as a hundred decisions),
    which an officer pays once per shift, not per message."""
    accounts = json.loads((data_dir / "demo-accounts.json").read_text())
    signed_in: dict[str, OfficerClient] = {}
    try:
        for cc in countries:
            name = f"{cc.lower()}-officer"
            signed_in[cc] = OfficerClient(url, name, accounts[name]["password"], timeout=30)
    except BaseException:
        for client in signed_in.values():
            client.close()
        raise
    return signed_in


def officers_until_done(officers: Mapping[str, OfficerClient], expected: int, *, timeout: float) -> int:
    """Scripted officers (``log_in_officers``): each contact point approves its outbound queue and routes its
    inbound queue, a page (up to 100) at a time through ``POST /v1/cp/decisions``.

    Returns how many decisions were taken. Stops when ``expected`` messages have been routed or on timeout. A
    page answered 503 (the exchange's database unavailable: nothing of the page was written) is sent again.
    """
    routed = 0
    decisions = 0
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def officer(client: OfficerClient) -> None:
        nonlocal routed, decisions
        idle = IDLE_FIRST
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
            try:
                approved = client.decide_many(outbound)["decided"] if outbound else 0
                routed_now = client.decide_many(inbound)["decided"] if inbound else 0
            except ClientError as exc:
                if exc.status != 503:  # retryable (the page was rolled back whole), as a real client does
                    raise
                time.sleep(0.1)
                continue
            did = int(approved) + int(routed_now)
            with lock:
                routed += int(routed_now)
                decisions += did
            # Nothing to do: look again later, and later still while idle (a dozen officers polling two
            # queues ten times a second cost the API more than the decisions did), soon again after work.
            idle = IDLE_FIRST if did else min(idle * 2, IDLE_MAX)
            if not did:
                time.sleep(idle)

    pool = [threading.Thread(target=officer, args=(client,)) for client in officers.values()]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return decisions
