"""Refusals at intake over HTTP: a clear problem+json, nothing stored, and an audit entry of the refusal."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.actions import AuditAction
from broker.crypto import KeyPair, PublicKey, seal, sign_envelope
from broker.messages.models import CustodyStep, Message
from tests.broker.messages.spoc_builders import agency_http, audit_entries, committed
from tests.factories import Region, agency_client


def _assert_refused_and_nothing_kept(
    client: TestClient,
    region: Region,
    *,
    sender: str,
    envelope: dict[str, Any],
    status: int,
    reason: str | None,
    problem_type: str = "urn:spoc:problem:policy-refused",
) -> dict[str, Any]:
    message_id = envelope["header"]["message_id"]
    http = agency_http(client, region, sender)
    response = http.post("/v1/messages", json=envelope, headers={"Idempotency-Key": message_id})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["type"] == problem_type
    assert problem["status"] == status
    assert problem.get("reason") == reason

    # Nothing of the message stays: no status for the sender, no row, no custody step...
    status_response = http.get(f"/v1/messages/{message_id}")
    assert status_response.status_code == 404
    with committed(client) as session:
        assert session.get(Message, message_id) is None
        assert session.scalars(select(CustodyStep).where(CustodyStep.message_id == message_id)).all() == []
        # ... but the refusal itself is audited, without any content, under the agency that signed the
        # request (the refused header's message id and countries are only claims: kept in details).
        assert (
            audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_REFUSED_AT_INTAKE) == []
        )
        entries = [
            e
            for e in audit_entries(session, object_id=sender, action=AuditAction.MESSAGE_REFUSED_AT_INTAKE)
            if e.details["claimed"]["message_id"] == message_id
        ]
        [entry] = entries
        assert entry.outcome == "refused"
        assert entry.actor == sender
        assert entry.role == "agency"
        assert entry.details["reason"] == reason
        assert entry.countries == [sender.split("-", 1)[0]]
        assert entry.details["claimed"]["destination_country"] == envelope["header"]["destination_country"]
        assert envelope["payload"]["ciphertext"] not in str(entry.details)
    return problem


@pytest.mark.parametrize(("sender", "destination"), [("XK-KP", "BA"), ("XK-KP", "RS"), ("RS-MUP", "XK")])
def test_no_agreement_is_refused(client: TestClient, region: Region, sender: str, destination: str) -> None:
    envelope = agency_client(region, sender, client).build(
        payload=b'{"q": 1}', destination_country=destination, category="drug-trafficking"
    )
    problem = _assert_refused_and_nothing_kept(
        client, region, sender=sender, envelope=envelope, status=422, reason="no-agreement"
    )
    assert destination in problem["detail"]


def test_al_rs_confidential_is_not_covered(client: TestClient, region: Region) -> None:
    envelope = agency_client(region, "AL-ASP", client).build(
        payload=b'{"q": 1}',
        destination_country="RS",
        category="drug-trafficking",
        classification="CONFIDENTIAL",
    )
    problem = _assert_refused_and_nothing_kept(
        client, region, sender="AL-ASP", envelope=envelope, status=422, reason="classification-not-covered"
    )
    assert "RESTRICTED" in problem["detail"]


def test_al_rs_restricted_is_accepted(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b'{"q": 1}', destination_country="RS", category="drug-trafficking")
    assert asker.submit(envelope)["state"] == "origin_review"


def test_border_police_cannot_send_confidential(client: TestClient, region: Region) -> None:
    envelope = agency_client(region, "AL-BMP", client).build(
        payload=b'{"q": 1}',
        destination_country="MK",
        category="migrant-smuggling",
        classification="CONFIDENTIAL",
    )
    problem = _assert_refused_and_nothing_kept(
        client, region, sender="AL-BMP", envelope=envelope, status=422, reason="accreditation"
    )
    assert "AL-BMP" in problem["detail"]


def test_sender_must_be_the_authenticated_agency(client: TestClient, region: Region) -> None:
    envelope = agency_client(region, "AL-ASP", client).build(
        payload=b'{"q": 1}', destination_country="MK", category="fraud"
    )
    _assert_refused_and_nothing_kept(
        client,
        region,
        sender="AL-BMP",  # authenticated as AL-BMP, the header names AL-ASP
        envelope=envelope,
        status=403,
        reason=None,
        problem_type="urn:spoc:problem:not-permitted",
    )
    asp_status = agency_http(client, region, "AL-ASP").get(f"/v1/messages/{envelope['header']['message_id']}")
    assert asp_status.status_code == 404


def _enc_key(keys: list[PublicKey]) -> PublicKey:
    return next(k for k in reversed(keys) if k.use == "enc")


@pytest.mark.parametrize("only", ["AL-SPOC", "MK-SPOC"])
def test_payload_must_be_encrypted_to_both_contact_points(
    client: TestClient, region: Region, only: str
) -> None:
    asker = agency_client(region, "AL-ASP", client)
    template = asker.build(payload=b'{"q": 1}', destination_country="MK", category="fraud")
    header = template["header"]
    jwe = seal(b'{"q": 1}', readers=[_enc_key(asker.party_keys(only))])
    signer = KeyPair.from_private_jwk(region.seed.agencies["AL-ASP"].signing_key)
    envelope = {
        "spoc": "1",
        "header": header,
        "payload": jwe,
        "signature": sign_envelope(header, jwe, key=signer),
    }
    missing = "MK-SPOC" if only == "AL-SPOC" else "AL-SPOC"

    problem = _assert_refused_and_nothing_kept(
        client, region, sender="AL-ASP", envelope=envelope, status=422, reason="missing-reader"
    )
    assert missing in problem["detail"]
    assert f"/v1/directory/parties/{missing}/jwks" in problem["detail"]


def _corrupt_reader(envelope: dict[str, Any], reader: PublicKey) -> dict[str, Any]:
    """The envelope with ``reader``'s wrapped content key replaced by garbage of the same length. The kid
    stays listed and the originator's signature still verifies (it does not cover ``recipients``)."""
    for entry in envelope["payload"]["recipients"]:
        if entry["header"]["kid"] == reader.kid:
            wrapped = entry["encrypted_key"]
            entry["encrypted_key"] = ("A" if wrapped[0] != "A" else "B") + wrapped[1:]
            return envelope
    raise AssertionError(f"{reader.kid} is not a recipient")


