"""Operator metrics and logs on a running node: an API (uvicorn) and a worker (Celery with beat) as separate
processes on PostgreSQL and Redis, each with its own metrics directory as in the docker-compose layout, the
worker serving its own ``/metrics`` port. The node has a database of its own (a fresh one, migrated and
seeded): the dead letters, alerts and hops this module leaves behind reach no other test.

One message is taken through the exchange (agency → origin review → destination review → routing → a push to
an endpoint that refuses connections, retried and dead-lettered), and each metric the issue names is seen
changing on the API's or the worker's ``/metrics``. Where the walk cannot make a thing happen on its own
(a witness alert, a hop to a peer, a deadline passing, committed work the workers have not reached), the test
does what the cause would do, in the database, and the running processes show it.
Then a log line of the API is joined to its audit entry by request id, through the auditor's API.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session

from broker.audit.alerts import raise_alert
from broker.audit.tree import lock_log
from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_engine, utcnow
from broker.hop.models import Hop
from broker.launcher import free_port, prepare, running
from broker.messages.models import Message
from broker.outbox.models import OutboxItem
from tests.conftest import PG_ADMIN, _unavailable
from tests.factories import Region

pytestmark = pytest.mark.integration

TOKEN = "metrics-token-" + "x" * 20
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MARKER = "metrics-content-marker"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Node:
    api: str
    worker: str
    folder: Path
    engine: Engine
    region: Region
    celery: Celery

    def agency(self, agency_id: str) -> AgencyClient:
        return AgencyClient(self.api, self.region.seed.agencies[agency_id])

    def officer(self, username: str) -> OfficerClient:
        return OfficerClient(self.api, username, self.region.password(username))


def _wait(what: str, probe: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    return False


@pytest.fixture(scope="module")
def node(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    name = f"spoc_metrics_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    folder = tmp_path_factory.mktemp("metrics-node")
    secret = MasterKey.generate_secret()
    prefix = f"metrics-{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        environment="test",
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        broker_url=redis_url,
        master_key=SecretStr(secret),
        data_dir=folder,
        broker_key_prefix=prefix,
    )
    seed = prepare(settings)
    assert seed is not None
    api_port, worker_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPOC_", "PROMETHEUS_"))}
    env = base | {
        "SPOC_ENVIRONMENT": "test",
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_BROKER_URL": redis_url,
        "SPOC_MASTER_KEY": secret,
        "SPOC_DATA_DIR": str(folder),
        "SPOC_BROKER_KEY_PREFIX": prefix,
        "SPOC_TEST_CHEAP_PASSWORD_HASH": "1",
        "SPOC_PUSH_ALLOWED_NETWORKS": "127.0.0.1/32",
        "SPOC_PUSH_MAX_ATTEMPTS": "2",
        "SPOC_PUSH_BACKOFF_BASE_SECONDS": "0.2",
        "SPOC_PUSH_BACKOFF_CAP_SECONDS": "0.5",
        "SPOC_METRICS_TOKEN": TOKEN,
    }
    (folder / "api-metrics").mkdir()
    (folder / "worker-metrics").mkdir()
    api_env = env | {"PROMETHEUS_MULTIPROC_DIR": str(folder / "api-metrics"), "SPOC_METRICS_ALLOW": ""}
    worker_env = env | {
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "worker-metrics"),
        "SPOC_WORKER_METRICS_PORT": str(worker_port),
    }
    uvicorn = ["uvicorn", "contact_points.app:create_app", "--factory", "--port", str(api_port)]
    celery = ["celery", "--quiet", "-A", "workers.celery_app", "worker", "-B", "--concurrency=2"]
    processes = []
    for command, child_env, log in (
        ([*uvicorn, "--host", "127.0.0.1", "--log-level", "warning"], api_env, "api.log"),
        ([*celery, "-n", f"metrics-{api_port}@%h"], worker_env, "worker.log"),
    ):
        with (folder / log).open("ab") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", *command],
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    engine = make_engine(settings)
    app = Celery(broker=redis_url)
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    node = Node(
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{worker_port}",
        folder,
        engine,
        Region(seed, folder),
        app,
    )
    try:
        _wait("the API to be ready", lambda: _answers(f"{node.api}/ready"))
        _wait("the worker's metrics port", lambda: _answers(f"{node.worker}/metrics"))
        yield node
    finally:
        for proc in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        engine.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scrape(url: str, *, token: str | None = TOKEN) -> tuple[str, Samples]:
    """``url``'s /metrics as text and as samples (the token is harmless where the address is allowed)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= set(have))


