"""Rules of the review that every door shares (project issue 12): only content an officer could read is
passed on, conversations are scoped like their messages, four eyes on the roles of the moment of approval,
an answer goes to its requester, accept once, and deadline extensions only as Art. 5(2) allows."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts.models import User
from broker.accounts.service import create_user
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM
from broker.client.agency import ClientError
from broker.crypto import PublicKey
from broker.messages.models import Message
from broker.messages.service import custody_of
from tests.broker.messages.spoc_builders import URGENT_DIRECT, audit_entries, committed, officer_headers
from tests.contact_points.test_ui_pages import _csrf, log_in
from tests.factories import Region, agency_client, deliver_request, drain

PASSWORD = "a-long-test-password"
H3_PAYLOAD = json.dumps({"q": "bank records", "conditions": "Not to be used in court proceedings."}).encode()


def _submit(client: TestClient, region: Region, sender: str, **build: Any) -> str:
    asker = agency_client(region, sender, client)
    envelope = asker.build(payload=build.pop("payload", b'{"q": "x"}'), **build)
    message_id: str = asker.submit(envelope)["message_id"]
    return message_id


def _get(client: TestClient, headers: dict[str, str], message_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/cp/messages/{message_id}", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _decide(
    client: TestClient, headers: dict[str, str], message_id: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/v1/cp/messages/{message_id}/decisions", json=body, headers=headers)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    result: dict[str, Any] = response.json()
    return response.status_code, result


def _bulk(
    client: TestClient, headers: dict[str, str], message_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = client.post(
        "/v1/cp/decisions",
        json={"decisions": [{"message_id": message_id, "decision": body}]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


# --- 1. only what the officer could read is passed on ------------------------------------------------


def test_h3_is_approved_only_after_the_officer_acknowledged_its_conditions(
    client: TestClient, region: Region
) -> None:
    single = _submit(
        client,
        region,
        "AL-ASP",
        destination_country="MK",
        category="fraud",
        handling_codes=("H0", "H3"),
        payload=H3_PAYLOAD,
    )
    bulk = _submit(
        client,
        region,
        "AL-ASP",
        destination_country="MK",
        category="fraud",
        handling_codes=("H0", "H3"),
        payload=H3_PAYLOAD,
    )
    al = officer_headers(client, region, "al-officer")
    for message_id in (single, bulk):
        assert "approve" not in _get(client, al, message_id)["allowed_actions"]
    status, problem = _decide(client, al, single, {"action": "approve"})
    assert (status, problem["type"]) == (403, "urn:spoc:problem:not-permitted")
    assert "H3" in problem["detail"]
    outcome = _bulk(client, al, bulk, {"action": "approve"})
    assert (outcome["status"], outcome["problem"]["type"]) == (403, "urn:spoc:problem:not-permitted")
    with committed(client) as session:
        for message_id in (single, bulk):
            assert [s.decision for s in custody_of(session, message_id)] == ["submitted"]

    for message_id in (single, bulk):
        acknowledged = client.post(f"/v1/cp/messages/{message_id}/conditions/acknowledgement", headers=al)
        assert acknowledged.status_code == 204
        assert "approve" in _get(client, al, message_id)["allowed_actions"]
    assert _decide(client, al, single, {"action": "approve"})[1]["state"] == "forwarded"
    assert _bulk(client, al, bulk, {"action": "approve"})["status"] == 200


def _corrupt(envelope: dict[str, Any], reader: PublicKey) -> None:
    """Garble ``reader``'s wrapped content key; its kid stays listed, the signature still verifies."""
    [entry] = [r for r in envelope["payload"]["recipients"] if r["header"]["kid"] == reader.kid]
    entry["encrypted_key"] = ("A" if entry["encrypted_key"][0] != "A" else "B") + entry["encrypted_key"][1:]


