"""What else crosses a border: every envelope type, and the contact points' decisions as signed events.

AL's node and XK's node (each its own PostgreSQL database and keys, one signed regional directory), reached
over HTTP. XK's officer refuses, returns for clarification, extends a deadline, routes; AL's agency asks the
provider of H2 information to pass it on and XK's officer grants it; clarifications and acknowledgements
cross as envelopes. Each is seen on the other node as on one node: the state, the custody step (the acting
contact point's event token as it came), the notification to the officers, the agency's status.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from broker.audit.models import AuditEntry
from broker.client.agency import AgencyClient, OpenedMessage
from broker.crypto import KeyPair
from broker.crypto.countersign import sign_event, verify_event
from broker.db import unit_of_work
from broker.hop.events import EVENTS_PATH
from broker.hop.models import Hop
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import CustodyStep, DisseminationRequest, Message
from tests.broker.hop.nodes import URLS, Node, peers


def _hop_all(region: dict[str, Node], *countries: str) -> None:
    with peers(region) as network:
        for country in countries:
            region[country].drain(network)


def _request_at_xk(region: dict[str, Node], **envelope: Any) -> str:
    """AL-ASP's request, approved by AL and carried to XK's inbound review; its id."""
    al = region["AL"]
    asker = al.agency("AL-ASP")
    message_id: str = asker.submit(
        asker.build(
            payload=b'{"q": "the owner of LX-482"}',
            destination_country="XK",
            category="drug-trafficking",
            **envelope,
        )
    )["message_id"]
    al.officer("al-officer").decide(message_id, "approve")
    _hop_all(region, "AL")
    return message_id


def _delivered_at_xk(region: dict[str, Node]) -> tuple[str, AgencyClient, OpenedMessage]:
    """A request routed by XK to XK-KP and opened there."""
    message_id = _request_at_xk(region)
    xk = region["XK"]
    xk.officer("xk-officer").decide(message_id, "route", route_to_agency="XK-KP")
    _hop_all(region, "XK")
    reader = xk.agency("XK-KP")
    item = next(i for i in reader.inbox_all() if i["message_id"] == message_id)
    return message_id, reader, reader.open(item)


def _notes(node: Node, username: str) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = node.officer(username)._call("GET", "/v1/cp/notifications")
    return notes


def _steps(node: Node, message_id: str) -> list[tuple[str, str, str | None]]:
    with node.engine.connect() as conn:
        rows = conn.execute(
            select(CustodyStep.party, CustodyStep.decision, CustodyStep.refusal_ground)
            .where(CustodyStep.message_id == message_id)
            .order_by(CustodyStep.seq)
        ).all()
    return [(r.party, r.decision, r.refusal_ground) for r in rows]


def _audited(node: Node, action: str, **details: str) -> list[dict[str, Any]]:
    with node.engine.connect() as conn:
        rows = conn.scalars(select(AuditEntry.details).where(AuditEntry.action == action)).all()
    return [d for d in rows if all(d.get(k) == v for k, v in details.items())]


def test_a_refusal_and_its_ground_reach_the_requester_s_node_its_officers_and_agency(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    message_id = _request_at_xk(region_of_two)
    officer = xk.officer("xk-officer")
    officer.decide(message_id, "accept")
    officer.decide(message_id, "refuse", refusal_ground="not-available", reason="no such registration")
    _hop_all(region_of_two, "XK")

    status = al.agency("AL-ASP").status(message_id)
    assert (status["state"], status["refusal_ground"]) == ("refused", "not-available")
    assert _steps(al, message_id)[-2:] == [
        ("XK-SPOC", "accepted", None),
        ("XK-SPOC", "refused", "not-available"),
    ]
    assert any(n["kind"] == "refused" and n["message_id"] == message_id for n in _notes(al, "al-officer"))
    # The custody step on AL's node is XK-SPOC's signed event as it came, verifiable from the directory.
    with al.engine.connect() as conn:
        token = conn.scalar(
            select(CustodyStep.signature).where(
                CustodyStep.message_id == message_id, CustodyStep.decision == "refused"
            )
        )
    assert token is not None
    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:  # XK-SPOC's key as AL's node knows it: the directory's
        registry = DatabaseKeyStore(session, state.master_key)
        statement = verify_event(token, resolve=lambda kid: registry.resolve(kid, party_id="XK-SPOC"))
    assert (statement["kind"], statement["contact_point"], statement["actor"]) == (
        "refused",
        "XK-SPOC",
        "xk-officer",
    )
    assert statement["fields"] == {"refusal_ground": "not-available", "reason": "no such registration"}
    # Both logs hold the event with the same digest (what reconciliation pairs).
    sent = _audited(xk, "hop:sent", event_id=statement["event_id"])
    received = _audited(al, "hop:received", event_id=statement["event_id"])
    assert len(sent) == len(received) == 1
    assert sent[0]["digest"] == received[0]["digest"]
    assert received[0]["kind"] == "refused"


def test_a_clarification_asked_across_nodes_is_answered_by_an_amendment(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    message_id = _request_at_xk(region_of_two)
    xk.officer("xk-officer").decide(message_id, "return", reason="which of the two vans?")
    _hop_all(region_of_two, "XK")

    asker = al.agency("AL-ASP")
    status = asker.status(message_id)
    assert status["state"] == "clarification_requested"
    assert status["clarification_request"] == "which of the two vans?"
    assert status["deadline_paused"] is True  # the clock stops on the requester's side too
    assert any(
        n["kind"] == "clarification" and n["message_id"] == message_id for n in _notes(al, "al-officer")
    )

    original = status
    amended = asker.build(
        payload=b'{"q": "the owner of LX-482, the white van"}',
        destination_country="XK",
        category="drug-trafficking",
        conversation_id=original["conversation_id"],
    )
    asker._call(
        "POST",
        f"/v1/messages/{message_id}/resubmissions",
        content=orjson.dumps(amended),
        headers={"content-type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
    )
    amended_id = amended["header"]["message_id"]
    al.officer("al-officer").decide(amended_id, "approve")
    _hop_all(region_of_two, "AL")
    with xk.engine.connect() as conn:
        states = dict(
            conn.execute(
                select(Message.id, Message.state).where(Message.id.in_([message_id, amended_id]))
            ).all()
        )
    assert states == {message_id: "superseded", amended_id: "destination_review"}
    assert _steps(xk, message_id)[-1] == ("AL-SPOC", "superseded", None)


def test_a_clarification_message_and_its_answer_cross_both_ways(region_of_two: dict[str, Node]) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    request_id, reader, opened = _delivered_at_xk(region_of_two)
    question = reader.reply(opened, payload=b'{"q": "since when?"}', message_type="clarification")
    question_id = reader.submit(question)["message_id"]
    xk.officer("xk-officer").decide(question_id, "approve")
    _hop_all(region_of_two, "XK")
    al.officer("al-officer").decide(question_id, "route", route_to_agency="AL-ASP")
    _hop_all(region_of_two, "AL")

    asker = al.agency("AL-ASP")
    item = next(i for i in asker.inbox_all() if i["message_id"] == question_id)
    asked = asker.open(item)
    assert asked.plaintext == b'{"q": "since when?"}'
    assert asker.status(request_id)["state"] == "routed"  # a question back does not answer the request
    answer = asker.reply(asked, payload=b'{"a": "since May"}')
    answer_id = asker.submit(answer)["message_id"]
    al.officer("al-officer").decide(answer_id, "approve")
    _hop_all(region_of_two, "AL")
    xk.officer("xk-officer").decide(answer_id, "route", route_to_agency="XK-KP")
    _hop_all(region_of_two, "XK")
    back = next(i for i in reader.inbox_all() if i["message_id"] == answer_id)
    assert reader.open(back).plaintext == b'{"a": "since May"}'


def test_an_acknowledgement_crosses_and_answers_the_request(region_of_two: dict[str, Node]) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    request_id, reader, opened = _delivered_at_xk(region_of_two)
    ack = reader.reply(opened, payload=b'{"ack": "received, working on it"}', message_type="acknowledgement")
    ack_id = reader.submit(ack)["message_id"]
    xk.officer("xk-officer").decide(ack_id, "approve")
    _hop_all(region_of_two, "XK")
    with al.engine.connect() as conn:
        stored = conn.execute(select(Message.type, Message.state).where(Message.id == ack_id)).one()
    assert tuple(stored) == ("acknowledgement", "destination_review")
    assert al.agency("AL-ASP").status(request_id)["state"] == "answered"


def test_a_deadline_extension_is_notified_to_the_requester_s_node(region_of_two: dict[str, Node]) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    message_id = _request_at_xk(region_of_two)
    before = datetime.fromisoformat(al.agency("AL-ASP").status(message_id)["deadline_at"])
    xk.officer("xk-officer").decide(
        message_id, "extend", extend_hours=48, extension_reason="judicial-authorisation-pending"
    )
    _hop_all(region_of_two, "XK")
    after = datetime.fromisoformat(al.agency("AL-ASP").status(message_id)["deadline_at"])
    assert after - before == timedelta(hours=48)
    assert any(
        n["kind"] == "deadline-extended" and n["message_id"] == message_id for n in _notes(al, "al-officer")
    )
    assert _steps(al, message_id)[-1] == ("XK-SPOC", "deadline-extended", None)


def test_an_h2_request_goes_to_the_provider_s_node_and_its_grant_comes_back(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    _, reader, opened = _delivered_at_xk(region_of_two)
    h = opened.header
    answer = reader.build(
        payload=b'{"a": "the owner is known to us"}',
        destination_country="AL",
        destination_agency="AL-ASP",
        category=h.category,
        message_type="response",
        conversation_id=str(h.conversation_id),
        in_reply_to=str(h.message_id),
        handling_codes=("H2",),
    )
    h2_id = reader.submit(answer)["message_id"]
    xk.officer("xk-officer").decide(h2_id, "approve")
    _hop_all(region_of_two, "XK")
    al.officer("al-officer").decide(h2_id, "route", route_to_agency="AL-ASP")
    _hop_all(region_of_two, "AL")

    asker = al.agency("AL-ASP")
    asker._call(
        "POST",
        f"/v1/messages/{h2_id}/dissemination-requests",
        json={"recipient_country": "ME", "purpose": "a joint investigation with Montenegro"},
    )
    _hop_all(region_of_two, "AL")
    provider = xk.officer("xk-officer")
    [pending] = [
        r for r in provider._call("GET", "/v1/cp/dissemination-requests") if r["message_id"] == h2_id
    ]
    assert (pending["requested_by"], pending["recipient_country"]) == ("AL-ASP", "ME")
    assert any(n["kind"] == "dissemination" and n["message_id"] == h2_id for n in _notes(xk, "xk-officer"))
    provider.decide(h2_id, "grant", dissemination_request=pending["id"])
    _hop_all(region_of_two, "XK")

    [mine] = asker._call("GET", f"/v1/messages/{h2_id}/dissemination-requests").json()
    assert mine["state"] == "granted"
    assert _steps(al, h2_id)[-1] == ("XK-SPOC", "dissemination-granted", None)
    with al.engine.connect() as conn, xk.engine.connect() as other:
        ids = conn.scalar(
            select(DisseminationRequest.event_id).where(DisseminationRequest.message_id == h2_id)
        )
        assert ids == other.scalar(
            select(DisseminationRequest.event_id).where(DisseminationRequest.message_id == h2_id)
        )


# --- hostile events ------------------------------------------------------------------------------------------


def _keys(node: Node, party: str) -> KeyPair:
    state = node.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        return DatabaseKeyStore(session, state.master_key).signing_key(party)


def _post_event(node: Node, token: str, *, transport: KeyPair) -> Any:
    from broker.crypto.httpsig import NODE_LABEL, sign_request

    raw = orjson.dumps({"event": token})
    headers = {"content-type": "application/json"}
    sign_request("POST", URLS[node.country] + EVENTS_PATH, headers, raw, key=transport, label=NODE_LABEL)
    return node.client.post(EVENTS_PATH, content=raw, headers=headers)


def _event(
    node: Node, message_id: str, kind: str, cp: str, fields: dict[str, Any], **over: Any
) -> dict[str, Any]:
    with node.engine.connect() as conn:
        digest = conn.scalar(select(Message.digest).where(Message.id == message_id)) or "sha-256:" + "0" * 64
    return {
        "event_id": str(uuid.uuid4()),
        "kind": kind,
        "message_id": message_id,
        "digest": digest,
        "contact_point": cp,
        "actor": "mallory",
        "at": "2026-01-01T00:00:00.000000Z",
        "fields": fields,
        **over,
    }


def test_hostile_events_are_refused_with_their_reason_audited_and_nothing_stored(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    refused_before = al.count(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused")
    )
    stored_before = al.count(
        select(func.count()).select_from(Hop).where(Hop.direction == "in", Hop.event_id.is_not(None))
    )
    xk_node, xk_cp = _keys(xk, "spoc-node"), _keys(xk, "XK-SPOC")
    al_node, al_cp = _keys(al, "spoc-node"), _keys(al, "AL-SPOC")
    grounds = {"refusal_ground": "not-available"}

    crossed = _request_at_xk(region_of_two)  # AL → XK, receipted
    answers: dict[str, tuple[int, str]] = {}

    def refused(name: str, node: Node, token: str, transport: KeyPair) -> None:
        answer = _post_event(node, token, transport=transport)
        answers[name] = (answer.status_code, answer.json().get("reason"))

    # A message AL never had.
    refused(
        "unknown",
        al,
        sign_event(_event(al, str(uuid.uuid4()), "refused", "XK-SPOC", grounds), key=xk_cp),
        xk_node,
    )
    # XK-SPOC's event, signed by a key that is not XK-SPOC's.
    refused(
        "forged",
        al,
        sign_event(_event(al, crossed, "refused", "XK-SPOC", grounds), key=KeyPair.generate("sig")),
        xk_node,
    )
    # AL's node speaking for XK-SPOC (XK's contact point is not one AL's node serves).
    refused(
        "wrong node", xk, sign_event(_event(xk, crossed, "refused", "XK-SPOC", grounds), key=xk_cp), al_node
    )
    # The requester "refusing" its own request.
    refused(
        "own request", xk, sign_event(_event(xk, crossed, "refused", "AL-SPOC", grounds), key=al_cp), al_node
    )
    # A kind outside the closed list, and a ground outside Art. 6.
    refused("bad kind", al, sign_event(_event(al, crossed, "vetoed", "XK-SPOC", {}), key=xk_cp), xk_node)
    refused(
        "bad ground",
        al,
        sign_event(_event(al, crossed, "refused", "XK-SPOC", {"refusal_ground": "bored"}), key=xk_cp),
        xk_node,
    )
    # A message of XK's that never crossed to AL: AL-SPOC is its destination's contact point, but not of this copy.
    asker = xk.agency("XK-KP")
    local = asker.submit(asker.build(payload=b"{}", destination_country="AL", category="drug-trafficking"))[
        "message_id"
    ]
    refused(
        "not crossed", xk, sign_event(_event(xk, local, "refused", "AL-SPOC", grounds), key=al_cp), al_node
    )

    assert answers == {
        "unknown": (422, "unknown-message"),
        "forged": (422, "event-signature"),
        "wrong node": (422, "wrong-country"),
        "own request": (422, "kind-not-permitted"),
        "bad kind": (422, "malformed-event"),
        "bad ground": (422, "malformed-event"),
        "not crossed": (422, "not-counterpart"),
    }

    # A real event, then its id again with other content.
    xk.officer("xk-officer").decide(
        crossed, "extend", extend_hours=2, extension_reason="judicial-authorisation-pending"
    )
    _hop_all(region_of_two, "XK")
    with xk.engine.connect() as conn:
        token = conn.scalar(
            select(Hop.event).where(
                Hop.message_id == crossed, Hop.direction == "out", Hop.event_id.is_not(None)
            )
        )
    assert token is not None
    again = _post_event(al, token, transport=xk_node)  # a retry after a lost answer: the same receipt
    with al.engine.connect() as conn:
        assert again.json()["receipt"] == conn.scalar(select(Hop.receipt).where(Hop.event == token))
    statement = verify_event(token, resolve=lambda kid: xk_cp.public)
    other = {**statement, "fields": {**statement["fields"], "seconds": 30 * 24 * 3600}}
    replayed = _post_event(al, sign_event(other, key=xk_cp), transport=xk_node)
    assert (replayed.status_code, replayed.json()["reason"]) == (409, "event-replayed")

    with al.engine.connect() as conn:
        assert conn.scalar(select(Message.state).where(Message.id == crossed)) == "forwarded"
    stored_after = al.count(
        select(func.count()).select_from(Hop).where(Hop.direction == "in", Hop.event_id.is_not(None))
    )
    assert stored_after == stored_before + 1  # only the real extension
    refused_after = al.count(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused")
    )
    assert refused_after == refused_before + 5  # unknown, forged, bad kind, bad ground, replayed (at AL)
    assert _steps(al, crossed)[-1] == ("XK-SPOC", "deadline-extended", None)
