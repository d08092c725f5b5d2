"""The two-node region, one per test module (each its own pair of databases)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker.hop.nodes import Node, make_region_of_two


@pytest.fixture(scope="module")
def region_of_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    yield from make_region_of_two(tmp_path_factory)