def reported(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` with exactly ``labels``, or None if there is none."""
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_for(url: str, what: str, test: Callable[[Samples], bool], *, timeout: float = 60.0) -> Samples:
    def probe() -> Samples | None:
        samples = scrape(url)[1]
        return samples if test(samples) else None

    found: Samples = _wait(what, probe, timeout=timeout)
    return found


def test_metrics_change_as_a_message_flows(node: Node) -> None:
    refused = httpx.get(f"{node.api}/metrics", timeout=10)  # SPOC_METRICS_ALLOW="" : the token only
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    node.celery.send_task("spoc.audit.checkpoint")  # the seed's entries sequenced and signed: a quiet start
    api0 = wait_for(
        node.api,
        "the seeded log sequenced and signed",
        lambda s: value(s, "spoc_audit_pending") == 0 and value(s, "spoc_audit_checkpoint_size") > 0,
    )
    worker0 = scrape(node.worker)[1]

    dead_port = free_port()  # nothing listens there: every push is refused
    with node.agency("MK-MOI") as target:
        target.set_push_endpoint(f"http://127.0.0.1:{dead_port}/spoc")

    # Submitted while the log's writer lock is held: the entries wait unsequenced, as when the sequencer is stuck.
    with node.agency("XK-KP") as sender, Session(node.engine) as lock:
        lock_log(lock)
        envelope = sender.build(
            payload=f'{{"note": "{MARKER}"}}'.encode(),
            destination_country="MK",
            category="migrant-smuggling",
        )
        message_id = sender.submit(envelope)["message_id"]
        held = scrape(node.api)[1]
        lock.rollback()
    assert value(held, "spoc_audit_pending") > value(api0, "spoc_audit_pending")
    assert (
        value(held, "spoc_messages", state="origin_review")
        == value(api0, "spoc_messages", state="origin_review") + 1
    )
    assert (
        value(held, "spoc_queue_depth", queue="outbound_review")
        == value(api0, "spoc_queue_depth", queue="outbound_review") + 1
    )
    assert value(held, "spoc_http_requests_total", route="/v1/messages", method="POST", status="2xx") >= 1
    assert value(held, "spoc_http_request_duration_seconds_count", route="/v1/messages") > value(
        api0, "spoc_http_request_duration_seconds_count", route="/v1/messages"
    )

    node.celery.send_task("spoc.audit.checkpoint")  # the beat signs one every 30 s; no need to wait for it
    wait_for(
        node.api,
        "the log to catch up (nothing pending, a newer checkpoint)",
        lambda s: (
            value(s, "spoc_audit_pending") == 0
            and value(s, "spoc_audit_checkpoint_size") > value(api0, "spoc_audit_checkpoint_size")
            and value(s, "spoc_audit_checkpoint_age_seconds") < 30
        ),
    )

    with node.officer("xk-officer") as xk:
        xk.decide(message_id, "approve")
    wait_for(
        node.api,
        "the message in MK's inbound review",
        lambda s: (
            value(s, "spoc_queue_depth", queue="inbound_review")
            == value(api0, "spoc_queue_depth", queue="inbound_review") + 1
        ),
    )
    with node.officer("mk-officer") as mk:
        mk.decide(message_id, "route", route_to_agency="MK-MOI")
    worker = wait_for(
        node.worker,
        "the push retried, then dead-lettered",
        lambda s: (
            value(s, "spoc_deliveries_total", channel="push", outcome="dead_lettered")
            > value(worker0, "spoc_deliveries_total", channel="push", outcome="dead_lettered")
        ),
    )
    assert value(worker, "spoc_deliveries_total", channel="push", outcome="retried") > value(
        worker0, "spoc_deliveries_total", channel="push", outcome="retried"
    )
    assert value(worker, "spoc_tasks_total", task="spoc.delivery.push", outcome="success") >= 2
    api = wait_for(
        node.api,
        "the dead letter and the unreachable agency",
        lambda s: (
            reported(s, "spoc_endpoint_up", kind="agency", endpoint="MK-MOI") == 0
            and value(s, "spoc_queue_depth", queue="dead_letter")
            == value(api0, "spoc_queue_depth", queue="dead_letter") + 1
        ),
    )
    assert value(api, "spoc_messages", state="routed") == value(api0, "spoc_messages", state="routed") + 1

    # A hop to a peer node (this node has no regional directory, so the peer cannot be reached): waiting first,
    # then retried and dead-lettered by the worker, the peer reported unreachable.
    with Session(node.engine) as session:
        session.add(
            Hop(
                message_id=message_id,
                direction="out",
                peer_node="zz",
                digest="sha-256:test",
                next_attempt_at=utcnow() + timedelta(seconds=3),
            )
        )
        session.commit()
    waiting = scrape(node.api)[1]
    assert value(waiting, "spoc_queue_depth", queue="hop") == value(api0, "spoc_queue_depth", queue="hop") + 1
    worker = wait_for(
        node.worker,
        "the hop retried, then dead-lettered",
        lambda s: (
            value(s, "spoc_deliveries_total", channel="hop", outcome="dead_lettered")
            > value(worker0, "spoc_deliveries_total", channel="hop", outcome="dead_lettered")
        ),
    )
    assert value(worker, "spoc_deliveries_total", channel="hop", outcome="retried") > value(
        worker0, "spoc_deliveries_total", channel="hop", outcome="retried"
    )
    wait_for(
        node.api,
        "the peer unreachable",
        lambda s: reported(s, "spoc_endpoint_up", kind="peer", endpoint="zz") == 0,
    )

    # Work committed two minutes ago that no worker has finished: the outbox lags.
    with Session(node.engine) as session:
        stuck = OutboxItem(
            kind="metrics-test", created_at=utcnow() - timedelta(seconds=120), dispatched_at=utcnow()
        )
        session.add(stuck)
        session.commit()
        lagging = scrape(node.api)[1]
        session.execute(delete(OutboxItem).where(OutboxItem.id == stuck.id))
        session.commit()
    assert value(lagging, "spoc_outbox_lag_seconds") >= 120
    assert value(lagging, "spoc_queue_oldest_age_seconds", queue="outbox") >= 120
    assert value(scrape(node.api)[1], "spoc_outbox_lag_seconds") < 120

    # The request's deadline passes (its time is moved back), and the deadline monitor runs.
    with Session(node.engine) as session:
        past = utcnow() - timedelta(minutes=1)
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(deadline_warn_at=past - timedelta(hours=1), deadline_at=past)
        )
        session.commit()
    assert value(scrape(node.api)[1], "spoc_messages_overdue") == value(api0, "spoc_messages_overdue") + 1
    node.celery.send_task("spoc.review.deadlines")
    worker = wait_for(
        node.worker,
        "a deadline warning and a breach",
        lambda s: (
            value(s, "spoc_deadline_events_total", kind="breached")
            > value(worker0, "spoc_deadline_events_total", kind="breached")
        ),
    )
    assert value(worker, "spoc_deadline_events_total", kind="warned") > value(
        worker0, "spoc_deadline_events_total", kind="warned"
    )

    # A witness finds two checkpoints that cannot both be true.
    with Session(node.engine) as session:
        raise_alert(
            session, kind="inconsistent", reporter=f"metrics-test-{uuid.uuid4().hex[:6]}", detail="test"
        )
        session.commit()
    alerted = scrape(node.api)[1]
    assert (
        value(alerted, "spoc_witness_alerts", kind="inconsistent")
        == value(api0, "spoc_witness_alerts", kind="inconsistent") + 1
    )
    assert value(alerted, "spoc_state_up") == 1
    assert value(scrape(node.worker)[1], "spoc_tasks_total", task="spoc.outbox.relay", outcome="success") > 0

    # Nothing in any label names a message, a request, a person or content.
    for text in (scrape(node.api)[0], scrape(node.worker)[0]):
        assert message_id not in text
        assert UUID.search(text) is None
        assert MARKER not in text


def test_a_log_line_joins_its_audit_entry_by_request_id(node: Node) -> None:
    def submissions() -> list[dict[str, Any]]:
        log = node.folder / "api.log"
        lines = [orjson.loads(raw) for raw in log.read_bytes().splitlines()] if log.exists() else []
        return [x for x in lines if x.get("route") == "/v1/messages" and x.get("method") == "POST"]

    # The access line is written once the response has gone, so the client can be faster than the log:
    # the lines written before this submission are counted first and this submission's line waited for.
    earlier = len(submissions())
    with node.agency("XK-KP") as sender:
        envelope = sender.build(payload=b'{"q": 1}', destination_country="MK", category="migrant-smuggling")
        message_id = sender.submit(envelope)["message_id"]

    # Every line the API wrote is one JSON object; the access lines of submissions name their request.
    with node.officer("regional-auditor") as auditor:

        def joined_to_ours() -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]] | None:
            lines = submissions()[earlier:]
            joined = {
                x["request_id"]: auditor._call(
                    "GET", "/v1/audit/entries", params={"request_id": x["request_id"]}
                )["entries"]
                for x in lines
            }
            ours = [rid for rid, entries in joined.items() if message_id in {e["object_id"] for e in entries}]
            return (lines, joined) if ours else None

        lines, joined = _wait("the access line of the submission", joined_to_ours)
    assert all(x["logger"] == "spoc.access" and len(x["request_id"]) == 32 for x in lines)
    ours = [rid for rid, entries in joined.items() if message_id in {e["object_id"] for e in entries}]
    assert len(ours) == 1, joined
    assert {e["request_id"] for e in joined[ours[0]]} == set(ours)
    # The worker's log lines are JSON too (Celery prints a few words of its own, e.g. at shutdown).
    worker = [
        orjson.loads(raw) for raw in (node.folder / "worker.log").read_bytes().splitlines() if raw[:1] == b"{"
    ]
    assert any(x["logger"] == "spoc.ops" and "worker metrics on" in x["message"] for x in worker)


def test_the_launcher_gives_api_and_worker_one_metrics_directory(
    settings: Settings, region: Region, redis_url: str, master_secret: str, tmp_path: Path
) -> None:
    """``spoc run``'s way: API and worker share ``DATA_DIR/metrics`` (emptied at start), so the API's /metrics
    has the worker's counters, from 127.0.0.1 without a token (the default allowed network)."""
    stale = settings.data_dir / "metrics" / "counter_999999.db"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"left by a process of an earlier start")
    env = {
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_BROKER_URL": redis_url,
        "SPOC_BROKER_KEY_PREFIX": f"launcher-{uuid.uuid4().hex[:8]}:",
        "SPOC_MASTER_KEY": master_secret,
        "SPOC_DATA_DIR": str(settings.data_dir),
        "SPOC_ENVIRONMENT": "test",
    }
    with running(settings, host="127.0.0.1", port=free_port(), env=env, log_dir=tmp_path) as system:
        assert not stale.exists()
        assert (
            httpx.get(f"{system.url}/ready", timeout=5).json()["status"] == "ready"
        )  # what start waited for
        wait_for(
            system.url,
            "the worker's counters on the API's /metrics",
            lambda s: value(s, "spoc_tasks_total", task="spoc.outbox.relay", outcome="success") > 0,
        )