def test_content_the_destination_cannot_decrypt_is_neither_accepted_nor_routed(
    client: TestClient, region: Region
) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(payload=b'{"q": 1}', destination_country="MK", category="fraud")
    mk_key = next(k for k in reversed(asker.party_keys("MK-SPOC")) if k.use == "enc")
    _corrupt(envelope, mk_key)
    message_id = asker.submit(envelope)["message_id"]  # the origin node cannot check MK's entry
    al = officer_headers(client, region, "al-officer")
    assert _decide(client, al, message_id, {"action": "approve"})[0] == 200
    drain(client)
    mk = officer_headers(client, region, "mk-officer")
    offered = _get(client, mk, message_id)["allowed_actions"]
    assert "accept" not in offered
    assert "route" not in offered
    assert "refuse" in offered  # it can still be sent back or refused
    for body in ({"action": "accept"}, {"action": "route", "route_to_agency": "MK-MOI"}):
        status, problem = _decide(client, mk, message_id, body)
        assert status == 403, problem
        assert "cannot be decrypted" in problem["detail"]
        assert _bulk(client, mk, message_id, body)["status"] == 403
    with committed(client) as session:
        assert [s.decision for s in custody_of(session, message_id)] == ["submitted", "approved", "received"]


# --- 2. a conversation is listed only as far as its messages are in scope -----------------------------


def test_the_conversation_lists_only_messages_in_the_officers_scope(
    client: TestClient, region: Region
) -> None:
    """The conversation id is the sender's choice: RS-MUP reuses AL-ASP's. AL's officers must not learn of
    RS's message (nor MK's before RS lets it go), on the API or the page."""
    conversation_id = str(uuid.uuid4())
    common: dict[str, Any] = {
        "destination_country": "MK",
        "category": "fraud",
        "conversation_id": conversation_id,
    }
    al_first = _submit(client, region, "AL-ASP", **common)
    al_second = _submit(client, region, "AL-ASP", **common)
    rs_message = _submit(client, region, "RS-MUP", **common)  # stays in RS's origin review

    def listed(username: str, message_id: str) -> set[str]:
        detail = _get(client, officer_headers(client, region, username), message_id)
        return {c["message_id"] for c in detail["conversation"]}

    assert listed("al-officer", al_first) == {al_second}
    assert listed("rs-officer", rs_message) == set()
    log_in(client, "al-officer", region.password("al-officer"))
    page = client.get(f"/ui/messages/{al_first}").text
    assert al_second[:8] in page
    assert rs_message[:8] not in page

    al = officer_headers(client, region, "al-officer")
    assert _decide(client, al, al_first, {"action": "approve"})[0] == 200
    drain(client)
    assert listed("mk-officer", al_first) == set()  # neither AL's second nor RS's is forwarded yet
    log_in(client, "mk-officer", region.password("mk-officer"))
    assert rs_message[:8] not in client.get(f"/ui/messages/{al_first}").text
    rs = officer_headers(client, region, "rs-officer")
    assert _decide(client, rs, rs_message, {"action": "approve"})[0] == 200
    drain(client)
    assert listed("mk-officer", al_first) == {rs_message}  # now in MK's inbound queue
    assert listed("al-officer", al_first) == {al_second}


# --- 3. four eyes on the roles of the moment of approval -----------------------------------------------


