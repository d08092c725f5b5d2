"""``/metrics``, ``/ready`` and ``/health`` over HTTP, in-process (the running node: tests/integration)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.config import Settings
from broker.crypto import MasterKey
from broker.ops.metrics import REGISTRY
from broker.ops.ready import CACHE_SECONDS
from tests.broker.messages.spoc_builders import committed, officer_headers
from tests.factories import Region, deliver_request

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LABELS = {
    "route",
    "method",
    "status",
    "channel",
    "outcome",
    "kind",
    "task",
    "le",
    "state",
    "queue",
    "endpoint",
}
TOKEN = "a-metrics-token-for-the-tests"


@pytest.fixture
def local(app: FastAPI) -> Iterator[TestClient]:
    """A client calling from 127.0.0.1 (the default allowed network)."""
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        yield client


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)
    }


def test_health_and_ready(local: TestClient) -> None:
    assert local.get("/health").json() == {"status": "ok"}
    ready = local.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "queue": "ok", "keys": "ok"}}


def test_a_flood_of_ready_probes_costs_one_round_of_checks(local: TestClient) -> None:
    """``/ready`` is anonymous: within ``CACHE_SECONDS`` every probe gets the same answer, and the keys are
    unsealed once (the counter reads the process's own readiness object; nothing is replaced)."""
    readiness = local.app.state.readiness  # type: ignore[attr-defined]
    rounds = 0
    run = readiness._run

    def counted() -> dict[str, str]:
        nonlocal rounds
        rounds += 1
        return run()  # type: ignore[no-any-return]

    readiness._last = None
    readiness._run = counted
    started = time.monotonic()
    try:
        answers = {local.get("/ready").status_code for _ in range(50)}
    finally:
        readiness._run = run
    elapsed = time.monotonic() - started
    assert answers == {200}
    assert rounds <= 1 + int(elapsed / CACHE_SECONDS)  # one round per window, however slow this machine
    assert rounds < 50


def test_not_ready_names_each_failed_check_and_no_secret(settings: Settings, region: Region) -> None:
    from contact_points.app import create_app

    wrong = MasterKey.generate_secret()
    broken = settings.model_copy(
        update={"master_key": SecretStr(wrong), "broker_url": "redis://127.0.0.1:1/0"}
    )
    with TestClient(create_app(broken)) as client:
        answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["retry-after"] == "5"
    body = answer.json()
    assert body["type"] == "urn:spoc:problem:unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["queue"].startswith("failed: ")
    assert body["checks"]["keys"] == "failed: VerificationError"
    assert "queue" in body["detail"]
    assert "keys" in body["detail"]
    assert wrong not in answer.text
    assert "redis://" not in answer.text


def test_metrics_from_an_allowed_address(local: TestClient) -> None:
    local.get("/health")
    answer = local.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = _families(answer.text)
    for name in (
        "spoc_http_requests",
        "spoc_http_request_duration_seconds",
        "spoc_deliveries",
        "spoc_messages",
    ):
        assert name in families, name
    assert ("spoc_state_up", {}, 1.0) in families["spoc_state_up"]
    health = [v for n, labels, v in families["spoc_http_requests"] if labels.get("route") == "/health"]
    assert health
    assert health[0] >= 1


def test_metrics_refused_elsewhere_and_the_refusal_audited(app: FastAPI) -> None:
    with TestClient(app, client=("198.51.100.7", 40000)) as outside:
        answer = outside.get("/metrics", headers={"Authorization": "Bearer guessed-token-value"})
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] == "urn:spoc:problem:not-permitted"
    with TestClient(app) as client, committed(client) as session:
        entry = session.scalar(
            select(AuditEntry).where(AuditEntry.request_id == answer.headers["x-request-id"])
        )
    assert entry is not None
    assert entry.action == "access:denied"
    assert entry.details["route"] == "GET /metrics"
    assert entry.details["claimed"] == {"credential": "authorization header"}  # the header, never its value
    assert "guessed-token-value" not in str(entry.details)


def test_an_ipv4_caller_on_a_dual_stack_socket_is_judged_by_its_ipv4_address(app: FastAPI) -> None:
    """A server bound to ``::`` sees an IPv4 caller as ``::ffff:a.b.c.d``: the same host, the same rule (the
    loopback admitted, any other address refused), and a forwarded-for header changes nothing."""
    with TestClient(app, client=("::ffff:127.0.0.1", 50000)) as mapped_loopback:
        assert mapped_loopback.get("/metrics").status_code == 200
    with TestClient(app, client=("::ffff:198.51.100.7", 40000)) as mapped_outside:
        assert mapped_outside.get("/metrics").status_code == 403
    with TestClient(app, client=("198.51.100.7", 40000)) as outside:
        forged = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
        assert outside.get("/metrics", headers=forged).status_code == 403


def test_metrics_with_the_token_from_anywhere(settings: Settings, region: Region) -> None:
    from contact_points.app import create_app

    with TestClient(create_app(settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}))) as client:
        assert client.get("/metrics").status_code == 403  # "testclient" is no address
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_labels_are_templates_and_enumerations_never_ids(local: TestClient, region: Region) -> None:
    message_id, _ = deliver_request(
        local, region, sender="ME-UP", target="HR-POL", payload=b'{"p": "marker-x"}', category="fraud"
    )
    local.get(f"/v1/messages/{message_id}", headers=officer_headers(local, region, "hr-officer"))
    local.request("BREW", "/v1/messages")  # an odd method is counted as OTHER
    local.get(f"/no/such/{message_id}")  # an unmatched path is counted as "unmatched"
    text = local.get("/metrics").text
    assert message_id not in text
    assert UUID.search(text) is None
    assert "marker-x" not in text
    routes = {s[1]["route"] for s in _families(text)["spoc_http_requests"]}
    assert "/v1/messages/{message_id}" in routes
    assert "unmatched" in routes
    assert all(r.startswith("/") or r == "unmatched" for r in routes)
    methods = {s[1]["method"] for s in _families(text)["spoc_http_requests"]}
    assert "OTHER" in methods
    assert "BREW" not in methods
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= LABELS, (sample.name, sample.labels)


def test_an_access_line_carries_the_request_id_of_its_audit_entries(
    local: TestClient, region: Region, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoc.access")
    answer = local.post(
        "/v1/auth/login", json={"username": "al-officer", "password": region.password("al-officer")}
    )
    assert answer.status_code == 200
    rid = answer.headers["x-request-id"]
    lines = [r for r in caplog.records if r.name == "spoc.access" and getattr(r, "request_id", None) == rid]
    assert len(lines) == 1
    assert lines[0].__dict__["route"] == "/v1/auth/login"
    assert lines[0].__dict__["status"] == 200
    with committed(local) as session:
        actions = set(session.scalars(select(AuditEntry.action).where(AuditEntry.request_id == rid)))
    assert actions  # the login's audit entry, found from the log line's request id
    entries = local.get(
        "/v1/audit/entries",
        params={"request_id": rid},
        headers=officer_headers(local, region, "regional-auditor"),
    ).json()["entries"]
    assert {e["action"] for e in entries} == actions


def test_process_metrics_live_in_the_process_without_a_shared_directory() -> None:
    assert {f.name for f in REGISTRY.collect()} == {
        "spoc_http_requests",
        "spoc_http_request_duration_seconds",
        "spoc_deliveries",
        "spoc_deadline_events",
        "spoc_tasks",
    }
