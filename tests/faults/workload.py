"""Messages through the whole exchange under faults, and the end-of-run accounting.

``Run`` builds signed, sealed envelopes, submits them with retries (the same ``Idempotency-Key`` each
time, so a retry after a lost answer is the same submission), lets scripted officers approve and route
them, and receives them at push receivers and pull consumers. ``Run.report`` counts at the receiving
end (sent, delivered, duplicated, lost) and checks the broker's side: every message ``delivered`` and
acknowledged once, one delivery entry each in the audit log, nothing left in the outbox or retrying,
and the audit log verifying.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from broker.audit.models import AuditEntry
from broker.audit.service import sequence_all, verify_log
from broker.client.agency import AgencyClient
from broker.delivery.models import DeliveryStatus, InboxItem
from broker.messages.models import CustodyStep, Message
from broker.outbox.models import OutboxItem
from tests.faults.harness import ROUTES, Agencies, Stack, officers, retrying, wait_for

CUSTODY = ("submitted", "approved", "received", "routed")


@dataclass(frozen=True)
class Report:
    sent: int
    delivered: int
    duplicated: int
    lost: int
    redelivered_to_receivers: int  # offers the receivers' de-duplication absorbed (at-least-once at work)
    refusals: dict[int, int]
    problems: list[str]
    audit: str

    def line(self) -> str:
        return (
            f"sent={self.sent} delivered={self.delivered} duplicated={self.duplicated} lost={self.lost} "
            f"(receivers absorbed {self.redelivered_to_receivers} redeliveries; API refusals {self.refusals})"
        )


@dataclass
class Run:
    stack: Stack
    agencies: Agencies
    sent: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _officers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _baseline: int = 0
    _redelivered: int = 0
    _senders: dict[str, AgencyClient] = field(default_factory=dict)

    def start(self) -> None:
        with self.stack.session() as session:
            self._baseline = session.scalar(select(func.count()).select_from(Message)) or 0
        self._redelivered = self._receiver_duplicates()
        countries = {s.split("-")[0] for s, _ in ROUTES} | {t.split("-")[0] for _, t in ROUTES}
        self._officers = officers(self.stack, countries, self._stop, self.statuses)

    def envelopes(self, count: int, *, offset: int = 0) -> list[tuple[AgencyClient, dict[str, Any]]]:
        if not self._senders:
            self._senders = {s: self.agencies.client(s) for s, _ in ROUTES}
        senders = self._senders
        out = []
        for i in range(offset, offset + count):
            sender, target = ROUTES[i % len(ROUTES)]
            body = json.dumps({"ref": i, "pad": os.urandom(64).hex()}).encode()
            envelope = retrying(
                lambda s=sender, t=target, b=body: senders[s].build(  # type: ignore[misc]
                    payload=b,
                    destination_country=t.split("-")[0],
                    destination_agency=t,
                    category="fraud",
                    classification="RESTRICTED",
                )
            )
            out.append((senders[sender], envelope))
        return out

    def submit(self, work: list[tuple[AgencyClient, dict[str, Any]]], *, threads: int = 6) -> None:
        """Submit everything (retrying refusals and lost answers); bounded by ``retrying``'s timeout."""

        def one(job: tuple[AgencyClient, dict[str, Any]]) -> None:
            client, envelope = job
            receipt = retrying(lambda: client.submit(envelope), timeout=90, statuses=self.statuses)
            with self._lock:
                self.sent.append(receipt["message_id"])

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, work))

    def wait_delivered(self, timeout: float) -> None:
        expected = set(self.sent)

        def done() -> bool:
            if not expected <= self.agencies.sink.unique():
                return False
            with self.stack.session() as session:
                acked = session.scalar(
                    select(func.count())
                    .select_from(InboxItem)
                    .where(InboxItem.message_id.in_(expected), InboxItem.acked_at.is_not(None))
                )
            return acked == len(expected)

        try:
            wait_for(
                f"{len(expected)} messages delivered and acknowledged", done, timeout=timeout, interval=0.5
            )
        except TimeoutError:
            missing = len(expected - self.agencies.sink.unique())
            raise TimeoutError(
                f"{missing} of {len(expected)} messages not received\n{self.stack.logs()}"
            ) from None

    def _receiver_duplicates(self) -> int:
        pushed = sum(r.counters.duplicates for r in self.agencies.receivers.values())
        return pushed + self.agencies.pull_redeliveries

    def stop(self) -> None:
        self._stop.set()
        for thread in self._officers:
            thread.join(10)

    def report(self) -> Report:
        sink = self.agencies.sink
        sent = set(self.sent)
        handled = sink.unique()
        problems: list[str] = []
        with self.stack.session() as session:
            states = Counter(session.scalars(select(Message.state).where(Message.id.in_(sent))).all())
            if states != Counter({"delivered": len(sent)}):
                problems.append(f"message states {dict(states)}")
            deliveries = Counter(
                session.scalars(
                    select(AuditEntry.object_id).where(
                        AuditEntry.action == "message:delivered", AuditEntry.outcome == "ok"
                    )
                ).all()
            )
            twice = [m for m in sent if deliveries[m] != 1]
            if twice:
                problems.append(f"{len(twice)} messages without exactly one delivery entry, e.g. {twice[:3]}")
            open_rows = session.scalar(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.done_at.is_(None))
            )
            if open_rows:
                problems.append(f"{open_rows} outbox rows not done")
            stuck = session.scalar(
                select(func.count())
                .select_from(InboxItem)
                .where(InboxItem.status.in_((DeliveryStatus.PENDING, DeliveryStatus.DEAD)))
            )
            if stuck:
                problems.append(f"{stuck} pushes pending or dead")
            custody = Counter(
                session.scalars(select(CustodyStep.message_id).where(CustodyStep.message_id.in_(sent))).all()
            )
            partial = [m for m in sent if custody[m] != len(CUSTODY)]
            if partial:
                problems.append(
                    f"{len(partial)} messages without the {len(CUSTODY)} custody steps, e.g. {partial[:3]}"
                )
            total = (session.scalar(select(func.count()).select_from(Message)) or 0) - self._baseline
            if total != len(sent):
                problems.append(f"{total} messages stored for {len(sent)} accepted submissions")
            sequence_all(session)
        with self.stack.session() as session:
            audit = verify_log(session)
        if not audit.ok:
            problems.append(audit.line())
        redelivered = self._receiver_duplicates() - self._redelivered
        return Report(
            sent=len(sent),
            delivered=len(handled & sent),
            duplicated=sink.duplicated(),
            lost=len(sent - handled),
            redelivered_to_receivers=redelivered,
            refusals=dict(self.statuses),
            problems=problems,
            audit=audit.line(),
        )


def fault_during(
    run: Run,
    total: int,
    *,
    at: float = 0.5,
    fault: Callable[[], None] | None = None,
    schedule: Sequence[tuple[float, Callable[[], None]]] = (),
    batch: int = 50,
) -> None:
    """Submit ``total`` messages in batches (built as they go), firing each fault of ``schedule`` (or
    ``fault`` at ``at``) once that fraction of the messages is in."""
    pending = sorted([*schedule, *([(at, fault)] if fault is not None else [])], key=lambda f: f[0])
    for start in range(0, total, batch):
        run.submit(run.envelopes(min(batch, total - start), offset=start))
        while pending and start + batch >= pending[0][0] * total:
            pending.pop(0)[1]()


REPORTS: list[tuple[str, Report]] = []  # shown in the test session's summary (tests/faults/conftest.py)


def finish(run: Run, name: str, *, timeout: float) -> Report:
    """Wait for every message, account for it, and fail on any loss, duplicate or broker-side problem."""
    run.wait_delivered(timeout)
    report = run.report()
    REPORTS.append((name, report))
    assert report.problems == [], report.problems
    assert (report.lost, report.duplicated) == (0, 0), report.line()
    assert report.delivered == report.sent
    return report
