"""Keys that rotate and get revoked, a chain of custody checked hop by hop, and signed receipts."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.audit.service import Actor
from broker.client.agency import ClientError
from broker.client.custody import CustodyError
from broker.crypto import KeyPair, countersign
from broker.db import unit_of_work
from broker.errors import VerificationError
from broker.keys.service import DatabaseKeyStore, rotate_held
from tests.factories import Region, agency_client, deliver_request, drain, officer_client

ADMIN = Actor("test-admin", "admin")


def _admin_headers(client: TestClient, region: Region) -> dict[str, str]:
    token = client.post(
        "/v1/auth/login", json={"username": "admin", "password": region.password("admin")}
    ).json()
    return {"Authorization": f"Bearer {token['token']}"}


# --- custody ------------------------------------------------------------------------------------


def test_every_hop_verifies_on_a_delivered_message(client: TestClient, region: Region) -> None:
    _, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="drug-trafficking")
    report = agency_client(region, "HR-POL", client).custody(item)
    assert [(h.name, h.party, h.status) for h in report.hops] == [
        ("approved", "ME-SPOC", "ok"),
        ("received", "HR-SPOC", "ok"),
        ("routed", "HR-SPOC", "ok"),
    ]


@pytest.mark.parametrize("hop", ["approved", "received", "routed"])
def test_a_missing_hop_is_named(client: TestClient, region: Region, hop: str) -> None:
    _, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    broken = copy.deepcopy(item)
    broken["custody"] = [s for s in broken["custody"] if s["decision"] != hop]
    receiver = agency_client(region, "HR-POL", client)
    with pytest.raises(CustodyError, match=f"'{hop}'.*missing"):
        receiver.open(broken)


@pytest.mark.parametrize("hop", ["approved", "received", "routed"])
def test_a_tampered_countersignature_is_named(client: TestClient, region: Region, hop: str) -> None:
    _, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    broken = copy.deepcopy(item)
    step = next(s for s in broken["custody"] if s["decision"] == hop)
    head, payload, sig = step["signature"].split(".")
    step["signature"] = f"{head}.{payload}.{sig[:-4]}AAAA"
    report = agency_client(region, "HR-POL", client).custody(broken)
    bad = next(h for h in report.hops if h.name == hop)
    assert bad.status == "bad"
    assert "does not verify" in bad.detail
    assert all(h.status == "ok" for h in report.hops if h.name != hop)


def test_a_hop_signed_by_the_wrong_party_or_over_other_bytes_is_bad(
    client: TestClient, region: Region, keys: DatabaseKeyStore
) -> None:
    message_id, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    receiver = agency_client(region, "HR-POL", client)
    received = next(s for s in item["custody"] if s["decision"] == "received")
    statement = receiver.custody(item).hops[1].statement
    assert statement is not None

    # The right statement, signed by another contact point's key.
    forged = copy.deepcopy(item)
    step = next(s for s in forged["custody"] if s["decision"] == "received")
    step["signature"] = countersign(statement, key=keys.signing_key("RS-SPOC"))
    assert receiver.custody(forged).hops[1].status == "bad"

    # The right key, over a different digest (another message's bytes).
    other = copy.deepcopy(item)
    step = next(s for s in other["custody"] if s["decision"] == "received")
    step["signature"] = countersign(
        {**statement, "digest": "sha-256:" + "0" * 64}, key=keys.signing_key("HR-SPOC")
    )
    hop = receiver.custody(other).hops[1]
    assert hop.status == "bad"
    assert "digest" in hop.detail
    assert received["signature"] != step["signature"]
    assert message_id == item["message_id"]


def test_tampered_envelope_fails_the_originator_signature(client: TestClient, region: Region) -> None:
    _, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    broken = copy.deepcopy(item)
    broken["envelope"]["header"]["category"] = "murder"
    with pytest.raises(VerificationError):
        agency_client(region, "HR-POL", client).open(broken)


# --- receipts -----------------------------------------------------------------------------------


def test_signed_receipt_reaches_the_sender(client: TestClient, region: Region) -> None:
    message_id, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    receiver = agency_client(region, "HR-POL", client)
    receiver.ack(receiver.open(item))
    sender = agency_client(region, "ME-UP", client)
    status = sender.status(message_id)
    (receipt,) = sender.verify_receipts(status)
    assert receipt["agency"] == "HR-POL"
    assert receipt["message_id"] == message_id
    assert status["receipts"][0]["agency"] == "HR-POL"


def test_receipt_for_other_bytes_or_by_another_agency_is_refused(client: TestClient, region: Region) -> None:
    message_id, item = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    receiver = agency_client(region, "HR-POL", client)
    opened = receiver.open(item)
    wrong_digest = type(opened)(
        opened.message_id, opened.header, opened.plaintext, opened.custody, "sha-256:00"
    )
    with pytest.raises(ClientError) as refused:
        receiver.ack(wrong_digest)
    assert refused.value.status == 400
    # A receipt signed by another agency's key is refused too.
    from broker.crypto import sign_receipt

    statement = {
        "type": "receipt",
        "message_id": message_id,
        "digest": opened.digest,
        "agency": "HR-POL",
        "received_at": "2026-01-01T00:00:00.000000Z",
    }
    other = sign_receipt(statement, key=KeyPair.from_private_jwk(region.seed.agencies["RS-MUP"].signing_key))
    response = receiver._call  # the signed transport, with a forged body
    with pytest.raises(ClientError) as forged:
        response("POST", f"/v1/inbox/{message_id}/ack", json={"receipt": other})
    assert forged.value.status == 422
    assert any(i["message_id"] == message_id for i in receiver.inbox_all())  # still not acknowledged


# --- rotation and revocation --------------------------------------------------------------------


def test_contact_point_rotation_keeps_old_messages_readable_and_old_hops_valid(
    client: TestClient, region: Region
) -> None:
    asker = agency_client(region, "SI-POL", client)
    before = asker.build(payload=b'{"old": true}', destination_country="ME", category="cybercrime")
    old_id = asker.submit(before)["message_id"]
    officer_client(region, "si-officer", client).decide(old_id, "approve")  # signed with SI-SPOC's old key
    state = client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        old_sig = DatabaseKeyStore(session, state.master_key).signing_key("SI-SPOC").kid
        new = rotate_held(session, state.master_key, party_id="SI-SPOC", actor=ADMIN)
    new_sig = next(k.kid for k in new if k.use == "sig")
    assert new_sig != old_sig
    drain(client)
    me = officer_client(region, "me-officer", client)
    me.decide(old_id, "route", route_to_agency="ME-UP")
    drain(client)
    receiver = agency_client(region, "ME-UP", client)
    item = next(i for i in receiver.inbox_all() if i["message_id"] == old_id)
    assert receiver.open(item).plaintext == b'{"old": true}'  # the "approved" hop used the retired key
    registry = {e["kid"]: e["status"] for e in receiver.key_registry("SI-SPOC")}
    assert registry[old_sig] == "retired"
    assert registry[new_sig] == "active"
    # A new envelope is sealed to the new encryption key, and the contact point still reads both.
    fresh = agency_client(region, "SI-POL", client)
    after = fresh.build(payload=b'{"new": true}', destination_country="ME", category="cybercrime")
    new_enc = next(k.kid for k in new if k.use == "enc")
    assert new_enc in [r["header"]["kid"] for r in after["payload"]["recipients"]]
    new_id = fresh.submit(after)["message_id"]
    content = officer_client(region, "si-officer", client).content(new_id)
    assert content["readable"] is True


def test_agency_rotation_retires_the_old_key(client: TestClient, region: Region) -> None:
    creds = region.seed.agencies["BA-FID"]
    agency = agency_client(region, "BA-FID", client)
    new_sig = KeyPair.generate("sig")
    response = agency._call("POST", "/v1/keys", json={"jwk": new_sig.public.jwk})
    assert response.status_code == 201
    with pytest.raises(ClientError) as refused:  # the old key no longer authenticates
        agency.inbox()
    assert refused.value.status == 401
    from dataclasses import replace

    from broker.client.agency import AgencyClient

    rotated = AgencyClient(
        "http://testserver",
        replace(creds, signing_key=new_sig.private_jwk_json()),
        transport=client._transport,
    )
    assert isinstance(rotated.inbox(), list)  # the new key authenticates: no ClientError
    statuses = {e["kid"]: e["status"] for e in rotated.key_registry("BA-FID")}
    assert statuses[new_sig.kid] == "active"
    assert statuses[KeyPair.from_private_jwk(creds.signing_key).kid] == "retired"


def test_revocation_refuses_after_and_keeps_what_came_before(client: TestClient, region: Region) -> None:
    message_id, item = deliver_request(
        client, region, sender="SI-UPPD", target="HR-AMLO", category="money-laundering"
    )
    kid = KeyPair.from_private_jwk(region.seed.agencies["SI-UPPD"].signing_key).kid
    revoked = client.post(
        f"/v1/admin/keys/{kid}/revoke",
        json={"reason": "laptop stolen"},
        headers=_admin_headers(client, region),
    )
    assert revoked.status_code == 200, revoked.text
    sender = agency_client(region, "SI-UPPD", client)
    with pytest.raises(ClientError) as refused:
        sender.submit(sender.build(payload=b"{}", destination_country="HR", category="money-laundering"))
    assert refused.value.status == 401
    assert "revoked" in refused.value.problem["detail"]
    # What it signed before the revocation still opens at the receiver.
    receiver = agency_client(region, "HR-AMLO", client)
    assert receiver.open(item).message_id == message_id
    registry = {e["kid"]: e for e in receiver.key_registry("SI-UPPD")}
    assert registry[kid]["status"] == "revoked"
    assert registry[kid]["revocation_reason"] == "laptop stolen"


def test_only_an_admin_revokes(client: TestClient, region: Region) -> None:
    token = client.post(
        "/v1/auth/login", json={"username": "al-supervisor", "password": region.password("al-supervisor")}
    ).json()
    response = client.post(
        "/v1/admin/keys/whatever/revoke",
        json={"reason": "x"},
        headers={"Authorization": f"Bearer {token['token']}"},
    )
    assert response.status_code == 403


def test_revoked_held_key_is_refused_by_the_keystore(db: Session, keys: DatabaseKeyStore) -> None:
    from broker.keys.service import KeyRevoked, revoke

    kid = keys.signing_key("MK-SPOC").kid
    revoke(db, kid=kid, reason="test", actor=ADMIN)
    with pytest.raises(KeyRevoked, match="revoked"):
        keys.resolve(kid)
