"""``Idempotency-Key`` on agency POSTs: same key and body replay the answer, another body is a conflict."""

from __future__ import annotations

import uuid

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.audit.actions import AuditAction
from broker.messages.models import IdempotencyRecord, Message
from tests.broker.messages.spoc_builders import agency_http, audit_entries, committed
from tests.factories import Region, agency_client

JSON = {"Content-Type": "application/json"}


def test_same_key_and_body_replays_the_same_answer(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b"{}", destination_country="MK", category="fraud")
    body = orjson.dumps(envelope)
    key = f"retry-{uuid.uuid4()}"
    http = agency_http(client, region, "AL-ASP")

    first = http.post("/v1/messages", content=body, headers={**JSON, "Idempotency-Key": key})
    second = http.post("/v1/messages", content=body, headers={**JSON, "Idempotency-Key": key})

    assert first.status_code == second.status_code == 202
    assert "idempotent-replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    message_id = envelope["header"]["message_id"]
    with committed(client) as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) == 1
        assert len(audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_SUBMITTED)) == 1
        record = session.get(IdempotencyRecord, ("AL-ASP", key))
        assert record is not None
        assert record.status_code == 202


def test_same_key_with_another_body_is_a_conflict(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    key = f"retry-{uuid.uuid4()}"
    first = asker.build(payload=b"{}", destination_country="MK", category="fraud")
    other = asker.build(payload=b"{}", destination_country="MK", category="fraud")
    http = agency_http(client, region, "AL-ASP")

    assert http.post("/v1/messages", json=first, headers={"Idempotency-Key": key}).status_code == 202
    response = http.post("/v1/messages", json=other, headers={"Idempotency-Key": key})

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:spoc:problem:conflict"
    assert "Idempotency-Key" in response.json()["detail"]
    status = http.get(f"/v1/messages/{other['header']['message_id']}")
    assert status.status_code == 404  # the second body was never submitted


def test_same_message_id_under_a_new_key_is_a_conflict(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b"{}", destination_country="MK", category="fraud")
    http = agency_http(client, region, "AL-ASP")

    ok = http.post("/v1/messages", json=envelope, headers={"Idempotency-Key": f"k1-{uuid.uuid4()}"})
    again = http.post("/v1/messages", json=envelope, headers={"Idempotency-Key": f"k2-{uuid.uuid4()}"})

    assert ok.status_code == 202
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    message_id = envelope["header"]["message_id"]
    assert message_id in again.json()["detail"]
    with committed(client) as session:
        assert len(audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_SUBMITTED)) == 1


def test_same_message_without_any_key_twice_is_a_conflict(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b"{}", destination_country="MK", category="fraud")
    http = agency_http(client, region, "AL-ASP")
    assert http.post("/v1/messages", json=envelope).status_code == 202
    assert http.post("/v1/messages", json=envelope).status_code == 409


def test_keys_are_per_agency(client: TestClient, region: Region) -> None:
    """Another agency using the same key string neither replays nor collides with the first one's answer."""
    key = f"shared-{uuid.uuid4()}"
    al = agency_client(region, "AL-ASP", client)
    mk = agency_client(region, "MK-MOI", client)
    al_envelope = al.build(payload=b"{}", destination_country="MK", category="fraud")
    mk_envelope = mk.build(payload=b"{}", destination_country="AL", category="fraud")

    al_receipt = al.submit(al_envelope, idempotency_key=key)
    mk_response = agency_http(client, region, "MK-MOI").post(
        "/v1/messages", json=mk_envelope, headers={"Idempotency-Key": key}
    )

    assert mk_response.status_code == 202
    assert "idempotent-replayed" not in mk_response.headers
    assert mk_response.json()["message_id"] == mk_envelope["header"]["message_id"]
    assert mk_response.json()["message_id"] != al_receipt["message_id"]


def test_an_over_long_key_is_invalid_input(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b"{}", destination_country="MK", category="fraud")
    http = agency_http(client, region, "AL-ASP")
    response = http.post("/v1/messages", json=envelope, headers={"Idempotency-Key": "k" * 201})
    assert response.status_code == 400
    assert response.json()["type"] == "urn:spoc:problem:invalid-input"
    assert http.get(f"/v1/messages/{envelope['header']['message_id']}").status_code == 404


def test_a_refused_submission_is_not_remembered_under_its_key(client: TestClient, region: Region) -> None:
    """A 422 is not cached: after fixing the problem the agency can retry with a new body and the same key."""
    asker = agency_client(region, "XK-KP", client)
    key = f"retry-{uuid.uuid4()}"
    http = agency_http(client, region, "XK-KP")
    refused = asker.build(payload=b"{}", destination_country="BA", category="fraud")
    assert http.post("/v1/messages", json=refused, headers={"Idempotency-Key": key}).status_code == 422
    with committed(client) as session:
        assert session.get(IdempotencyRecord, ("XK-KP", key)) is None
    fixed = asker.build(payload=b"{}", destination_country="AL", category="fraud")
    assert http.post("/v1/messages", json=fixed, headers={"Idempotency-Key": key}).status_code == 202
