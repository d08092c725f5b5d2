"""Envelopes cross the real broker in both directions between spoc's JOSE stack and an independent one.

spoc produces and opens envelopes with jwcrypto (``broker.crypto``). Here joserfc + rfc8785 stand in for an
agency system written in another language (DESIGN §4: any standard JOSE library must interoperate):

* (a) an envelope built by :class:`~broker.client.agency.AgencyClient` travels the whole route, and joserfc
  opens the delivered payload as the agency and as the destination contact point, verifies the
  originator's detached signature over the RFC 8785 bytes, and verifies every custody countersignature;
* (b) an envelope made *only* with joserfc and rfc8785 (keys fetched from the public directory) is accepted,
  read by the origin officer, widened to the routed agency by the destination contact point (``add_reader``
  on a foreign-made JWE) and opened by the agency's client;
* (c) a joserfc-made envelope whose ciphertext changed after signing is refused at intake.

Everything goes through the agency client's own HTTP methods (never a hand-built ``Authorization`` header),
so the tests do not depend on how an agency authenticates.

joserfc notes (see ``tests/broker/crypto/test_crypto_interop_joserfc.py``): a reader reduces the General
JSON JWE to the Flattened JSON of its own entry before decrypting, and every ``EdDSA`` operation emits
joserfc's RFC 9864 deprecation ``SecurityWarning``, which is expected explicitly (pytest turns warnings into
errors).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import pytest
import rfc8785
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwe, jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from broker.client.agency import AgencyClient, ClientError
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.messages.work import drain
from schemas.envelope import RoutingHeader
from tests.factories import Region, agency_client, officer_client

SIGNED_MEMBERS: Final = ("protected", "iv", "ciphertext", "tag", "aad")
ENVELOPE_TYP: Final = "spoc-envelope+jws"
CUSTODY_TYP: Final = "spoc-custody+jws"


# --- joserfc + rfc8785: what an integrator's code does, written without broker.crypto ------------------


@contextmanager
def eddsa_deprecation() -> Iterator[None]:
    """joserfc 1.8 warns on every use of the polymorphic ``EdDSA`` name (RFC 9864); the wire format keeps it."""
    with pytest.warns(SecurityWarning, match="RFC 9864"):
        yield


def flattened_for(general: dict[str, Any], kid: str) -> jwe.FlattenedJSONSerialization:
    """RFC 7516 §7.2.2: the Flattened JSON of the one recipient entry named ``kid``."""
    flat = {k: v for k, v in general.items() if k != "recipients"}
    (entry,) = [r for r in general["recipients"] if r["header"]["kid"] == kid]
    flat.update(entry)
    return cast(jwe.FlattenedJSONSerialization, flat)


def signing_bytes(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    """RFC 8785 form of the header and the JWE without ``recipients``: what the originator signs."""
    covered: dict[str, Any] = {name: payload[name] for name in SIGNED_MEMBERS if name in payload}
    return rfc8785.dumps({"header": header, "payload": covered})


def directory_key(client: TestClient, party: str, use: str) -> OKPKey:
    """The party's newest active ``use`` key from the public directory, checked against its RFC 7638 kid."""
    response = client.get(f"/v1/directory/parties/{party}/jwks")
    assert response.status_code == 200
    jwk = [k for k in response.json()["keys"] if k["use"] == use][-1]
    key = OKPKey.import_key(jwk)
    assert key.thumbprint() == jwk["kid"]
    return key


def private_key(jwk_json: str) -> OKPKey:
    return OKPKey.import_key(json.loads(jwk_json))


def public_of(key: OKPKey) -> OKPKey:
    """Only the public half: what a verifier has."""
    return OKPKey.import_key(key.as_dict(private=False))


