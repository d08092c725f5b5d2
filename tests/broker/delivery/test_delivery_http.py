"""Delivery over HTTP with the in-process app: push to a real receiving server, dead letters and the
officers' retry and re-route, the pull inbox's leases and pages, and idempotent acknowledgements."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.client.agency import ClientError, OpenedMessage
from broker.client.receiver import MemoryStore, PushReceiver, serve
from broker.config import Settings
from broker.crypto import KeyPair, sign_receipt, statement_of, verify_receipt
from broker.crypto.httpsig import sign_request
from broker.delivery.push import make_client
from broker.delivery.runner import push_all_due
from broker.keys.service import DatabaseKeyStore
from tests.factories import Region, agency_client, drain, officer_client

PUSH_AGENCY = "AL-ASP"
REFUSED = "http://127.0.0.1:9/spoc"  # nothing listens: connection refused


@pytest.fixture
def one_attempt(settings: Settings) -> Settings:
    return settings.model_copy(update={"push_max_attempts": 1, "push_timeout_seconds": 2.0})


@pytest.fixture
def push_agency(client: TestClient, region: Region) -> Iterator[str]:
    """AL-ASP receives by push for the test; back to pull afterwards (other tests pull its inbox)."""
    yield PUSH_AGENCY
    agency_client(region, PUSH_AGENCY, client).set_push_endpoint(None)


def _push(client: TestClient, settings: Settings) -> dict[str, int]:
    state = client.app.state  # type: ignore[attr-defined]
    with make_client(settings) as http:
        return push_all_due(state.sessionmaker, state.master_key, settings, http)


def _routed(client: TestClient, region: Region, *, addressed: bool = True) -> str:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(
        payload=b'{"q": "plates"}',
        destination_country="AL",
        category="vehicle-crime",
        destination_agency=PUSH_AGENCY if addressed else None,
    )
    message_id: str = asker.submit(envelope)["message_id"]
    officer_client(region, "xk-officer", client).decide(message_id, "approve")
    drain(client)
    officer_client(region, "al-officer", client).decide(message_id, "route", route_to_agency=PUSH_AGENCY)
    drain(client)
    return message_id


def test_push_to_a_receiving_server_is_delivered_once_with_a_receipt(
    client: TestClient, region: Region, settings: Settings, push_agency: str
) -> None:
    got: list[OpenedMessage] = []
    receiver = PushReceiver(agency_client(region, push_agency, client), got.append)
    pushes: list[tuple[str, dict[str, str], bytes]] = []
    receive = receiver.receive

    def recording(
        method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        pushes.append((url, dict(headers), body))
        return receive(method, url, headers, body)

    receiver.receive = recording  # type: ignore[method-assign]
    server = serve(receiver)
    try:
        agency_client(region, push_agency, client).set_push_endpoint(server.url)
        message_id = _routed(client, region)
        assert _push(client, settings)["delivered"] >= 1
        assert [m.message_id for m in got] == [message_id]
        assert got[0].plaintext == b'{"q": "plates"}'
        status = agency_client(region, "XK-KP", client).status(message_id)
        assert status["state"] == "delivered"
        assert [r["agency"] for r in status["receipts"]] == [push_agency]
        # The same push again (its answer was lost): the first receipt again, nothing handled twice.
        [(url, headers, body)] = pushes
        status_code, answer = receive("POST", url, headers, body)
        assert (status_code, answer["duplicate"]) == (200, True)
        assert (receiver.counters.received, receiver.counters.duplicates, len(got)) == (1, 1, 1)
        assert receive("POST", url, {}, body)[0] == 401  # unsigned: refused
        assert message_id not in [i["message_id"] for i in agency_client(region, push_agency, client).inbox()]
    finally:
        server.stop()


def test_a_dead_letter_is_shown_to_the_destination_officers_who_retry_it(
    client: TestClient, region: Region, settings: Settings, one_attempt: Settings, push_agency: str
) -> None:
    agency = agency_client(region, push_agency, client)
    agency.set_push_endpoint(REFUSED)
    message_id = _routed(client, region)
    assert _push(client, one_attempt)["dead"] >= 1

    al = officer_client(region, "al-officer", client)
    [dead] = [d for d in al._call("GET", "/v1/cp/deliveries") if d["message_id"] == message_id]
    assert (dead["status"], dead["agency"], dead["attempts"]) == ("dead", push_agency, 1)
    assert "ConnectError" in dead["last_error"]
    xk = officer_client(region, "xk-officer", client)
    assert message_id not in [d["message_id"] for d in xk._call("GET", "/v1/cp/deliveries")]
    with pytest.raises(ClientError) as foreign:
        xk._call("POST", f"/v1/cp/deliveries/{message_id}/retry")
    assert foreign.value.status == 404

    got: list[OpenedMessage] = []
    server = serve(PushReceiver(agency_client(region, push_agency, client), got.append))
    try:
        agency.set_push_endpoint(server.url)
        retried = al._call("POST", f"/v1/cp/deliveries/{message_id}/retry")
        assert (retried["status"], retried["attempts"]) == ("pending", 0)
        with pytest.raises(ClientError) as again:
            al._call("POST", f"/v1/cp/deliveries/{message_id}/retry")
        assert again.value.status == 409  # not a dead letter any more
        _push(client, settings)
        assert [m.message_id for m in got] == [message_id]
    finally:
        server.stop()


def test_a_dead_letter_is_re_routed_to_the_pull_inbox_or_to_another_agency(
    client: TestClient, region: Region, one_attempt: Settings, push_agency: str
) -> None:
    agency_client(region, push_agency, client).set_push_endpoint(REFUSED)
    addressed = _routed(client, region)
    unaddressed = _routed(client, region, addressed=False)
    _push(client, one_attempt)
    al = officer_client(region, "al-officer", client)

    with pytest.raises(ClientError) as readdressed:
        al._call("POST", f"/v1/cp/deliveries/{addressed}/reroute", json={"to_agency": "AL-BMP"})
    assert readdressed.value.status == 409  # the sender addressed AL-ASP
    pulled = al._call("POST", f"/v1/cp/deliveries/{addressed}/reroute", json={"channel": "pull"})
    assert (pulled["channel"], pulled["status"], pulled["message_state"]) == (
        "pull",
        "delivered",
        "delivered",
    )
    owner = agency_client(region, push_agency, client)
    item = next(i for i in owner.inbox(limit=500) if i["message_id"] == addressed)
    owner.ack(owner.open(item))

    moved = al._call(
        "POST", f"/v1/cp/deliveries/{unaddressed}/reroute", json={"to_agency": "AL-BMP", "channel": "pull"}
    )
    assert moved["agency"] == "AL-BMP"
    border = agency_client(region, "AL-BMP", client)
    item = next(i for i in border.inbox(limit=500) if i["message_id"] == unaddressed)
    opened = border.open(item)  # the content key was wrapped to AL-BMP; the chain of custody verifies
    assert opened.plaintext == b'{"q": "plates"}'
    assert opened.custody[-1]["decision"] == "routed"
    border.ack(opened)
    with pytest.raises(ClientError) as foreign:
        al._call("POST", f"/v1/cp/deliveries/{unaddressed}/reroute", json={"to_agency": "MK-MOI"})
    assert foreign.value.status in (400, 409)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("ftp://127.0.0.1/x", 400),
        ("http://agency.example/spoc", 400),
        ("https://user:pw@agency.example/spoc", 400),
        ("https://agency.example/spoc", 200),
        (None, 200),
    ],
)
def test_the_push_endpoint_must_be_https(
    client: TestClient, region: Region, push_agency: str, url: str | None, status: int
) -> None:
    agency = agency_client(region, push_agency, client)
    if status == 200:
        assert agency.set_push_endpoint(url) == {"url": url}
        assert agency._call("GET", "/v1/inbox/push-endpoint").json() == {"url": url}
    else:
        with pytest.raises(ClientError) as refused:
            agency.set_push_endpoint(url)
        assert refused.value.status == status


def test_a_leased_item_is_hidden_until_acknowledged_or_its_lease_runs_out(
    client: TestClient, region: Region
) -> None:
    message_id = _routed(client, region)
    reader = agency_client(region, PUSH_AGENCY, client)
    leased = [i for i in reader.lease(limit=500, visibility_timeout=1) if i["message_id"] == message_id]
    assert len(leased) == 1
    assert leased[0]["leased_until"] is not None
    other_reader = agency_client(region, PUSH_AGENCY, client)
    assert message_id not in [i["message_id"] for i in other_reader.lease(limit=500)]
    assert message_id in [i["message_id"] for i in other_reader.inbox(limit=500)]  # a look, no lease
    time.sleep(1.2)  # the first reader crashed: the lease runs out and the message comes back
    again = [i for i in other_reader.lease(limit=500, visibility_timeout=30) if i["message_id"] == message_id]
    assert len(again) == 1
    other_reader.ack(other_reader.open(again[0]))
    time.sleep(0.1)
    assert message_id not in [i["message_id"] for i in reader.lease(limit=500, visibility_timeout=1)]


def test_the_inbox_pages_with_a_cursor(client: TestClient, region: Region) -> None:
    ids = {_routed(client, region) for _ in range(3)}
    reader = agency_client(region, PUSH_AGENCY, client)
    seen: list[str] = []
    url: str | None = "/v1/inbox?limit=1&visibility_timeout=0"
    pages = 0
    while url and pages < 1000:
        response = reader._call("GET", url)
        seen += [i["message_id"] for i in response.json()]
        link = response.headers.get("link")
        url = link.split(";")[0].strip("<>") if link else None
        pages += 1
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))
    for item in reader.inbox(limit=500):
        if item["message_id"] in ids:
            reader.ack(reader.open(item))


def test_an_acknowledgement_with_an_idempotency_key_replays_and_refuses_another_body(
    client: TestClient, region: Region
) -> None:
    message_id = _routed(client, region)
    reader = agency_client(region, PUSH_AGENCY, client)
    opened = reader.open(next(i for i in reader.inbox(limit=500) if i["message_id"] == message_id))
    receipt = reader.receipt(opened)
    path = f"/v1/inbox/{message_id}/ack"
    first = reader._http.post(path, json={"receipt": receipt}, headers={"Idempotency-Key": f"k-{message_id}"})
    again = reader._http.post(path, json={"receipt": receipt}, headers={"Idempotency-Key": f"k-{message_id}"})
    assert (first.status_code, again.status_code) == (204, 204)
    assert again.headers["idempotent-replayed"] == "true"
    other = reader._http.post(
        path, json={"receipt": reader.receipt(opened)}, headers={"Idempotency-Key": f"k-{message_id}"}
    )
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")


def test_the_receiver_refuses_a_push_signed_by_someone_else(client: TestClient, region: Region) -> None:
    from broker.crypto import KeyPair
    from broker.crypto.httpsig import sign_request

    receiver = PushReceiver(agency_client(region, PUSH_AGENCY, client), lambda m: None)
    headers: dict[str, str] = {}
    body = b'{"message_id": "x"}'
    sign_request("POST", "http://127.0.0.1/push", headers, body, key=KeyPair.generate("sig"))
    assert receiver.receive("POST", "http://127.0.0.1/push", headers, body)[0] == 401
    assert receiver.counters.refused == 1


def _signed_push(keys: DatabaseKeyStore, url: str, body: bytes) -> dict[str, str]:
    """Headers of a push of ``body`` signed by AL-SPOC, as the broker signs it."""
    headers = {"content-type": "application/json"}
    sign_request("POST", url, headers, body, key=keys.signing_key("AL-SPOC"))
    return headers


def test_a_duplicate_push_is_answered_with_a_fresh_receipt_not_the_stored_one(
    client: TestClient, region: Region, settings: Settings, push_agency: str, keys: DatabaseKeyStore
) -> None:
    """The broker refuses a receipt whose received_at is over an hour old, and a push can come again much
    later: the receiver signs the first statement again with received_at now, without handling it twice."""
    got: list[OpenedMessage] = []
    agency = agency_client(region, push_agency, client)
    receiver = PushReceiver(agency, got.append)
    pushes: list[tuple[str, dict[str, str], bytes]] = []
    receive = receiver.receive

    def recording(
        method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        pushes.append((url, dict(headers), body))
        return receive(method, url, headers, body)

    receiver.receive = recording  # type: ignore[method-assign]
    server = serve(receiver)
    try:
        agency.set_push_endpoint(server.url)
        message_id = _routed(client, region)
        assert _push(client, settings)["delivered"] >= 1
        [(url, headers, body)] = pushes
        first = statement_of(receiver.store.get(message_id) or "")
        # What the store holds after two hours: the first receipt, dated then.
        old = {**first, "received_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat()}
        receiver.store = MemoryStore()
        signer = KeyPair.from_private_jwk(agency.credentials.signing_key)
        receiver.store.put(message_id, sign_receipt(old, key=signer))

        status_code, answer = receive("POST", url, headers, body)
        assert (status_code, answer["duplicate"], len(got)) == (200, True, 1)
        again = verify_receipt(answer["receipt"], resolve=lambda kid: signer.public)
        assert {k: v for k, v in again.items() if k != "received_at"} == {
            k: v for k, v in first.items() if k != "received_at"
        }
        fresh = datetime.fromisoformat(again["received_at"])
        assert abs((datetime.now(UTC) - fresh).total_seconds()) < 30

        # A "duplicate" whose envelope is not the one acknowledged before gets no receipt.
        item = json.loads(body)
        item["envelope"]["header"]["legal_basis"] = "something else"
        changed = json.dumps(item).encode()
        resigned = _signed_push(keys, url, changed)
        assert receive("POST", url, resigned, changed)[0] == 422
    finally:
        server.stop()
