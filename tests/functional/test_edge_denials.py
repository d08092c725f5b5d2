"""Denied calls are in the audit log, over HTTP: the national auditor of the caller's country finds each one
(401, 403 for a role, a CSRF token or a clearance, 404 out of scope, a four-eyes refusal) with its route and
object; and a refusal at intake is filed under the authenticated agency, not under the header's claims."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.client.agency import ClientError
from broker.crypto import KeyPair
from broker.crypto.httpsig import sign_request
from tests.broker.messages.spoc_builders import agency_http, committed, officer_headers
from tests.factories import Region, agency_client, officer_client


def _denied(client: TestClient, region: Region, auditor: str, object_id: str) -> list[dict[str, Any]]:
    """The ``access:denied`` entries about ``object_id`` that ``auditor`` (a national auditor) finds."""
    response = client.get(
        "/v1/audit/entries",
        params={"action": "access:denied", "message": object_id},
        headers=officer_headers(client, region, auditor),
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def _submit(client: TestClient, region: Region, sender: str, to: str, classification: str) -> str:
    asker = agency_client(region, sender, client)
    envelope = asker.build(
        payload=b'{"q": "edge"}',
        destination_country=to,
        category="drug-trafficking",
        classification=classification,
    )
    message_id: str = asker.submit(envelope)["message_id"]
    return message_id


def test_a_bad_agency_signature_is_a_denied_entry_for_the_claimed_agency_country(
    client: TestClient, region: Region
) -> None:
    key = KeyPair.from_private_jwk(region.seed.agencies["HR-DORH"].signing_key)
    signed_for, probed = str(uuid.uuid4()), str(uuid.uuid4())
    headers: dict[str, str] = {}
    sign_request("GET", f"http://testserver/v1/messages/{signed_for}", headers, b"", key=key)
    # The signature covers another path: replayed here it does not verify.
    response = client.get(f"/v1/messages/{probed}", headers=headers)
    assert response.status_code == 401, response.text

    [entry] = _denied(client, region, "hr-auditor", probed)
    assert entry["actor"] == "anonymous"
    assert entry["outcome"] == "denied"
    assert entry["object_type"] == "message"
    assert entry["details"]["route"] == "GET /v1/messages/{message_id}"
    assert entry["details"]["error"] == "not-authenticated"
    assert entry["details"]["claimed"]["key_id"] == key.kid
    assert entry["details"]["claimed"]["party"] == "HR-DORH"
    assert _denied(client, region, "al-auditor", probed) == []


def test_an_officer_asking_for_an_auditors_route_is_a_denied_entry(
    client: TestClient, region: Region
) -> None:
    entry_id = str(10**12 + uuid.uuid4().int % 10**9)
    response = client.get(
        f"/v1/audit/entries/{entry_id}", headers=officer_headers(client, region, "hr-officer")
    )
    assert response.status_code == 403, response.text

    [entry] = _denied(client, region, "hr-auditor", entry_id)
    assert (entry["actor"], entry["role"]) == ("hr-officer", "officer")
    assert entry["countries"] == ["HR"]
    assert entry["object_type"] == "entry"
    assert entry["details"]["route"] == "GET /v1/audit/entries/{entry_id}"
    assert entry["details"]["params"] == {"entry_id": entry_id}
    assert entry["details"]["error"] == "not-permitted"


def test_a_cookie_write_without_the_csrf_header_is_a_denied_entry(client: TestClient, region: Region) -> None:
    message_id = _submit(client, region, "HR-DORH", "SI", "RESTRICTED")
    token = officer_headers(client, region, "hr-officer")["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url="http://testserver", transport=client._transport) as browser:
        browser.cookies.set("spoc_session", token)
        response = browser.post(f"/v1/cp/messages/{message_id}/decisions", json={"action": "approve"})
    assert response.status_code == 403, response.text
    assert "X-CSRF-Token" in response.json()["detail"]

    [entry] = _denied(client, region, "hr-auditor", message_id)
    assert (entry["actor"], entry["countries"]) == ("hr-officer", ["HR"])
    assert entry["details"]["route"] == "POST /v1/cp/messages/{message_id}/decisions"


def test_a_ui_form_without_its_csrf_token_is_a_denied_entry(client: TestClient, region: Region) -> None:
    message_id = _submit(client, region, "HR-DORH", "SI", "RESTRICTED")
    token = officer_headers(client, region, "hr-officer")["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url="http://testserver", transport=client._transport) as browser:
        browser.cookies.set("spoc_session", token)
        response = browser.post(f"/ui/messages/{message_id}/decide", data={"action": "approve"})
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("text/html")

    [entry] = _denied(client, region, "hr-auditor", message_id)
    assert entry["actor"] == "hr-officer"
    assert entry["details"]["route"] == "POST /ui/messages/{message_id}/decide"


def test_deciding_above_ones_clearance_is_a_denied_entry(client: TestClient, region: Region) -> None:
    message_id = _submit(client, region, "HR-DORH", "SI", "CONFIDENTIAL")
    response = client.post(
        f"/v1/cp/messages/{message_id}/decisions",
        json={"action": "approve"},
        headers=officer_headers(client, region, "hr-officer"),  # cleared RESTRICTED
    )
    assert response.status_code == 403, response.text

    [entry] = _denied(client, region, "hr-auditor", message_id)
    assert (entry["actor"], entry["countries"]) == ("hr-officer", ["HR"])
    assert entry["details"]["route"] == "POST /v1/cp/messages/{message_id}/decisions"


def test_a_message_out_of_scope_is_a_denied_entry_for_the_callers_country_only(
    client: TestClient, region: Region
) -> None:
    message_id = _submit(client, region, "AL-ASP", "MK", "RESTRICTED")
    response = client.get(
        f"/v1/cp/messages/{message_id}", headers=officer_headers(client, region, "hr-officer")
    )
    assert response.status_code == 404, response.text

    [entry] = _denied(client, region, "hr-auditor", message_id)
    assert (entry["actor"], entry["countries"]) == ("hr-officer", ["HR"])
    assert entry["details"]["route"] == "GET /v1/cp/messages/{message_id}"
    assert entry["details"]["error"] == "not-found"


def test_a_second_approval_by_the_same_officer_is_a_denied_entry(client: TestClient, region: Region) -> None:
    message_id = _submit(client, region, "AL-ASP", "MK", "CONFIDENTIAL")
    officer = officer_client(region, "al-officer2", client)
    officer.decide(message_id, "approve")
    with pytest.raises(ClientError) as refused:
        officer.decide(message_id, "approve")
    assert refused.value.status == 409
    assert refused.value.problem["type"] == "urn:spoc:problem:conflict"

    [entry] = _denied(client, region, "al-auditor", message_id)
    assert (entry["actor"], entry["countries"]) == ("al-officer2", ["AL"])
    assert entry["details"]["kind"] == "FourEyesRefused"
    assert entry["details"]["route"] == "POST /v1/cp/messages/{message_id}/decisions"


def test_a_failed_login_is_audited_once_not_again_as_a_denial(client: TestClient, region: Region) -> None:
    before = _count_denied(client, "/v1/auth/login")
    response = client.post("/v1/auth/login", json={"username": "hr-officer", "password": "wrong"})
    assert response.status_code == 401
    assert _count_denied(client, "/v1/auth/login") == before  # it is session:login-failed already


def test_a_storm_of_anonymous_denials_is_throttled_and_counted(client: TestClient, region: Region) -> None:
    per_minute = client.app.state.settings.audit_denials_per_minute  # type: ignore[attr-defined]
    probe = str(uuid.uuid4())
    before = _count_denied(client, probe)
    stranger = TestClient(client.app, client=("203.0.113.9", 50000))
    for _ in range(per_minute + 20):
        assert stranger.get(f"/v1/messages/{probe}").status_code == 401
    written = _count_denied(client, probe) - before
    assert written <= per_minute + 1  # the burst, and at most one token refilled meanwhile


def _count_denied(client: TestClient, object_id: str) -> int:
    with committed(client) as session:
        return len(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "access:denied", AuditEntry.object_id == object_id
                )
            ).all()
        )


def test_a_refusal_at_intake_is_filed_under_the_authenticated_agency(
    client: TestClient, region: Region
) -> None:
    envelope = agency_client(region, "HR-DORH", client).build(
        payload=b'{"q": 1}', destination_country="SI", category="drug-trafficking"
    )
    # HR-DORH names AL-ASP as the sender and AL as the origin: a claim it cannot make.
    envelope["header"] = {**envelope["header"], "sender_agency": "AL-ASP", "origin_country": "AL"}
    message_id = envelope["header"]["message_id"]
    response = agency_http(client, region, "HR-DORH").post("/v1/messages", json=envelope)
    assert response.status_code in (403, 422), response.text

    with committed(client) as session:
        [entry] = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "message:refused-at-intake", AuditEntry.actor == "HR-DORH")
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).all()
        assert entry.countries == ["HR"]
        assert (entry.object_type, entry.object_id) == ("agency", "HR-DORH")
        assert entry.details["claimed"]["message_id"] == message_id
        assert entry.details["claimed"]["origin_country"] == "AL"
        planted = session.scalars(select(AuditEntry).where(AuditEntry.object_id == message_id)).all()
        assert planted == []