def test_a_corrupted_origin_reader_is_refused_with_nothing_stored(client: TestClient, region: Region) -> None:
    """Listing the origin contact point's kid is not enough: it must be able to open the payload, or the
    content would pass its review unread and reach the destination."""
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b'{"q": 1}', destination_country="MK", category="fraud")
    _corrupt_reader(envelope, _enc_key(asker.party_keys("AL-SPOC")))
    problem = _assert_refused_and_nothing_kept(
        client, region, sender="AL-ASP", envelope=envelope, status=422, reason="missing-reader"
    )
    assert "AL-SPOC" in problem["detail"]


def test_a_corrupted_origin_reader_is_refused_in_a_batch_alone(client: TestClient, region: Region) -> None:
    with agency_client(region, "AL-ASP", client) as asker:
        good = asker.build(payload=b'{"q": 1}', destination_country="MK", category="fraud")
        bad = asker.build(payload=b'{"q": 2}', destination_country="MK", category="fraud")
        _corrupt_reader(bad, _enc_key(asker.party_keys("AL-SPOC")))
        answer = asker.submit_batch([bad, good])
    assert [(r["index"], r["status"]) for r in answer["results"]] == [(0, 422), (1, 202)]
    assert answer["results"][0]["problem"]["reason"] == "missing-reader"
    with committed(client) as session:
        assert session.get(Message, bad["header"]["message_id"]) is None
        assert session.get(Message, good["header"]["message_id"]) is not None
        # Filed under the agency that signed the request; the refused header's message id only as claimed.
        refusals = [
            e.details["reason"]
            for e in audit_entries(session, object_id="AL-ASP", action=AuditAction.MESSAGE_REFUSED_AT_INTAKE)
            if e.details.get("claimed", {}).get("message_id") == bad["header"]["message_id"]
        ]
        assert refusals == ["missing-reader"]
        assert audit_entries(session, object_id=bad["header"]["message_id"]) == []
