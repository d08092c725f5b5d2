"""Request authentication over HTTP: a 401 names the check that failed, and a nonce is spent whatever the
handler answered (a refused request cannot be replayed later, once the state has changed)."""

from __future__ import annotations

import datetime
import uuid

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from broker.crypto import KeyPair
from broker.crypto.httpsig import sign_request
from tests.factories import Region, agency_client, officer_client

BASE = "http://testserver"
CATEGORY = "migrant-smuggling"


def _key(region: Region, agency: str = "AL-ASP") -> KeyPair:
    return KeyPair.from_private_jwk(region.seed.agencies[agency].signing_key)


def _headers(
    key: KeyPair,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    created: datetime.datetime | None = None,
) -> httpx.Headers:
    headers = httpx.Headers({"content-type": "application/json"} if body else {})
    sign_request(method, BASE + path, headers, body, key=key, created=created)
    return headers


def _refused(response: httpx.Response, reason: str) -> dict[str, object]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, object] = response.json()
    assert problem["type"] == "urn:spoc:problem:not-authenticated"
    assert problem["reason"] == reason, problem
    return problem


# --- a nonce is kept whatever the outcome ------------------------------------------------------------


def test_a_request_refused_by_the_handler_cannot_be_replayed(client: TestClient, region: Region) -> None:
    body = b"[not json"
    headers = _headers(_key(region), "POST", "/v1/messages", body)
    first = client.post("/v1/messages", content=body, headers=headers)
    assert first.status_code == 400, first.text  # refused by the handler, its transaction rolled back
    problem = _refused(client.post("/v1/messages", content=body, headers=headers), "nonce")
    assert "replay" in str(problem["detail"])


def test_a_409_replayed_after_the_state_changed_is_refused(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b'{"q": 1}', destination_country="RS", category=CATEGORY)
    message_id = str(envelope["header"]["message_id"])
    # A resubmission of a message that was not returned: 409, rolled back.
    path = f"/v1/messages/{message_id}/resubmissions"
    amended = asker.build(
        payload=b'{"q": 2}',
        destination_country="RS",
        category=CATEGORY,
        conversation_id=str(envelope["header"]["conversation_id"]),
    )
    body = orjson.dumps(amended)
    asker.submit(envelope)
    headers = _headers(_key(region), "POST", path, body)
    first = client.post(path, content=body, headers=headers)
    assert first.status_code == 409, first.text
    # The officer returns it for clarification: now a resubmission would be allowed ...
    officer_client(region, "al-officer", client).decide(message_id, "return", reason="say more")
    # ... but not with the captured bytes of the refused one.
    _refused(client.post(path, content=body, headers=headers), "nonce")
    status = f"/v1/messages/{message_id}"
    answer = client.get(status, headers=_headers(_key(region), "GET", status)).json()
    assert answer["state"] != "superseded", answer


# --- which check failed ------------------------------------------------------------------------------


def test_unsigned_names_the_missing_headers(client: TestClient) -> None:
    problem = _refused(client.get("/v1/inbox"), "missing-headers")
    assert "Signature-Input" in str(problem["detail"])


def test_malformed_signature_input(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "GET", "/v1/inbox")
    headers["signature-input"] = "spoc-agency=((("
    _refused(client.get("/v1/inbox", headers=headers), "malformed-headers")


def test_another_label_is_named(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "GET", "/v1/inbox")
    for name in ("signature-input", "signature"):
        headers[name] = headers[name].replace("spoc-agency=", "sig1=", 1)
    problem = _refused(client.get("/v1/inbox", headers=headers), "signature-label")
    assert "spoc-agency" in str(problem["detail"])


def test_another_tag_is_named(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "GET", "/v1/inbox")
    headers["signature-input"] = headers["signature-input"].replace('tag="spoc-agency"', 'tag="other"')
    _refused(client.get("/v1/inbox", headers=headers), "signature-label")


def test_an_unexpected_algorithm_is_named(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "GET", "/v1/inbox")
    headers["signature-input"] = headers["signature-input"].replace('alg="ed25519"', 'alg="rsa-pss-sha512"')
    problem = _refused(client.get("/v1/inbox", headers=headers), "signature-parameters")
    assert "ed25519" in str(problem["detail"])


def test_missing_covered_component_is_named(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "GET", "/v1/inbox")
    headers["signature-input"] = headers["signature-input"].replace(' "@query"', "", 1)
    problem = _refused(client.get("/v1/inbox", headers=headers), "covered-components")
    assert '"@method" "@path" "@query"' not in str(problem["detail"])  # what it covers is quoted as is
    assert "@query" in str(problem["detail"])


def test_a_body_without_a_covered_digest_is_named(client: TestClient, region: Region) -> None:
    body = b'{"receipt": "x"}'
    headers = _headers(_key(region), "GET", "/v1/inbox")  # signed without a body
    headers["content-type"] = "application/json"
    path = f"/v1/inbox/{uuid.uuid4()}/ack"
    _refused(client.post(path, content=body, headers=headers), "covered-components")


def test_unknown_key_id_is_named(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "GET", "/v1/inbox")
    kid = _key(region).kid
    headers["signature-input"] = headers["signature-input"].replace(kid, "A" * 43)
    _refused(client.get("/v1/inbox", headers=headers), "key-id")


def test_old_signature_is_named_window(client: TestClient, region: Region) -> None:
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    problem = _refused(
        client.get("/v1/inbox", headers=_headers(_key(region), "GET", "/v1/inbox", created=old)), "window"
    )
    assert "300 s" in str(problem["detail"])


def test_future_signature_is_named_window(client: TestClient, region: Region) -> None:
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=2)
    _refused(
        client.get("/v1/inbox", headers=_headers(_key(region), "GET", "/v1/inbox", created=future)), "window"
    )


def test_a_changed_body_is_named_digest(client: TestClient, region: Region) -> None:
    headers = _headers(_key(region), "POST", "/v1/messages", b'{"spoc": "1"}')
    _refused(client.post("/v1/messages", content=b'{"spoc": "2"}', headers=headers), "digest")


@pytest.mark.parametrize("tamper", ["key", "path", "query", "method"])
def test_a_bad_signature_is_named_signature(client: TestClient, region: Region, tamper: str) -> None:
    key = _key(region)
    if tamper == "key":  # signed by RS-MUP's key, claiming AL-ASP's key id
        headers = _headers(_key(region, "RS-MUP"), "GET", "/v1/inbox")
        headers["signature-input"] = headers["signature-input"].replace(_key(region, "RS-MUP").kid, key.kid)
        response = client.get("/v1/inbox", headers=headers)
    elif tamper == "path":
        headers = _headers(key, "GET", "/v1/inbox/push-endpoint")
        response = client.get("/v1/inbox", headers=headers)
    elif tamper == "query":
        headers = _headers(key, "GET", "/v1/inbox?limit=5")
        response = client.get("/v1/inbox?limit=6", headers=headers)
    else:
        headers = _headers(key, "PUT", "/v1/inbox/push-endpoint")
        response = client.get("/v1/inbox/push-endpoint", headers=headers)
    problem = _refused(response, "signature")
    assert "does not verify" in str(problem["detail"])


def test_each_check_passes_for_a_good_request(client: TestClient, region: Region) -> None:
    response = client.get("/v1/inbox?limit=5", headers=_headers(_key(region), "GET", "/v1/inbox?limit=5"))
    assert response.status_code == 200, response.text
