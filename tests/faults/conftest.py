"""One running stack for the whole fault suite (faults and soak); each run's counts go to the summary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Agencies, Stack, running_stack
from tests.faults.workload import REPORTS, Run


@pytest.fixture(scope="package")
def stack(redis_url: str) -> Iterator[Stack]:
    # A Redis database of its own: this suite flushes it and kills workers, and the integration tests'
    # worker (same session) must never see its tasks, nor it theirs.
    base, _, index = redis_url.rpartition("/")
    with running_stack(f"{base}/{int(index) % 15 + 1}") as running:
        yield running


@pytest.fixture(scope="package")
def agencies(stack: Stack) -> Iterator[Agencies]:
    ends = Agencies(stack)
    ends.start()
    yield ends
    ends.stop()


@pytest.fixture
def run(stack: Stack, agencies: Agencies, request: pytest.FixtureRequest) -> Iterator[Run]:
    current = Run(stack, agencies)
    current.start()
    already = len(REPORTS)
    yield current
    current.stop()
    # Carried on the test's report so the summary (tests/conftest.py) has it under pytest-xdist as well.
    for name, report in REPORTS[already:]:
        request.node.user_properties.append(("delivery under faults", f"{name}: {report.line()}"))
