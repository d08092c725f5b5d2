"""Hostile input to the real endpoints: each gets a clear 4xx problem+json and nothing is stored.

Every call here is correctly signed at the HTTP level (RFC 9421) by a real agency, so what is refused is the
body itself, not the caller: malformed, wrongly typed, deeply nested, oversized and unicode-trick bodies,
forged and truncated signatures, and JWEs outside the exchange's profile (``alg: none``, ``crit``, ``zip``).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from broker.crypto import KeyPair, sign_envelope
from tests.factories import Region, agency_client
from tests.hostile.conftest import CONTENT_TABLES, assert_problem, nothing_stored, signed_http, signing_key

pytestmark = pytest.mark.integration

SENDER = "AL-ASP"
JSON = "application/json"
DEPTH = 10_000

Envelope = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def envelope(client: TestClient, region: Region) -> Envelope:
    """A valid, signed envelope AL-ASP -> MK (a fresh message id each test)."""
    built: Envelope = agency_client(region, SENDER, client).build(
        payload=b'{"q": "hostile"}', destination_country="MK", category="fraud"
    )
    return built


def resign(envelope: Envelope, key: KeyPair) -> Envelope:
    envelope["signature"] = sign_envelope(envelope["header"], envelope["payload"], key=key)
    return envelope


def post(client: TestClient, region: Region, body: bytes, content_type: str = JSON) -> Any:
    return signed_http(client, region, SENDER).post(
        "/v1/messages", content=body, headers={"Content-Type": content_type}
    )


# --- bodies that are not an envelope at all: 400 invalid-input, nothing stored, nothing audited ----------

RAW_BODIES: dict[str, bytes] = {
    "malformed-json": b'{"spoc": "1", "header": ',
    "trailing-garbage": b'{"spoc": "1"} {"again": 1}',
    "not-an-object": b"[1, 2, 3]",
    "a-bare-string": b'"envelope"',
    "empty": b"",
    "nested-arrays-10k": b"[" * DEPTH + b"]" * DEPTH,
    "nested-objects-10k": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "nan": b'{"spoc": NaN}',
    "overlong-utf8-slash": b'{"spoc": "\xc0\xaf"}',
    "invalid-utf8": b'{"spoc": "\xff\xfe"}',
    "lone-surrogate": b'{"spoc": "1", "header": {"legal_basis": "\\ud800"}}',
    "utf16-bom": "\ufeff{}".encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(RAW_BODIES))
def test_a_body_that_is_not_an_envelope_is_400(
    name: str, client: TestClient, region: Region, engine: Engine
) -> None:
    with nothing_stored(engine):
        problem = assert_problem(post(client, region, RAW_BODIES[name]), 400)
    assert problem["type"] == "urn:spoc:problem:invalid-input"


def test_a_valid_envelope_with_a_wrong_content_type_is_refused(
    client: TestClient, region: Region, engine: Engine, envelope: Envelope
) -> None:
    with nothing_stored(engine):
        problem = assert_problem(post(client, region, orjson.dumps(envelope), "text/plain"), 415)
    assert problem["type"] == "urn:spoc:problem:unsupported-media-type"


def test_the_same_envelope_with_json_content_type_is_accepted(
    client: TestClient, region: Region, envelope: Envelope
) -> None:
    """Control: the envelopes mutated below are refused for the mutation, not for being built wrong."""
    response = post(client, region, orjson.dumps(envelope))
    assert response.status_code == 202, response.text


# --- envelopes that break the schema: 400 with the failing location ------------------------------------


def _set(path: str, value: Any) -> Callable[[Envelope], None]:
    def mutate(envelope: Envelope) -> None:
        *parents, last = path.split(".")
        target: Any = envelope
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


SCHEMA_BREAKS: dict[str, tuple[Callable[[Envelope], None], str]] = {
    "header-is-a-list": (_set("header", []), "header"),
    "message-id-is-a-number": (_set("header.message_id", 12345), "message_id"),
    "classification-is-a-bool": (_set("header.classification", True), "classification"),
    "recipients-is-a-string": (_set("payload.recipients", "AL-SPOC"), "recipients"),
    "handling-codes-is-an-object": (_set("header.handling_codes", {"H0": True}), "handling_codes"),
    "legal-basis-100k": (_set("header.legal_basis", "x" * 100_000), "legal_basis"),
    "ciphertext-over-8mib": (_set("payload.ciphertext", "A" * (8 * 1024 * 1024 + 4)), "ciphertext"),
    "unknown-member-500k": (_set("header.note", "y" * 500_000), "note"),
    "nul-in-legal-basis": (
        _set("header.legal_basis", "AL-MK agreement\x00; DROP TABLE messages"),
        "legal_basis",
    ),
    "rtl-override-in-sender": (_set("header.sender_agency", "AL-\u202epsa"), "sender_agency"),
    "homoglyph-sender": (_set("header.sender_agency", "AL-\u0410SP"), "sender_agency"),  # Cyrillic A
    "homoglyph-destination": (_set("header.destination_country", "\u041cK"), "destination_country"),
    "fullwidth-digit-category": (_set("header.category", "fraud\uff11"), "category"),
    "zero-width-in-message-id": (_set("header.message_id", "\u200b" + "0" * 32), "message_id"),
    "tag-missing": (lambda e: e["payload"].pop("tag"), "tag"),
    "truncated-signature-part": (lambda e: e.update(signature=e["signature"].split(".")[0]), "signature"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_BREAKS))
def test_an_envelope_breaking_the_schema_is_400(
    name: str, client: TestClient, region: Region, engine: Engine, envelope: Envelope
) -> None:
    mutate, location = SCHEMA_BREAKS[name]
    mutate(envelope)
    body = orjson.dumps(envelope)
    with nothing_stored(engine):
        problem = assert_problem(post(client, region, body), 400, 413)
    if problem["status"] == 400:
        assert problem["type"] == "urn:spoc:problem:invalid-input"
        assert any(location in e["loc"] for e in problem["errors"]), problem


# --- signatures and JOSE: 422 verification-failed (audited as a refusal), nothing of the message stored --


def _flip_signature(envelope: Envelope, region: Region) -> None:
    protected, _, sig = envelope["signature"].split(".")
    raw = bytearray(unb64(sig))
    raw[0] ^= 1
    envelope["signature"] = f"{protected}..{b64(bytes(raw))}"


def _signed_by_another_agency(envelope: Envelope, region: Region) -> None:
    resign(envelope, signing_key(region, "ME-UP"))


def _signed_by_a_stranger(envelope: Envelope, region: Region) -> None:
    resign(envelope, KeyPair.generate("sig"))


def _truncated_jws(envelope: Envelope, region: Region) -> None:
    envelope["signature"] = envelope["signature"][:-12]


def _truncated_jwe(envelope: Envelope, region: Region) -> None:
    envelope["payload"]["ciphertext"] = envelope["payload"]["ciphertext"][:-8]


def _header_changed_after_signing(envelope: Envelope, region: Region) -> None:
    envelope["header"]["classification"] = "UNCLASSIFIED"


def _jws_header(envelope: Envelope, region: Region, **members: Any) -> None:
    """Re-sign with the sender's real key under a JWS protected header with ``members`` changed."""
    key = signing_key(region, SENDER)
    from broker.crypto import signing_input

    header = {"alg": "EdDSA", "kid": key.kid, "typ": "spoc-envelope+jws", **members}
    protected = b64(json.dumps(header).encode())
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    jwk = key.to_jwcrypto()
    private: Ed25519PrivateKey = jwk.get_op_key("sign")
    signing = f"{protected}.{b64(signing_input(envelope['header'], envelope['payload']))}".encode()
    envelope["signature"] = f"{protected}..{b64(private.sign(signing))}"


