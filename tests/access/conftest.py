"""One world (``tests.access.world``) for every test of this directory: built once, only read or extended."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from tests.access.world import World, build_world
from tests.factories import Region


@pytest.fixture(scope="package")
def world(app: FastAPI, region: Region) -> Iterator[World]:
    yield from build_world(app, region)
