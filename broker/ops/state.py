"""The node's state as gauges, read from the database (and the task queue) when ``/metrics`` is scraped.

The database is the truth of what waits where, so these numbers are the same whichever API process is
scraped, need no worker to be up, and survive restarts. One scrape costs a dozen small queries, each
answered from an index except the dead-letter and alert counts (small tables in a healthy node); the
reachability of endpoints looks only at the newest ``RECENT`` attempts (a peer or agency without traffic
among them is not reported, rather than reported from stale evidence).

Labels are bounded: a message state (``broker.messages.states.State``), a queue name (``QUEUES``), an alert
kind (``broker.audit.alerts``), and for reachability an agency id or a peer node id, which are the
directory's configuration, not personal data. Never a message id, a person or content.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from broker.audit.models import AuditAlert, AuditCheckpoint, AuditPending
from broker.config import Settings
from broker.db import utcnow
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.hop.models import Hop
from broker.messages.models import Message
from broker.messages.states import CLOCK_RUNNING, State
from broker.outbox.models import OutboxItem

log = logging.getLogger("spoc.ops")

RECENT: Final = 500
"""How many of the newest delivery attempts (pushes, hops) the reachability of endpoints is read from."""
CELERY_QUEUE: Final = "celery"

QUEUES: Final = (
    "outbound_review",  # awaiting the origin contact point's officers (origin_review)
    "inbound_review",  # awaiting the destination contact point's officers (destination_review)
    "push",  # pushes to agencies' endpoints not yet delivered (retries included)
    "pull",  # delivered to a pull inbox, not yet acknowledged by the agency
    "hop",  # hops to peer nodes not yet receipted (retries included)
    "dead_letter",  # pushes and hops given up after their last attempt, until an officer acts
    "outbox",  # outbox rows not yet done (their work has not run)
)


@dataclass(frozen=True)
class Queue:
    depth: int = 0
    oldest: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """What one scrape read. ``endpoints`` maps (kind, id) to whether the last attempt there succeeded."""

    at: datetime
    messages: dict[str, int]
    overdue: int
    queues: dict[str, Queue]
    audit_pending: int
    checkpoint: tuple[datetime, int] | None
    alerts: dict[str, int]
    endpoints: dict[tuple[str, str], bool] = field(default_factory=dict)


def _queue(session: Session, query: Select[int, Any]) -> Queue:
    depth, oldest = session.execute(query).one()
    return Queue(int(depth or 0), oldest)


def _count_and_oldest(column: QueryableAttribute[Any], *where: ColumnElement[bool]) -> Select[int, Any]:
    """How many rows match ``where`` and the least ``column`` (a time) among them."""
    return select(func.count(), func.min(column)).where(*where)


def read(session: Session, *, now: datetime | None = None) -> Snapshot:
    """Read the node's state in ``session`` (read only)."""
    now = now or utcnow()
    by_state = dict.fromkeys((str(s) for s in State), 0)
    for state, n in session.execute(select(Message.state, func.count()).group_by(Message.state)).all():
        if state in by_state:
            by_state[state] = int(n)
    overdue = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.state.in_([str(s) for s in CLOCK_RUNNING]),
            Message.paused_at.is_(None),
            Message.deadline_at < now,
        )
    )
    push_dead = _queue(
        session,
        _count_and_oldest(InboxItem.last_attempt_at, InboxItem.status == DeliveryStatus.DEAD),
    )
    hop_dead = _queue(
        session, _count_and_oldest(Hop.dead_at, Hop.direction == "out", Hop.dead_at.is_not(None))
    )
    queues = {
        "outbound_review": _queue(
            session, _count_and_oldest(Message.updated_at, Message.state == State.ORIGIN_REVIEW)
        ),
        "inbound_review": _queue(
            session, _count_and_oldest(Message.updated_at, Message.state == State.DESTINATION_REVIEW)
        ),
        "push": _queue(
            session,
            _count_and_oldest(
                InboxItem.delivered_at,
                InboxItem.status == DeliveryStatus.PENDING,
                InboxItem.channel == Channel.PUSH,
            ),
        ),
        "pull": _queue(
            session,
            _count_and_oldest(
                InboxItem.delivered_at,
                InboxItem.status == DeliveryStatus.DELIVERED,
                InboxItem.channel == Channel.PULL,
                InboxItem.acked_at.is_(None),
            ),
        ),
        # A pending hop always has next_attempt_at (its due time, or its lease): the indexed column.
        "hop": _queue(
            session, _count_and_oldest(Hop.at, Hop.next_attempt_at.is_not(None), Hop.direction == "out")
        ),
        "dead_letter": Queue(
            push_dead.depth + hop_dead.depth,
            min((t for t in (push_dead.oldest, hop_dead.oldest) if t is not None), default=None),
        ),
        "outbox": _queue(session, _count_and_oldest(OutboxItem.created_at, OutboxItem.done_at.is_(None))),
    }
    newest = session.execute(
        select(AuditCheckpoint.issued_at, AuditCheckpoint.size).order_by(AuditCheckpoint.id.desc()).limit(1)
    ).first()
    return Snapshot(
        at=now,
        messages=by_state,
        overdue=int(overdue or 0),
        queues=queues,
        audit_pending=int(session.scalar(select(func.count()).select_from(AuditPending)) or 0),
        checkpoint=(newest[0], int(newest[1])) if newest is not None else None,
        alerts={
            str(kind): int(n)
            for kind, n in session.execute(select(AuditAlert.kind, func.count()).group_by(AuditAlert.kind))
        },
        endpoints=_endpoints(session),
    )


