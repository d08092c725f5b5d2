"""Helpers of the hostile-input suite: signed raw calls, the problem+json contract, counting stored rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from broker.client.agency import SignedRequests
from broker.crypto import KeyPair
from tests.factories import Region

BASE = "http://testserver"
# Where a submitted message leaves rows; audit tables are counted apart (refusals are audited by design).
CONTENT_TABLES = ("messages", "custody_steps", "approvals", "outbox", "idempotency_records", "inbox_items")
AUDIT_TABLES = ("audit_pending", "audit_entries")


_Signed = SignedRequests  # the agency client's own RFC 9421 signer


def signing_key(region: Region, agency_id: str) -> KeyPair:
    return KeyPair.from_private_jwk(region.seed.agencies[agency_id].signing_key)


def signed_http(client: TestClient, region: Region, agency_id: str) -> httpx.Client:
    """Raw HTTP as ``agency_id``: every request carries a fresh RFC 9421 signature over what is sent."""
    return httpx.Client(
        base_url=BASE, transport=client._transport, auth=_Signed(signing_key(region, agency_id))
    )


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A 4xx RFC 9457 problem+json with a type, title and detail; returns the problem."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    problem = response.json()
    assert isinstance(problem, dict)
    assert problem["status"] == response.status_code
    for member in ("type", "title", "detail"):
        assert isinstance(problem.get(member), str), problem
        assert problem[member], problem
    return problem


def row_counts(engine: Engine, tables: tuple[str, ...]) -> dict[str, int]:
    with engine.connect() as connection:
        # Table names come from the constants above, never from input.
        return {t: connection.scalar(text(f"SELECT count(*) FROM {t}")) or 0 for t in tables}  # noqa: S608


@contextmanager
def nothing_stored(engine: Engine, tables: tuple[str, ...] = CONTENT_TABLES) -> Iterator[None]:
    """The block adds no row to ``tables``."""
    before = row_counts(engine, tables)
    yield
    assert row_counts(engine, tables) == before
