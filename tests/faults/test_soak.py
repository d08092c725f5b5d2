"""Soak: many messages through the whole exchange with faults injected while they flow, ending with the
counts sent, delivered, duplicated (must be 0) and lost (must be 0), shown in the test summary.

The short soak (``make test``) sends ``SPOC_SOAK_SHORT`` messages (250) with a worker killed halfway;
the long one (``make test-full``, marked slow) sends ``SPOC_SOAK_MESSAGES`` (5,000) with every fault of
the suite in turn: a worker killed, Redis flushed, a push endpoint down for a while, PostgreSQL restarted.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.faults.harness import PUSH, Agencies, Stack
from tests.faults.workload import Run, fault_during, finish

pytestmark = pytest.mark.integration

SHORT = int(os.environ.get("SPOC_SOAK_SHORT", "250"))
LONG = int(os.environ.get("SPOC_SOAK_MESSAGES", "5000"))


def _kill_a_worker(stack: Stack) -> None:
    stack.when_in_flight()
    stack.kill_worker(stack.workers[0])
    time.sleep(1.0)
    stack.start_worker()


def test_short_soak_with_a_worker_killed(stack: Stack, run: Run) -> None:
    fault_during(run, SHORT, at=0.5, fault=lambda: _kill_a_worker(stack))
    finish(run, f"short soak, {SHORT} messages, worker killed", timeout=180)


@pytest.mark.slow
def test_soak_with_every_fault(stack: Stack, agencies: Agencies, run: Run) -> None:
    endpoint = PUSH[1]

    def endpoint_down_for_a_while() -> None:
        agencies.down(endpoint)
        threading.Timer(8.0, agencies.up, args=(endpoint,)).start()

    def restart_postgres() -> None:
        stack.pg.stop()
        try:
            time.sleep(2.0)
        finally:
            stack.pg.start()

    def flush_in_flight() -> None:
        stack.when_in_flight()
        stack.flush_redis()

    fault_during(
        run,
        LONG,
        schedule=[
            (0.15, lambda: _kill_a_worker(stack)),
            (0.35, flush_in_flight),
            (0.55, endpoint_down_for_a_while),
            (0.75, restart_postgres),
        ],
    )
    finish(run, f"soak, {LONG} messages, every fault", timeout=1200)