def test_a_promotion_after_approving_does_not_make_that_approval_a_supervisors(
    client: TestClient, region: Region
) -> None:
    suffix = uuid.uuid4().hex[:6]
    first, second = f"hr-secret-a-{suffix}", f"hr-secret-b-{suffix}"
    with committed(client) as session:
        for username in (first, second):
            create_user(
                session,
                username=username,
                password=PASSWORD,
                role="officer",
                contact_point_id="HR-SPOC",
                country="HR",
                clearance="SECRET",
                actor=SYSTEM,
            )
    secret = {"destination_agency": "SI-DT", "category": "corruption", "classification": "SECRET"}
    message_id = _submit(client, region, "HR-DORH", destination_country="SI", **secret)
    approved = client.post(
        f"/v1/cp/messages/{message_id}/decisions", json={"action": "approve"}, headers=_login(client, first)
    )
    assert approved.json()["state"] == "origin_review"  # the first of two

    log_in(client, "admin", region.password("admin"))
    csrf = _csrf(client.get("/ui/admin/users").text)
    promoted = client.post(f"/ui/admin/users/{first}/update", data={"role": "supervisor", "csrf": csrf})
    assert promoted.status_code == 200
    with committed(client) as session:
        assert session.scalar(select(User.role).where(User.username == first)) == "supervisor"

    status, problem = _decide(client, _login(client, second), message_id, {"action": "approve"})
    assert status in (403, 409), problem  # four eyes (its problem type is another change's)
    assert "supervisor" in problem["detail"]
    outcome = _bulk(client, _login(client, second), message_id, {"action": "approve"})
    assert outcome["status"] == status
    with committed(client) as session:
        assert [s.decision for s in custody_of(session, message_id)] == ["submitted", "approved-first"]
    supervisor = officer_headers(client, region, "hr-supervisor")
    assert _decide(client, supervisor, message_id, {"action": "approve"})[1]["state"] == "forwarded"


def _login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# --- 4. an answer goes to the agency that asked ---------------------------------------------------------


@pytest.mark.parametrize("addressee", ["XK-CUS", None])
def test_an_answer_is_addressed_to_the_requester(
    client: TestClient, region: Region, addressee: str | None
) -> None:
    """XK-KP asked AL-ASP; AL-ASP's answer may not go to XK Customs, nor be left for XK's contact point to
    route wherever it likes."""
    request_id, _ = deliver_request(
        client, region, sender="XK-KP", target="AL-ASP", category="migrant-smuggling"
    )
    responder = agency_client(region, "AL-ASP", client)
    with committed(client) as session:
        request = session.get(Message, request_id)
        assert request is not None
        conversation_id = request.conversation_id
    common: dict[str, Any] = {
        "payload": b'{"owner": "subject-1"}',
        "destination_country": "XK",
        "category": "migrant-smuggling",
        "message_type": "response",
        "in_reply_to": request_id,
        "conversation_id": conversation_id,
    }
    wrong = responder.build(destination_agency=addressee, **common)
    with pytest.raises(ClientError) as refused:
        responder.submit(wrong)
    assert refused.value.status == 422
    assert refused.value.problem["reason"] == "wrong-addressee"
    assert "XK-KP" in refused.value.problem["detail"]
    with committed(client) as session:
        assert session.get(Message, wrong["header"]["message_id"]) is None
        assert session.scalar(select(Message.state).where(Message.id == request_id)) == "delivered"
    right = responder.build(destination_agency="XK-KP", **common)
    assert responder.submit(right)["state"] == "origin_review"


# --- 5. accept once ---------------------------------------------------------------------------------------


def test_a_message_is_accepted_once(client: TestClient, region: Region) -> None:
    single = _submit(client, region, "AL-ASP", destination_country="MK", category="fraud")
    bulk = _submit(client, region, "AL-ASP", destination_country="MK", category="fraud")
    al = officer_headers(client, region, "al-officer")
    for message_id in (single, bulk):
        assert _decide(client, al, message_id, {"action": "approve"})[0] == 200
    drain(client)
    mk = officer_headers(client, region, "mk-officer")
    for message_id in (single, bulk):
        assert "accept" in _get(client, mk, message_id)["allowed_actions"]
        assert _decide(client, mk, message_id, {"action": "accept"})[0] == 200
        assert "accept" not in _get(client, mk, message_id)["allowed_actions"]
    status, problem = _decide(client, mk, single, {"action": "accept"})
    assert (status, problem["type"]) == (409, "urn:spoc:problem:conflict")
    assert _bulk(client, mk, bulk, {"action": "accept"})["status"] == 409
    with committed(client) as session:
        for message_id in (single, bulk):
            decisions = [s.decision for s in custody_of(session, message_id)]
            assert decisions == ["submitted", "approved", "received", "accepted"]
    assert (
        _decide(client, mk, single, {"action": "route", "route_to_agency": "MK-MOI"})[1]["state"] == "routed"
    )


