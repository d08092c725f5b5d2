"""Limits of issue 6: body size (413), per-agency rate (429 + Retry-After), shared Redis buckets, pagination.

Apps with small limits are built with the app factory from the session's settings; nothing here waits on
a clock: the rates are so low that no token comes back during a test.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from broker.app import create_app as create_broker_app
from broker.config import Settings
from tests.factories import Region
from tests.hostile.conftest import (
    AUDIT_TABLES,
    CONTENT_TABLES,
    assert_problem,
    nothing_stored,
    signed_http,
)

pytestmark = pytest.mark.integration

SMALL_BODY = 2048
# No token comes back within a test (one per 1,000 s), so the outcome does not depend on timing.
SLOW = 0.001


@pytest.fixture
def small_body_app(settings: Settings, region: Region) -> Iterator[TestClient]:
    with TestClient(create_broker_app(settings.model_copy(update={"max_body_bytes": SMALL_BODY}))) as c:
        yield c


# --- body size -------------------------------------------------------------------------------------


def test_declared_content_length_over_the_limit_is_413(
    small_body_app: TestClient, region: Region, engine: Engine
) -> None:
    body = b'{"header": "' + b"x" * (SMALL_BODY * 2) + b'"}'
    with nothing_stored(engine, CONTENT_TABLES + AUDIT_TABLES):
        response = signed_http(small_body_app, region, "AL-ASP").post(
            "/v1/messages", content=body, headers={"Content-Type": "application/json"}
        )
    problem = assert_problem(response, 413)
    assert problem["type"] == "urn:spoc:problem:too-large"


def _call_asgi(app: FastAPI, chunks: list[bytes]) -> tuple[dict[str, Any], bytes, int]:
    """POST /v1/messages as a chunked upload (no Content-Length); returns (start, body, chunks read)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    # In a thread of its own: a session-scoped Playwright (the browser tests) may hold a running event
    # loop in this one, and asyncio.run refuses to nest.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start, body, read


def test_chunked_body_growing_past_the_limit_is_413_and_not_read_to_the_end(
    small_body_app: TestClient, engine: Engine
) -> None:
    chunks = [b"[" + b"1," * 400] + [b"1," * 500] * 200  # ~200 KB offered, 2 KiB allowed
    with nothing_stored(engine, CONTENT_TABLES + AUDIT_TABLES):
        start, body, read = _call_asgi(small_body_app.app, chunks)  # type: ignore[arg-type]
    assert start["status"] == 413
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith("application/problem+json")
    assert b"urn:spoc:problem:too-large" in body
    # It stopped reading once past the limit: a few chunks, not all 201.
    assert read <= 4


def test_a_body_under_the_limit_is_read(small_body_app: TestClient, engine: Engine) -> None:
    """Control for the two above: a small chunked body gets past the size check (to the signature check)."""
    start, body, _ = _call_asgi(small_body_app.app, [b"{", b"}"])  # type: ignore[arg-type]
    assert start["status"] == 401, body


# --- rate limit ------------------------------------------------------------------------------------


def _rate_limited_app(settings: Settings, **update: Any) -> FastAPI:
    return create_broker_app(
        settings.model_copy(update={"rate_limit_per_second": SLOW, "rate_limit_burst": 2, **update})
    )


def test_an_agency_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    settings: Settings, region: Region
) -> None:
    with TestClient(_rate_limited_app(settings)) as client:
        noisy = signed_http(client, region, "ME-UP")
        assert [noisy.get("/v1/inbox").status_code for _ in range(2)] == [200, 200]
        refused = noisy.get("/v1/inbox")
        problem = assert_problem(refused, 429)
        assert problem["type"] == "urn:spoc:problem:rate-limited"
        assert int(refused.headers["Retry-After"]) >= 1
        # Another agency has a bucket of its own.
        assert signed_http(client, region, "ME-BP").get("/v1/inbox").status_code == 200
        assert_problem(noisy.get("/v1/inbox"), 429)


def test_the_rate_is_counted_after_the_signature(settings: Settings, region: Region) -> None:
    """Unsigned calls naming an agency cannot spend its tokens."""
    with TestClient(_rate_limited_app(settings)) as client:
        for _ in range(5):
            assert_problem(client.get("/v1/inbox"), 401)
        assert signed_http(client, region, "RS-CUS").get("/v1/inbox").status_code == 200


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[str]:
    prefix = "spoc:rate:"
    agencies = ("SI-DT", "SI-BP")
    r = redis.Redis.from_url(redis_url)
    r.delete(*(prefix + a for a in agencies))
    yield redis_url
    r.delete(*(prefix + a for a in agencies))
    r.close()


def test_the_redis_bucket_is_shared_by_two_app_instances(
    settings: Settings, region: Region, shared_redis: str
) -> None:
    first = _rate_limited_app(settings, broker_url=shared_redis)
    second = _rate_limited_app(settings, broker_url=shared_redis)
    with TestClient(first) as one, TestClient(second) as two:
        assert signed_http(one, region, "SI-DT").get("/v1/inbox").status_code == 200
        assert signed_http(two, region, "SI-DT").get("/v1/inbox").status_code == 200
        # The burst of 2 is spent across both replicas: each now refuses.
        assert_problem(signed_http(one, region, "SI-DT").get("/v1/inbox"), 429)
        refused = signed_http(two, region, "SI-DT").get("/v1/inbox")
        assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert signed_http(two, region, "SI-BP").get("/v1/inbox").status_code == 200


