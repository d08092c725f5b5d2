"""The walk of one request over HTTP (in-process app, real PostgreSQL, outbox drained in-process)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from broker.client.agency import ClientError
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.messages.work import drain
from tests.factories import Region, agency_client, officer_client


def _drain(client: TestClient) -> int:
    app = client.app
    with unit_of_work(app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        return drain(session, DatabaseKeyStore(session, app.state.master_key))  # type: ignore[attr-defined]


def test_request_flows_end_to_end_and_is_answered(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(
        payload=b'{"q": "who owns the van"}', destination_country="AL", category="migrant-smuggling"
    )
    receipt = asker.submit(envelope)
    message_id = receipt["message_id"]
    assert receipt["state"] == "origin_review"
    assert receipt["deadline_at"] is not None

    xk = officer_client(region, "xk-officer", client)
    assert message_id in [m["message_id"] for m in xk.queue("outbound")]
    xk.decide(message_id, "approve")
    assert asker.status(message_id)["state"] == "forwarded"
    assert _drain(client) >= 1

    al = officer_client(region, "al-officer", client)
    assert (al.message(message_id) or {}).get("state") == "destination_review"
    content = al.content(message_id)
    assert content["readable"] is True
    al.decide(message_id, "route", route_to_agency="AL-ASP")
    _drain(client)

    responder = agency_client(region, "AL-ASP", client)
    item = next(i for i in responder.inbox_all() if i["message_id"] == message_id)
    opened = responder.open(item)
    assert opened.plaintext == b'{"q": "who owns the van"}'
    assert [c["decision"] for c in opened.custody] == ["approved", "received", "routed"]
    responder.ack(opened)
    assert all(i["message_id"] != message_id for i in responder.inbox_all())

    answer = responder.reply(opened, payload=json.dumps({"owner": "subject-1"}).encode())
    responder.submit(answer)
    assert asker.status(message_id)["state"] == "answered"
    al.decide(answer["header"]["message_id"], "approve")
    _drain(client)
    xk.decide(answer["header"]["message_id"], "route", route_to_agency="XK-KP")
    _drain(client)
    back = next(i for i in asker.inbox_all() if i["message_id"] == answer["header"]["message_id"])
    assert json.loads(asker.open(back).plaintext) == {"owner": "subject-1"}


def test_no_legal_basis_is_refused_with_problem_json(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "XK-KP", client)
    envelope = asker.build(payload=b"{}", destination_country="BA", category="migrant-smuggling")
    with pytest.raises(ClientError) as refused:
        asker.submit(envelope)
    assert refused.value.status == 422
    problem = refused.value.problem
    assert problem["type"] == "urn:spoc:problem:policy-refused"
    assert problem["reason"] == "no-agreement"
    assert "BA" in problem["detail"]
    assert "XK" in problem["detail"]
    with pytest.raises(ClientError) as missing:
        asker.status(envelope["header"]["message_id"])
    assert missing.value.status == 404  # nothing stored


def test_tampered_signature_is_refused(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b"{}", destination_country="MK", category="drug-trafficking")
    envelope["header"]["category"] = "fraud"  # changed after signing
    with pytest.raises(ClientError) as refused:
        asker.submit(envelope)
    assert refused.value.status == 422
    assert refused.value.problem["type"] == "urn:spoc:problem:verification-failed"


def test_unauthenticated_post_is_refused(client: TestClient) -> None:
    response = client.post("/v1/messages", json={})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