def joserfc_envelope(
    client: TestClient, region: Region, header: dict[str, Any], plaintext: bytes
) -> dict[str, Any]:
    """An envelope from AL-ASP made with joserfc + rfc8785 only, readable by both contact points on the route."""
    sealed = jwe.GeneralJSONEncryption({"enc": "A256GCM"}, plaintext)
    for party in (f"{header['origin_country']}-SPOC", f"{header['destination_country']}-SPOC"):
        reader = directory_key(client, party, "enc")
        sealed.add_recipient({"alg": "ECDH-ES+A256KW", "kid": reader.thumbprint()}, reader)
    payload = dict(jwe.encrypt_json(sealed, None))
    signer = private_key(region.seed.agencies[header["sender_agency"]].signing_key)
    protected = {"alg": "EdDSA", "kid": signer.thumbprint(), "typ": ENVELOPE_TYP}
    with eddsa_deprecation():
        attached = jws.serialize_compact(
            protected, signing_bytes(header, payload), signer, algorithms=["EdDSA"]
        )
    return {"spoc": "1", "header": header, "payload": payload, "signature": jws.detach_content(attached)}


def javascript_time(moment: datetime) -> str:
    """``Date.prototype.toISOString()``: always milliseconds and ``Z`` (pydantic would write neither ``.000``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def plain_header(**overrides: Any) -> dict[str, Any]:
    """A routing header as a foreign producer writes it: a plain dict, JavaScript time, upper-case ids, nulls.

    ``created_at`` is the next whole second written as ``…T10:00:01.000Z``: the demo agreements are valid
    from the moment the region was seeded, so a fixed date could precede them.
    """
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    header: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()).upper(),
        "in_reply_to": None,  # written out as null, which pydantic's dump would leave out
        "type": "request",
        "sender_agency": "AL-ASP",
        "origin_country": "AL",
        "destination_country": "MK",
        "category": "migrant-smuggling",
        "legal_basis": "DEMO/AL-MK/police-cooperation",
        "classification": "RESTRICTED",
        "handling_codes": ["H0", "H2"],
        "evaluation": {"source_reliability": "B", "information_accuracy": "2"},
        "priority": {"level": "normal", "information_access": "indirect"},
        "created_at": javascript_time(now),
    }
    header.update(overrides)
    return header


# --- the broker's side ----------------------------------------------------------------------------------


def _drain(app: FastAPI) -> int:
    """Run the outbox in-process (forward, deliver), as the worker would."""
    with unit_of_work(app.state.sessionmaker) as session:
        return drain(session, DatabaseKeyStore(session, app.state.master_key))


def deliver(client: TestClient, app: FastAPI, region: Region, message_id: str, *, to_agency: str) -> None:
    """Approve at the origin contact point, forward, route at the destination contact point, deliver."""
    origin = officer_client(region, "al-officer", client)
    origin.decide(message_id, "approve")
    _drain(app)
    destination = officer_client(region, "mk-officer", client)
    destination.decide(message_id, "route", route_to_agency=to_agency)
    _drain(app)


def inbox_item(agency: AgencyClient, message_id: str) -> dict[str, Any]:
    """The delivered item of ``message_id``; the largest page, since other tests deliver to the same agency."""
    return next(i for i in agency.inbox(limit=500) if i["message_id"] == message_id)


# --- (a) spoc produces, joserfc consumes -----------------------------------------------------------------


def test_joserfc_opens_and_verifies_an_agency_client_envelope_delivered_by_the_broker(
    client: TestClient, app: FastAPI, region: Region, keys: DatabaseKeyStore
) -> None:
    plaintext = b'{"question":"who rented the apartment at the address in the annex?"}'
    sender = agency_client(region, "AL-ASP", client)
    envelope = sender.build(
        payload=plaintext, destination_country="MK", category="drug-trafficking", destination_agency="MK-MOI"
    )
    receipt = sender.submit(envelope)
    message_id = receipt["message_id"]
    assert receipt["state"] == "origin_review"
    deliver(client, app, region, message_id, to_agency="MK-MOI")

    agency = agency_client(region, "MK-MOI", client)
    item = inbox_item(agency, message_id)
    delivered = item["envelope"]
    assert delivered == envelope  # the agency was a reader already: nothing was added or re-serialised

    # The payload: the agency's own entry, then the destination contact point's, with joserfc.
    mk_moi = private_key(region.seed.agencies["MK-MOI"].encryption_key)
    opened = jwe.decrypt_json(flattened_for(delivered["payload"], mk_moi.thumbprint()), mk_moi)
    assert opened.plaintext == plaintext
    mk_spoc = private_key(keys.encryption_keys("MK-SPOC")[0].private_jwk_json())
    as_contact_point = jwe.decrypt_json(flattened_for(delivered["payload"], mk_spoc.thumbprint()), mk_spoc)
    assert as_contact_point.plaintext == plaintext  # one content key, wrapped separately per reader

    # The originator's detached signature, over the RFC 8785 bytes the agency computes itself.
    al_asp = public_of(private_key(region.seed.agencies["AL-ASP"].signing_key))
    assert al_asp.thumbprint() == directory_key(client, "AL-ASP", "sig").thumbprint()
    signed = signing_bytes(delivered["header"], delivered["payload"])
    with eddsa_deprecation():
        verified = jws.deserialize_compact(
            delivered["signature"], al_asp, algorithms=["EdDSA"], payload=signed
        )
    assert verified.headers() == {"alg": "EdDSA", "kid": al_asp.thumbprint(), "typ": ENVELOPE_TYP}
    with eddsa_deprecation(), pytest.raises(Exception):  # noqa: B017, PT011 - joserfc's BadSignatureError
        jws.deserialize_compact(
            delivered["signature"],
            al_asp,
            algorithms=["EdDSA"],
            payload=signing_bytes({**delivered["header"], "category": "fraud"}, delivered["payload"]),
        )

    # Every custody step after submission: a compact JWS by that contact point over a canonical statement
    # whose digest is the SHA-256 of the very bytes the originator signed.
    digest = "sha-256:" + hashlib.sha256(signed).hexdigest()
    assert item["custody"][0]["decision"] == "submitted"
    assert item["custody"][0]["signature"] == delivered["signature"]
    statements = []
    for step in item["custody"][1:]:
        cp_key = directory_key(client, step["party"], "sig")
        with eddsa_deprecation():
            token = jws.deserialize_compact(step["signature"], cp_key, algorithms=["EdDSA"])
        assert token.headers() == {"alg": "EdDSA", "kid": cp_key.thumbprint(), "typ": CUSTODY_TYP}
        statement = json.loads(token.payload)
        assert rfc8785.dumps(statement) == token.payload  # one statement, one byte form
        assert statement["message_id"] == message_id
        assert statement["digest"] == digest
        assert statement["party"] == step["party"]
        assert statement["decision"] == step["decision"]
        statements.append(statement)
    assert [(s["party"], s["decision"], s["seq"]) for s in statements] == [
        ("AL-SPOC", "approved", 1),
        ("MK-SPOC", "received", 2),
        ("MK-SPOC", "routed", 3),
    ]
    assert set(statements[0]) == {
        "message_id",
        "digest",
        "seq",
        "party",
        "actor",
        "decision",
        "from",
        "to",
        "reason",
        "refusal_ground",
        "at",
    }
    assert [(s["from"], s["to"]) for s in statements] == [
        ("origin_review", "forwarded"),
        ("forwarded", "destination_review"),
        ("destination_review", "routed"),
    ]


# --- (b) joserfc produces, the broker and spoc's client consume ------------------------------------------


def test_broker_accepts_routes_and_widens_an_envelope_made_with_joserfc(
    client: TestClient, app: FastAPI, region: Region
) -> None:
    plaintext = json.dumps({"question": "which vehicles crossed with plate prefix SK-77?"}).encode()
    header = plain_header()
    envelope = joserfc_envelope(client, region, header, plaintext)
    sent = json.loads(json.dumps(envelope))  # what went over the wire, kept to compare with what arrives
    # The broker must verify these bytes as sent: its own re-serialisation would spell them differently.
    redumped = RoutingHeader.model_validate(header).model_dump(mode="json", exclude_none=True)
    assert redumped["created_at"] != header["created_at"]
    assert redumped["conversation_id"] != header["conversation_id"]
    assert "in_reply_to" not in redumped

    sender = agency_client(region, "AL-ASP", client)
    receipt = sender.submit(envelope)
    message_id = receipt["message_id"]
    assert receipt["state"] == "origin_review"
    assert message_id == header["message_id"]

    origin = officer_client(region, "al-officer", client)
    content = origin.content(message_id)
    assert content["readable"] is True
    assert base64.b64decode(content["payload_b64"]) == plaintext

    deliver(client, app, region, message_id, to_agency="MK-BP")

    agency = agency_client(region, "MK-BP", client)
    item = inbox_item(agency, message_id)
    opened = agency.open(item)  # originator signature, every countersignature, then decryption
    assert opened.plaintext == plaintext
    assert [c["decision"] for c in opened.custody] == ["approved", "received", "routed"]

    delivered = item["envelope"]
    assert delivered["header"] == sent["header"]  # byte-for-byte values, ".000Z" and upper case included
    assert delivered["signature"] == sent["signature"]
    for name in ("protected", "iv", "ciphertext", "tag"):
        assert delivered["payload"][name] == sent["payload"][name]
    assert delivered["payload"]["recipients"][:2] == sent["payload"]["recipients"]
    added = delivered["payload"]["recipients"][2]
    mk_bp = private_key(region.seed.agencies["MK-BP"].encryption_key)
    assert added["header"]["kid"] == mk_bp.thumbprint()
    # The entry the contact point added (jwcrypto) opens with joserfc too.
    assert (
        jwe.decrypt_json(flattened_for(delivered["payload"], mk_bp.thumbprint()), mk_bp).plaintext
        == plaintext
    )


# --- (c) tampering -------------------------------------------------------------------------------------


def _flip_first(text: str) -> str:
    """Change the first base64url character: still well-formed, no longer what was signed."""
    return ("B" if text[0] == "A" else "A") + text[1:]


@pytest.mark.parametrize("member", ["ciphertext", "tag", "iv"])
def test_broker_refuses_a_joserfc_envelope_changed_after_signing(
    client: TestClient, region: Region, member: str
) -> None:
    envelope = joserfc_envelope(client, region, plain_header(), b'{"question":"anything"}')
    envelope["payload"][member] = _flip_first(envelope["payload"][member])
    sender = agency_client(region, "AL-ASP", client)
    with pytest.raises(ClientError) as refused:
        sender.submit(envelope)
    assert refused.value.status == 422
    assert refused.value.problem["type"] == "urn:spoc:problem:verification-failed"
    with pytest.raises(ClientError) as unknown:
        sender.status(envelope["header"]["message_id"])
    assert unknown.value.status == 404  # nothing of a refused message is stored


def test_broker_refuses_a_joserfc_envelope_missing_its_destination_reader(
    client: TestClient, region: Region
) -> None:
    """Signed correctly but encrypted only to the origin contact point: refused by policy, not by crypto."""
    header = plain_header()
    sealed = jwe.GeneralJSONEncryption({"enc": "A256GCM"}, b'{"question":"anything"}')
    reader = directory_key(client, "AL-SPOC", "enc")
    sealed.add_recipient({"alg": "ECDH-ES+A256KW", "kid": reader.thumbprint()}, reader)
    payload = dict(jwe.encrypt_json(sealed, None))
    signer = private_key(region.seed.agencies["AL-ASP"].signing_key)
    with eddsa_deprecation():
        attached = jws.serialize_compact(
            {"alg": "EdDSA", "kid": signer.thumbprint(), "typ": ENVELOPE_TYP},
            signing_bytes(header, payload),
            signer,
            algorithms=["EdDSA"],
        )
    envelope = {"spoc": "1", "header": header, "payload": payload, "signature": jws.detach_content(attached)}
    with pytest.raises(ClientError) as refused:
        agency_client(region, "AL-ASP", client).submit(envelope)
    assert refused.value.status == 422
    assert refused.value.problem["type"] == "urn:spoc:problem:policy-refused"
    assert refused.value.problem["reason"] == "missing-reader"