# --- 6. deadline extensions: Art. 5(2) only, by the requested side, told to the requester -------------------

EXTENSION = {"action": "extend", "extend_hours": 24, "extension_reason": "judicial-authorisation-pending"}


def test_only_the_requested_contact_point_extends_on_a_coded_ground_and_the_requester_is_told(
    client: TestClient, region: Region
) -> None:
    message_id = _submit(
        client, region, "AL-ASP", destination_country="MK", category="kidnapping", priority=URGENT_DIRECT
    )
    al = officer_headers(client, region, "al-officer")
    assert "extend" not in _get(client, al, message_id)["allowed_actions"]
    status, problem = _decide(client, al, message_id, EXTENSION)
    assert (status, problem["type"]) == (403, "urn:spoc:problem:not-permitted")  # the requesting side
    assert _bulk(client, al, message_id, EXTENSION)["status"] == 403
    assert _decide(client, al, message_id, {"action": "approve"})[0] == 200
    drain(client)

    mk = officer_headers(client, region, "mk-officer")
    before = _get(client, mk, message_id)
    assert "extend" in before["allowed_actions"]
    for free_text_only in (
        {"action": "extend", "extend_hours": 24, "reason": "the case is complex"},
        {**EXTENSION, "extension_reason": "the-case-is-complex"},
    ):
        status, problem = _decide(client, mk, message_id, free_text_only)
        assert (status, problem["type"]) == (400, "urn:spoc:problem:invalid-input"), free_text_only
    status, answer = _decide(
        client, mk, message_id, {**EXTENSION, "reason": "the investigating judge rules Monday"}
    )
    assert status == 200, answer
    after = _get(client, mk, message_id)
    assert after["deadline_at"] > before["deadline_at"]
    [extended] = [e for e in after["deadline_events"] if e["kind"] == "extended"]
    assert (extended["reason_code"], extended["seconds"]) == ("judicial-authorisation-pending", 24 * 3600)

    notes = client.get("/v1/cp/notifications", headers=al).json()
    [note] = [n for n in notes if n["message_id"] == message_id and n["kind"] == "deadline-extended"]
    assert "judicial authorisation" in note["text"]
    assert "the investigating judge rules Monday" in note["text"]
    with committed(client) as session:
        [entry] = audit_entries(session, object_id=message_id, action=AuditAction.DEADLINE_EXTENDED)
        assert (entry.actor, entry.details["reason_code"]) == ("mk-officer", "judicial-authorisation-pending")
        assert custody_of(session, message_id)[-1].decision == "deadline-extended"


def test_the_extend_form_sends_the_code(client: TestClient, region: Region) -> None:
    message_id = _submit(
        client, region, "AL-ASP", destination_country="MK", category="kidnapping", priority=URGENT_DIRECT
    )
    assert (
        _decide(client, officer_headers(client, region, "al-officer"), message_id, {"action": "approve"})[0]
        == 200
    )
    drain(client)
    csrf = log_in(client, "mk-officer", region.password("mk-officer"))
    page = client.get(f"/ui/messages/{message_id}").text
    assert 'name="extension_reason"' in page
    done = client.post(
        f"/ui/messages/{message_id}/decide",
        data={
            "action": "extend",
            "extend_hours": "12",
            "extension_reason": "judicial-authorisation-pending",
            "csrf": csrf,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    with committed(client) as session:
        [entry] = audit_entries(session, object_id=message_id, action=AuditAction.DEADLINE_EXTENDED)
        assert entry.details["reason_code"] == "judicial-authorisation-pending"
