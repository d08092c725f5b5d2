"""One region for the witness tests: AL, XK and MK as separate in-process nodes, and an external log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker.witness.nodes import Region, region_of


@pytest.fixture(scope="session")
def witness_region(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    # pg_url: PostgreSQL is up (or the run fails/skips as for every other database test).
    with region_of(["AL", "XK", "MK"], tmp_path_factory.mktemp("witness-region")) as region:
        yield region
