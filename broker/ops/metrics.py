"""Every per-process metric of spoc, and how one scrape reads them across processes.

Two kinds of metric, kept apart:

- **Events counted by the process that saw them** (defined here): HTTP requests and their latency by route
  template, deliveries by outcome, deadline warnings and breaches, Celery tasks by outcome. A node runs
  several such processes (uvicorn's workers, Celery's prefork children, on one host or many).
- **State read at scrape time** from the database and the queue (``broker.ops.state``): messages by state,
  queue depths and ages, outbox lag, the audit log's progress, alerts, reachability. The database is the
  truth, so these are right whichever process answers and survive restarts.

Across processes the counters use prometheus-client's multiprocess mode: every process that has
``PROMETHEUS_MULTIPROC_DIR`` in its environment *at import* writes its values to memory-mapped files in that
directory, and a scrape adds up the files of every process, the dead included (a counter never goes back
because a Celery child was recycled). Chosen over a port per process because Celery's prefork children and
uvicorn's workers cannot each listen on a port of their own, and a scrape target per process would make
Prometheus's targets follow the pool's churn. The directory must be empty when the processes that share it
start (``broker.launcher`` makes ``DATA_DIR/metrics`` anew; docker-compose mounts a tmpfs) and is per host:
processes on other machines (or in other containers, whose pids may collide) each have their own, and a
worker without an API beside it serves its own on ``SPOC_WORKER_METRICS_PORT`` (``broker.ops.server``).
Without the variable (tests, one process) the values live in this process, in ``REGISTRY``.

Labels are bounded enumerations and configuration, never message ids, content or people: a route *template*
(``/v1/messages/{message_id}``, never the path), a method, a status class (``2xx``), a channel, an outcome, a
task name. ``tests/broker/ops`` checks that a scrape after real traffic carries no id.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# ``*_created`` series double the count and are not exported in multiprocess mode: one output in both modes.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY: Final = CollectorRegistry()
"""This process's metrics when it is not in multiprocess mode (in that mode their values are in the files)."""

HTTP_REQUESTS: Final = Counter(
    "spoc_http_requests",
    "HTTP requests answered, by route template, method and status class.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION: Final = Histogram(
    "spoc_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
DELIVERIES: Final = Counter(
    "spoc_deliveries",
    "Delivery attempts settled by the workers: pushes to agencies (channel=push) and hops to peer nodes "
    "(channel=hop), by outcome (delivered, retried, dead_lettered, skipped).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
DEADLINE_EVENTS: Final = Counter(
    "spoc_deadline_events",
    "Deadline warnings (kind=warned, at 75 %) and breaches escalated (kind=breached) by the deadline monitor.",
    ["kind"],
    registry=REGISTRY,
)
TASKS: Final = Counter(
    "spoc_tasks",
    "Celery tasks finished, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
    registry=REGISTRY,
)

CHANNELS: Final = ("push", "hop")
OUTCOMES: Final = ("delivered", "retried", "dead_lettered", "skipped")
# What the push and hop settle steps call each result (broker.delivery.push, broker.hop.outbound).
_OUTCOME_OF: Final = {
    "delivered": "delivered",
    "sent": "delivered",
    "retry": "retried",
    "dead": "dead_lettered",
    "skipped": "skipped",
}
DEADLINE_KINDS: Final = ("warned", "breached")


def initialise() -> None:
    """Give every bounded label combination its zero, so a series exists (and ``rate()`` works) before its
    first event. Called by the API factory and the worker at start, not at import (in multiprocess mode a
    value is a file, and a module import should not write files)."""
    for channel in CHANNELS:
        for outcome in OUTCOMES:
            DELIVERIES.labels(channel, outcome)
    for kind in DEADLINE_KINDS:
        DEADLINE_EVENTS.labels(kind)


def count_deliveries(channel: str, results: Mapping[str, int]) -> None:
    """Add a settled batch's counts (``{"delivered": 3, "retry": 1, ...}``) under ``channel``."""
    for result, n in results.items():
        outcome = _OUTCOME_OF.get(result)
        if outcome is not None and n:
            DELIVERIES.labels(channel, outcome).inc(n)


def count_deadlines(*, warned: int, breached: int) -> None:
    if warned:
        DEADLINE_EVENTS.labels("warned").inc(warned)
    if breached:
        DEADLINE_EVENTS.labels("breached").inc(breached)


def multiprocess_dir() -> str | None:
    """The shared directory of this process's metrics, or None when they live in the process."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Local(Collector):
    """This process's own metrics as one collector (so a scrape registry can add the state collector)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """A registry for one scrape: every process's counters (the shared directory's, else this process's),
    then ``extra`` collectors (the state read from the database)."""
    registry = CollectorRegistry()
    directory = multiprocess_dir()
    if directory is not None:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # as above
    else:
        registry.register(_Local())
    for collector in extra:
        registry.register(collector)
    return registry