# --- pagination ------------------------------------------------------------------------------------

# Lists without a ``limit`` whose length is bounded by something other than traffic (reference data).
BOUNDED = {
    "/v1/directory/countries": "the region's countries",
    "/v1/directory/agencies": "the region's agencies",
    "/v1/directory/parties/{party_id}/keys": "one party's key history",
    "/v1/messages/{message_id}/dissemination-requests": "one agency's requests about one message",
}
# BUG (issue 6, "pagination on every list"): these lists grow with traffic and take no limit; they live in
# contact_points/review/api.py (owned elsewhere). Fix: `limit: Annotated[int, Query(ge=1, le=500)] = 100`
# and `.limit(limit)` on their queries.
UNPAGINATED: set[str] = set()
PATH_VALUES = {"direction": "inbound"}


def _list_operations(app: FastAPI) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, operations in app.openapi()["paths"].items():
        operation = operations.get("get")
        if operation is None:
            continue
        schema = (
            operation["responses"]["200"].get("content", {}).get("application/json", {}).get("schema", {})
        )
        params = {p["name"]: p for p in operation.get("parameters", [])}
        if schema.get("type") == "array" or "limit" in params:
            found.append((path, params))
    return found


def test_every_list_is_paginated(app: FastAPI) -> None:
    lists = _list_operations(app)
    assert len(lists) >= 8
    unpaginated = {path for path, params in lists if "limit" not in params}
    assert unpaginated - set(BOUNDED) == UNPAGINATED


@pytest.fixture(scope="module")
def bearer(app: FastAPI, region: Region) -> dict[str, dict[str, str]]:
    tokens = {}
    with TestClient(app) as client:
        for role, user in (("officer", "al-officer"), ("auditor", "regional-auditor")):
            response = client.post(
                "/v1/auth/login", json={"username": user, "password": region.password(user)}
            )
            assert response.status_code == 200, response.text
            tokens[role] = {"Authorization": f"Bearer {response.json()['token']}"}
    return tokens


def test_every_limit_above_its_maximum_is_refused(
    client: TestClient, region: Region, bearer: dict[str, dict[str, str]]
) -> None:
    agency = signed_http(client, region, "AL-CUS")
    checked = []
    for path, params in _list_operations(client.app):  # type: ignore[arg-type]
        if "limit" not in params:
            continue
        maximum = params["limit"]["schema"]["maximum"]
        url = path.format(**PATH_VALUES)
        if path.startswith(("/v1/inbox", "/v1/messages")):
            fine, over = (
                agency.get(url, params={"limit": maximum}),
                agency.get(url, params={"limit": maximum + 1}),
            )
        else:
            headers = bearer["auditor" if path.startswith("/v1/audit") else "officer"]
            fine = client.get(url, params={"limit": maximum}, headers=headers)
            over = client.get(url, params={"limit": maximum + 1}, headers=headers)
        assert fine.status_code == 200, (path, fine.text)
        # Schema violations are 400 invalid-input problem+json in this API (broker.app), never a silent clamp.
        problem = assert_problem(over, 400)
        assert problem["type"] == "urn:spoc:problem:invalid-input"
        assert any("limit" in e["loc"] for e in problem["errors"]), problem
        checked.append(path)
    assert {"/v1/inbox", "/v1/cp/deliveries", "/v1/cp/queues/{direction}", "/v1/audit/entries"} <= set(
        checked
    )


# --- timeouts on every outbound call -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# Operator tools that run beside the system (benchmark), not in the request or worker path.
TOOLS = ("broker/bench/", "workers/bench_tasks.py")
HTTP_CALLS = {"Client", "AsyncClient", "get", "post", "put", "delete", "request", "stream"}


def _outbound_calls() -> list[tuple[str, int, str, set[str]]]:
    """Every ``httpx.<call>(...)`` and ``redis.Redis[.from_url](...)`` in the service code, with its keywords."""
    found = []
    for package in ("broker", "contact_points", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith(TOOLS):
                continue
            for node in ast.walk(ast.parse(path.read_text(), name)):
                if not isinstance(node, ast.Call):
                    continue
                called = ast.unparse(node.func)
                keywords = {k.arg for k in node.keywords if k.arg is not None}
                is_http = called.startswith("httpx.") and called.split(".", 1)[1] in HTTP_CALLS
                if is_http or called in ("redis.Redis.from_url", "redis.Redis"):
                    found.append((name, node.lineno, called, keywords))
    return found


def test_every_outbound_call_has_a_timeout() -> None:
    calls = _outbound_calls()
    assert any(name == "broker/delivery/push.py" for name, *_ in calls)  # the walk sees the push client
    missing = [
        f"{name}:{line} {called}"
        for name, line, called, keywords in calls
        if not (keywords & {"timeout", "socket_timeout"})
    ]
    assert not missing, "outbound calls without a timeout: " + ", ".join(missing)