def _endpoints(session: Session) -> dict[tuple[str, str], bool]:
    """Per agency push endpoint and per peer node: did the newest attempt there succeed?"""
    found: dict[tuple[str, str], bool] = {}
    pushes = session.execute(
        select(InboxItem.agency_id, InboxItem.status, InboxItem.last_attempt_at)
        .where(
            InboxItem.channel == Channel.PUSH,
            InboxItem.attempts > 0,
            InboxItem.status != DeliveryStatus.SUPERSEDED,
        )
        .order_by(InboxItem.id.desc())
        .limit(RECENT)
    ).all()
    latest: dict[str, datetime] = {}
    for agency, status, at in pushes:
        if at is not None and (agency not in latest or at > latest[agency]):
            latest[agency] = at
            found[("agency", agency)] = status == DeliveryStatus.DELIVERED
    hops = session.execute(
        select(Hop.peer_node, Hop.receipt.is_not(None))
        .where(Hop.direction == "out", Hop.attempts > 0)
        .order_by(Hop.id.desc())
        .limit(RECENT)
    ).all()
    for peer, receipted in hops:
        found.setdefault(("peer", peer), bool(receipted))  # newest first: the first seen is the latest
    return found


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """The gauges of ``snapshot``."""
    now = snapshot.at
    messages = GaugeMetricFamily("spoc_messages", "Messages on this node, by state.", labels=["state"])
    for state, n in snapshot.messages.items():
        messages.add_metric([state], n)
    yield messages
    yield GaugeMetricFamily(
        "spoc_messages_overdue",
        "Requests past their deadline and still waiting for their answer (clock running).",
        value=snapshot.overdue,
    )
    depth = GaugeMetricFamily("spoc_queue_depth", "Items waiting in each queue.", labels=["queue"])
    oldest = GaugeMetricFamily(
        "spoc_queue_oldest_age_seconds",
        "Age of the oldest item waiting in each queue (0 when empty).",
        labels=["queue"],
    )
    for name in QUEUES:
        queue = snapshot.queues.get(name, Queue())
        depth.add_metric([name], queue.depth)
        oldest.add_metric([name], _age(now, queue.oldest))
    yield depth
    yield oldest
    yield GaugeMetricFamily(
        "spoc_outbox_lag_seconds",
        "Age of the oldest outbox row not yet done: how far the workers are behind the committed changes.",
        value=_age(now, snapshot.queues.get("outbox", Queue()).oldest),
    )
    yield GaugeMetricFamily(
        "spoc_audit_pending",
        "Audit entries committed but not yet sequenced into the log.",
        value=snapshot.audit_pending,
    )
    age = GaugeMetricFamily(
        "spoc_audit_checkpoint_age_seconds", "Age of the newest signed checkpoint of the audit log."
    )
    size = GaugeMetricFamily("spoc_audit_checkpoint_size", "Tree size of the newest signed checkpoint.")
    if snapshot.checkpoint is not None:
        age.add_metric([], _age(now, snapshot.checkpoint[0]))
        size.add_metric([], snapshot.checkpoint[1])
    yield age
    yield size
    alerts = GaugeMetricFamily(
        "spoc_witness_alerts",
        "Alerts recorded by the log's witnesses and checks (forks, inconsistent checkpoints), by kind.",
        labels=["kind"],
    )
    for kind, n in sorted(snapshot.alerts.items()):
        alerts.add_metric([kind], n)
    yield alerts
    up = GaugeMetricFamily(
        "spoc_endpoint_up",
        "Whether the newest delivery attempt to an agency's push endpoint (kind=agency) or a peer node "
        "(kind=peer) succeeded (1) or failed (0).",
        labels=["kind", "endpoint"],
    )
    for (kind, endpoint), ok in sorted(snapshot.endpoints.items()):
        up.add_metric([kind, endpoint], 1.0 if ok else 0.0)
    yield up


class StateCollector(Collector):
    """Reads the state at each collection. A database that cannot be read makes ``spoc_state_up`` 0 (and
    the state gauges absent) rather than the scrape fail: the per-process counters still get through."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self._factory = factory
        self._queue_key = settings.broker_key_prefix + CELERY_QUEUE
        self._redis = (
            redis.Redis.from_url(settings.broker_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            if settings.broker_url.startswith(("redis://", "rediss://"))
            else None
        )

    def collect(self) -> Iterable[Metric]:
        try:
            with self._factory() as session:
                snapshot = read(session)
        except SQLAlchemyError as exc:
            log.warning("metrics: could not read the state: %s", type(exc).__name__)
            snapshot = None
        yield GaugeMetricFamily(
            "spoc_state_up",
            "Whether this scrape could read the node's state from the database.",
            value=0 if snapshot is None else 1,
        )
        if snapshot is not None:
            yield from families(snapshot)
        tasks = GaugeMetricFamily(
            "spoc_task_queue_length", "Tasks waiting in the Celery queue (Redis only).", labels=["queue"]
        )
        if self._redis is not None:
            try:
                tasks.add_metric([CELERY_QUEUE], float(self._redis.llen(self._queue_key)))
            except redis.RedisError as exc:
                log.warning("metrics: could not read the task queue: %s", type(exc).__name__)
        yield tasks
