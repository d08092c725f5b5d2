"""Faults with real processes: after each, every message is delivered exactly once at the receiver, the
audit log verifies and nothing is stuck.

One stack for the module (a private PostgreSQL cluster, the session's Redis database, API, a Celery
worker, beat, push receivers and pull consumers); each test sends its own messages, breaks one thing
in the middle, and accounts for its messages at the end. Bounded: every wait has a timeout.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.harness import PUSH, Agencies, Stack
from tests.faults.workload import Run, fault_during, finish

pytestmark = pytest.mark.integration

MESSAGES = 40
DELIVERY_TIMEOUT = 90


def test_worker_killed_with_sigkill_in_the_middle_of_deliveries(stack: Stack, run: Run) -> None:
    hit: list[int] = []

    def kill_and_replace() -> None:
        hit.append(stack.when_in_flight())  # tasks reserved or running in the worker
        [worker] = stack.workers
        stack.kill_worker(worker)
        time.sleep(1.0)
        stack.start_worker()

    fault_during(run, MESSAGES, at=0.5, fault=kill_and_replace)
    finish(run, "worker killed (SIGKILL)", timeout=DELIVERY_TIMEOUT)
    assert hit[0] > 0


def test_redis_flushed_with_messages_in_flight(stack: Stack, run: Run) -> None:
    hit: list[int] = []

    def flush() -> None:
        hit.append(stack.when_in_flight())  # tasks queued in Redis or unacknowledged
        stack.flush_redis()

    fault_during(run, MESSAGES, at=0.5, fault=flush)
    finish(run, "redis flushed", timeout=DELIVERY_TIMEOUT)
    assert hit[0] > 0


def test_agency_endpoint_down_for_a_while_then_back(stack: Stack, agencies: Agencies, run: Run) -> None:
    down = PUSH[0]

    def endpoint_down() -> None:
        agencies.down(down)

    fault_during(run, MESSAGES, at=0.2, fault=endpoint_down)
    time.sleep(4)  # several attempts fail (connection refused) and are retried with backoff
    agencies.up(down)
    finish(run, "agency endpoint down then back", timeout=DELIVERY_TIMEOUT)


def test_postgresql_restarted_under_load(stack: Stack, run: Run) -> None:
    """The API answers 503 with Retry-After while the database is down, keeps nothing half-way, and the
    whole system recovers by itself (no process is restarted)."""
    seen: list[tuple[int, str | None, str]] = []

    def restart() -> None:
        stack.pg.stop()
        try:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    r = httpx.get(f"{stack.url}/v1/directory/parties/AL-SPOC/jwks", timeout=2)
                    seen.append(
                        (r.status_code, r.headers.get("retry-after"), r.headers.get("content-type", ""))
                    )
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        finally:
            stack.pg.start()

    fault_during(run, MESSAGES, at=0.4, fault=restart)
    finish(run, "postgresql restarted", timeout=DELIVERY_TIMEOUT)
    assert seen, "the API was not asked while the database was down"
    assert all(status == 503 for status, _, _ in seen), seen
    assert all(retry == "5" and kind.startswith("application/problem+json") for _, retry, kind in seen)
    assert stack.api is not None
    assert stack.api.poll() is None
    assert all(w.poll() is None for w in stack.workers)