def _jws_alg_none(envelope: Envelope, region: Region) -> None:
    header = b64(json.dumps({"alg": "none", "kid": signing_key(region, SENDER).kid}).encode())
    envelope["signature"] = f"{header}.."


def _jwe_recipient_alg_none(envelope: Envelope, region: Region) -> None:
    # ``recipients`` is outside the originator's signature by design, so this needs no re-signing.
    for recipient in envelope["payload"]["recipients"]:
        recipient["header"]["alg"] = "none"


def _jwe_protected(envelope: Envelope, region: Region, **members: Any) -> None:
    protected = json.loads(unb64(envelope["payload"]["protected"]))
    protected.update(members)
    envelope["payload"]["protected"] = b64(json.dumps(protected).encode())
    resign(envelope, signing_key(region, SENDER))  # the sender itself signs the out-of-profile JWE


def _jwe_dir(envelope: Envelope, region: Region) -> None:
    for recipient in envelope["payload"]["recipients"]:
        recipient["header"]["alg"] = "dir"


FORGERIES: dict[str, Callable[[Envelope, Region], None]] = {
    "flipped-signature-bit": _flip_signature,
    "signed-by-another-agency": _signed_by_another_agency,
    "signed-by-a-stranger-key": _signed_by_a_stranger,
    "truncated-jws": _truncated_jws,
    "truncated-jwe-ciphertext": _truncated_jwe,
    "header-changed-after-signing": _header_changed_after_signing,
    "jws-alg-none": _jws_alg_none,
    "jws-alg-hs256": lambda e, r: _jws_header(e, r, alg="HS256"),
    "jws-crit": lambda e, r: _jws_header(e, r, crit=["exp"], exp=1),
    "jws-embedded-jwk": lambda e, r: _jws_header(e, r, jwk={"kty": "OKP", "crv": "Ed25519", "x": "AA"}),
    "jwe-recipient-alg-none": _jwe_recipient_alg_none,
    "jwe-recipient-alg-dir": _jwe_dir,
    "jwe-protected-crit": lambda e, r: _jwe_protected(e, r, crit=["exp"], exp=1),
    "jwe-protected-zip": lambda e, r: _jwe_protected(e, r, zip="DEF"),
    "jwe-protected-enc-a128cbc": lambda e, r: _jwe_protected(e, r, enc="A128CBC-HS256"),
    "jwe-protected-alg-none": lambda e, r: _jwe_protected(e, r, alg="none"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_or_out_of_profile_envelope_is_refused(
    name: str, client: TestClient, region: Region, engine: Engine, envelope: Envelope
) -> None:
    forged = copy.deepcopy(envelope)
    FORGERIES[name](forged, region)
    assert forged != envelope
    with nothing_stored(engine):
        problem = assert_problem(post(client, region, orjson.dumps(forged)), 400, 422)
    if problem["status"] == 422:
        assert problem["type"] == "urn:spoc:problem:verification-failed"


# --- the same classes of input to a pydantic-bodied endpoint and to an officer endpoint ------------------


def test_login_refuses_hostile_bodies_with_problem_json(client: TestClient, engine: Engine) -> None:
    bodies: list[tuple[bytes, str]] = [
        (b'{"username": ', JSON),
        (b"[" * DEPTH + b"]" * DEPTH, JSON),
        (b'{"a":' * DEPTH + b"1" + b"}" * DEPTH, JSON),
        (b'{"username": "al-officer\\u0000", "password": "x"}', JSON),
        (b'{"username": "\\ud800", "password": "x"}', JSON),
        (b'{"username": "al-\xc0\xafofficer", "password": "x"}', JSON),
        (b'{"username": ["al-officer"], "password": 1}', JSON),
        (b'{"username": "al-officer", "password": "x"}', "text/plain"),
        (b"username=al-officer&password=x", "application/x-www-form-urlencoded"),
        (orjson.dumps({"username": "a" * 200_000, "password": "x"}), JSON),
    ]
    with nothing_stored(engine, CONTENT_TABLES):
        for body, content_type in bodies:
            response = client.post("/v1/auth/login", content=body, headers={"Content-Type": content_type})
            assert_problem(response, 400, 401, 413, 415)


def test_officer_decision_refuses_hostile_bodies(client: TestClient, region: Region, engine: Engine) -> None:
    login = client.post(
        "/v1/auth/login", json={"username": "al-officer", "password": region.password("al-officer")}
    )
    headers = {"Authorization": f"Bearer {login.json()['token']}", "Content-Type": JSON}
    url = "/v1/cp/messages/00000000-0000-4000-8000-000000000000/decisions"
    bodies = [
        b"[" * DEPTH + b"]" * DEPTH,
        b'{"action": ',
        b'{"action": ["approve"]}',
        b'{"action": "approve\\u202e"}',
        b'{"action": "approve", "reason": "\\ud800"}',
    ]
    with nothing_stored(engine):
        for body in bodies:
            assert_problem(client.post(url, content=body, headers=headers), 400, 404)


def test_numbers_beyond_the_database_columns_are_400_not_500(client: TestClient, region: Region) -> None:
    """Found by schemathesis: an offset or id past PostgreSQL's integer range used to be an unhandled 500."""
    login = client.post(
        "/v1/auth/login", json={"username": "al-officer", "password": region.password("al-officer")}
    )
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    calls = [
        ("GET", "/v1/cp/deliveries?offset=9223372036854775808"),
        ("GET", "/v1/cp/queues/inbound?offset=9223372036854775808"),
        ("POST", "/v1/cp/notifications/2147483648/dismissal"),
    ]
    for method, url in calls:
        problem = assert_problem(client.request(method, url, headers=headers), 400)
        assert problem["type"] == "urn:spoc:problem:invalid-input"
