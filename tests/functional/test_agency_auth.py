"""Agency calls are authenticated by RFC 9421 signatures; every way of faking one is refused with 401."""

from __future__ import annotations

import datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from broker.crypto import KeyPair
from broker.crypto.httpsig import sign_request
from tests.factories import Region

BASE = "http://testserver"


def _signed(
    client: TestClient,
    key: KeyPair,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    created: datetime.datetime | None = None,
    nonce: str | None = None,
) -> tuple[httpx.Headers, httpx.Response]:
    headers = httpx.Headers({"content-type": "application/json"} if body else {})
    sign_request(method, BASE + path, headers, body, key=key, created=created, nonce=nonce)
    return headers, client.request(method, path, content=body or None, headers=headers)


def _key(region: Region, agency: str) -> KeyPair:
    return KeyPair.from_private_jwk(region.seed.agencies[agency].signing_key)


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:spoc:problem:not-authenticated"


def test_a_signed_call_is_accepted(client: TestClient, region: Region) -> None:
    _, response = _signed(client, _key(region, "AL-ASP"), "GET", "/v1/inbox")
    assert response.status_code == 200, response.text


def test_unsigned_call_is_refused(client: TestClient) -> None:
    _assert_401(client.get("/v1/inbox"))
    _assert_401(client.post("/v1/messages", json={}))


def test_bearer_token_is_not_a_way_in(client: TestClient) -> None:
    _assert_401(client.get("/v1/inbox", headers={"Authorization": "Bearer spoc_abc_def"}))


def test_replayed_call_is_refused(client: TestClient, region: Region) -> None:
    headers, first = _signed(client, _key(region, "AL-ASP"), "GET", "/v1/inbox")
    assert first.status_code == 200
    _assert_401(client.get("/v1/inbox", headers=headers))


def test_expired_call_is_refused(client: TestClient, region: Region) -> None:
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    _, response = _signed(client, _key(region, "AL-ASP"), "GET", "/v1/inbox", created=old)
    _assert_401(response)


def test_call_from_the_future_is_refused(client: TestClient, region: Region) -> None:
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    _, response = _signed(client, _key(region, "AL-ASP"), "GET", "/v1/inbox", created=future)
    _assert_401(response)


def test_wrongly_signed_call_is_refused(client: TestClient, region: Region) -> None:
    # Signed by RS-MUP's key but claiming AL-ASP's key id.
    impostor = _key(region, "RS-MUP")
    headers = httpx.Headers()
    sign_request("GET", BASE + "/v1/inbox", headers, b"", key=impostor)
    claimed = _key(region, "AL-ASP").kid
    headers["signature-input"] = headers["signature-input"].replace(impostor.kid, claimed)
    _assert_401(client.get("/v1/inbox", headers=headers))


@pytest.mark.parametrize(
    "tamper",
    ["body", "path", "method", "query"],
)
def test_call_changed_after_signing_is_refused(client: TestClient, region: Region, tamper: str) -> None:
    key = _key(region, "AL-ASP")
    body = b'{"spoc": "1"}'
    headers = httpx.Headers({"content-type": "application/json"})
    sign_request("POST", BASE + "/v1/messages?x=1", headers, body, key=key)
    method, path, content = "POST", "/v1/messages?x=1", body
    if tamper == "body":
        content = b'{"spoc": "2"}'
    elif tamper == "path":
        path = "/v1/inbox/00000000-0000-4000-8000-000000000000/ack?x=1"
    elif tamper == "method":
        headers = httpx.Headers({"content-type": "application/json"})
        sign_request("PUT", BASE + "/v1/messages?x=1", headers, body, key=key)
    else:
        path = "/v1/messages?x=2"
    _assert_401(client.request(method, path, content=content, headers=headers))


def test_key_of_a_non_agency_party_is_refused(client: TestClient, region: Region, keys: object) -> None:
    from broker.keys.service import DatabaseKeyStore

    assert isinstance(keys, DatabaseKeyStore)
    contact_point_key = keys.signing_key("AL-SPOC")
    _, response = _signed(client, contact_point_key, "GET", "/v1/inbox")
    _assert_401(response)
