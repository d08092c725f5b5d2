"""Push endpoints cannot reach the node's own network (SSRF): refused when set over HTTP, refused again at
send time after resolving DNS, and the endpoint's answer is never kept for officers to read.

The session's settings allow-list 127.0.0.1 (the tests' receivers listen there); the refusals are shown
on an app whose settings allow-list nothing, as in a production node.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.client.agency import ClientError
from broker.config import Settings
from broker.delivery.models import InboxItem
from broker.delivery.push import make_client
from broker.delivery.runner import push_all_due
from tests.factories import Region, agency_client, drain, officer_client

PUSH_AGENCY = "AL-ASP"


@pytest.fixture(scope="module")
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"push_allowed_networks": ()})


@pytest.fixture(scope="module")
def strict_app(strict_settings: Settings, region: Region) -> FastAPI:
    from contact_points.app import create_app

    return create_app(strict_settings)


@pytest.fixture
def strict_client(strict_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(strict_app) as c:
        yield c


@pytest.fixture
def push_agency(client: TestClient, region: Region) -> Iterator[str]:
    yield PUSH_AGENCY
    agency_client(region, PUSH_AGENCY, client).set_push_endpoint(None)


class Listener:
    """A TCP listener on 127.0.0.1 that counts every connection made to it (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.hits = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _routed(client: TestClient, region: Region) -> str:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(
        payload=b'{"q": "plates"}',
        destination_country="AL",
        category="vehicle-crime",
        destination_agency=PUSH_AGENCY,
    )
    message_id: str = asker.submit(envelope)["message_id"]
    officer_client(region, "xk-officer", client).decide(message_id, "approve")
    drain(client)
    officer_client(region, "al-officer", client).decide(message_id, "route", route_to_agency=PUSH_AGENCY)
    drain(client)
    return message_id


def _push(client: TestClient, settings: Settings) -> dict[str, int]:
    state = client.app.state  # type: ignore[attr-defined]
    with make_client(settings) as http:
        return push_all_due(state.sessionmaker, state.master_key, settings, http)


def _delivery(client: TestClient, region: Region, message_id: str, status: str) -> dict[str, Any]:
    al = officer_client(region, "al-officer", client)
    found = al._call("GET", f"/v1/cp/deliveries?status={status}")
    [delivery] = [d for d in found if d["message_id"] == message_id]
    return dict(delivery)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://127.0.0.1/spoc", "loopback"),
        ("https://[::1]/spoc", "loopback"),
        ("https://2130706433/spoc", "loopback"),  # 127.0.0.1 as resolvers also read it
        ("https://localhost:8443/spoc", "loopback"),  # a name that resolves to loopback
        ("https://10.1.2.3/spoc", "private"),
        ("https://172.16.0.1/spoc", "private"),
        ("https://192.168.1.10/spoc", "private"),
        ("https://[fd12:3456::1]/spoc", "private"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("https://169.254.10.1/spoc", "link-local"),
        ("https://[fe80::1]/spoc", "link-local"),
        ("https://100.64.0.1/spoc", "carrier-grade NAT"),
        ("https://224.0.0.1/spoc", "multicast"),
        ("https://[ff02::1]/spoc", "multicast"),
        ("https://0.0.0.0/spoc", "unspecified"),
        ("https://240.0.0.1/spoc", "reserved"),
        ("https://[::ffff:127.0.0.1]/spoc", "loopback"),
        ("https://[::ffff:169.254.169.254]/spoc", "cloud metadata"),
        ("https://[2002:a00:1::1]/spoc", "private"),  # 6to4 around 10.0.0.1
        ("http://93.184.215.14/spoc", "https://"),  # plain http to a public address
    ],
)
def test_an_endpoint_in_the_nodes_own_network_is_refused_when_set(
    strict_client: TestClient, region: Region, url: str, kind: str
) -> None:
    agency = agency_client(region, PUSH_AGENCY, strict_client)
    with pytest.raises(ClientError) as refused:
        agency.set_push_endpoint(url)
    assert refused.value.status == 400
    assert kind in str(refused.value.problem["detail"])
    assert agency._call("GET", "/v1/inbox/push-endpoint").json() == {"url": None}


def test_a_public_https_endpoint_is_accepted(strict_client: TestClient, region: Region) -> None:
    agency = agency_client(region, PUSH_AGENCY, strict_client)
    try:
        assert agency.set_push_endpoint("https://93.184.215.14/spoc") == {"url": "https://93.184.215.14/spoc"}
    finally:
        agency.set_push_endpoint(None)


def test_a_name_resolving_to_loopback_is_refused_at_send_time_and_nothing_is_sent(
    client: TestClient, region: Region, settings: Settings, strict_settings: Settings, push_agency: str
) -> None:
    """Set while loopback was allow-listed (or while the name resolved elsewhere); pushed after the
    administrator removed it: the worker resolves ``localhost``, refuses 127.0.0.1 and connects nowhere."""
    listener = Listener()
    try:
        agency_client(region, push_agency, client).set_push_endpoint(
            f"https://localhost:{listener.port}/spoc"
        )
        message_id = _routed(client, region)
        assert _push(client, strict_settings)["dead"] >= 1
        assert listener.hits == 0
        dead = _delivery(client, region, message_id, "dead")
        assert dead["attempts"] == 1  # dead-lettered at once: retrying the same address cannot help
        assert "localhost resolves to 127.0.0.1, a loopback address" in dead["last_error"]
        assert "SPOC_PUSH_ALLOWED_NETWORKS" in dead["last_error"]
    finally:
        listener.close()


class _Chatty(BaseHTTPRequestHandler):
    """An endpoint answering every POST with a 500 and a body the officers must not see."""

    protocol_version = "HTTP/1.1"
    BODY = b'{"AccessKeyId": "ASIA-SECRET-FROM-METADATA", "Token": "do-not-store"}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_endpoints_answer_is_not_kept_only_its_status(
    client: TestClient, region: Region, settings: Settings, push_agency: str
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chatty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/spoc"
        agency_client(region, push_agency, client).set_push_endpoint(url)  # allow-listed 127.0.0.1
        message_id = _routed(client, region)
        one_attempt = settings.model_copy(update={"push_max_attempts": 1})
        assert _push(client, one_attempt)["dead"] >= 1
        dead = _delivery(client, region, message_id, "dead")
        assert dead["last_error"] == "HTTP 500 from the endpoint (its answer is not kept)"
        with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            stored = session.scalars(select(InboxItem.last_error).where(InboxItem.message_id == message_id))
            assert [e for e in stored if e and "SECRET" in e] == []
    finally:
        server.shutdown()
        server.server_close()
