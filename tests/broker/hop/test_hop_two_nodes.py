"""A request across two nodes, each with its own database and keys: AL's node and XK's node, joined by one
signed regional directory. AL-ASP submits on its node, an AL officer approves, AL's outbox hands the message
to XK's node over HTTP (RFC 9421 transport signature), XK's officer routes it, and XK-KP reads it and checks
the chain of custody, with AL's countersignatures verified from the directory alone. The same hop again is
answered with the same receipt; a replayed request, an unlisted key and forged custody are refused over HTTP
and audited; neither database holds the other country's private keys."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from sqlalchemy import func, select, update

from broker.audit.models import AuditEntry
from broker.crypto import KeyPair, countersign
from broker.crypto.countersign import statement_of
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.db import unit_of_work, utcnow
from broker.hop.models import Hop
from broker.hop.outbound import hop_all_due
from broker.hop.service import HOP_PATH
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore
from broker.messages.work import drain
from tests.broker.hop.nodes import URLS, Node, peers


def test_a_request_crosses_from_al_s_node_to_xk_s_node_and_is_read_there(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    asker = al.agency("AL-ASP")
    envelope = asker.build(
        payload=b'{"q": "who rents the van LX-482"}', destination_country="XK", category="drug-trafficking"
    )
    message_id = asker.submit(envelope)["message_id"]
    al.officer("al-officer").decide(message_id, "approve")
    with peers(region_of_two) as network:
        assert al.drain(network)["sent"] == 1
    assert al.count(select(func.count()).select_from(Hop).where(Hop.receipt.is_not(None))) == 1

    xk.officer("xk-officer").decide(message_id, "route", route_to_agency="XK-KP")
    with peers(region_of_two) as network:
        xk.drain(network)
    reader = xk.agency("XK-KP")
    item = next(i for i in reader.inbox_all() if i["message_id"] == message_id)
    opened = reader.open(
        item
    )  # the originator's signature and every countersignature checked, then decrypted
    assert opened.plaintext == b'{"q": "who rents the van LX-482"}'
    # AL-SPOC's step is verified with the key XK's node learnt from the regional directory
    assert [(s["party"], s["decision"]) for s in opened.custody] == [
        ("AL-SPOC", "approved"),
        ("XK-SPOC", "received"),
        ("XK-SPOC", "routed"),
    ]
    report = reader.custody(item)
    assert report.ok, report.problem()
    reader.ack(opened)

    # The answer goes back the same way: XK-KP answers on its node, XK reviews, the hop carries it to AL's
    # node (sealed to AL-ASP with the key the request's hop vouched for), AL routes it to the agency that asked.
    answer = reader.reply(opened, payload=b'{"a": "a rental company in Prizren"}')
    answer_id = reader.submit(answer)["message_id"]
    xk.officer("xk-officer").decide(answer_id, "approve")
    with peers(region_of_two) as network:
        xk.drain(network)
    al.officer("al-officer").decide(answer_id, "route", route_to_agency="AL-ASP")
    with peers(region_of_two) as network:
        al.drain(network)
    back = next(i for i in asker.inbox_all() if i["message_id"] == answer_id)
    answered = asker.open(back)
    assert answered.plaintext == b'{"a": "a rental company in Prizren"}'
    assert str(answered.header.in_reply_to) == message_id
    assert [(s["party"], s["decision"]) for s in answered.custody] == [
        ("XK-SPOC", "approved"),
        ("AL-SPOC", "received"),
        ("AL-SPOC", "routed"),
    ]
    # On AL's node the request follows XK's decisions (its signed events) and the answer: as on one node.
    assert asker.status(message_id)["state"] == "answered"

    # (AL's routing of the answer crossed back too, as AL-SPOC's signed event about it: another hop.)
    same_digest = select(AuditEntry.details["digest"].as_string()).where(AuditEntry.object_id == message_id)
    of_request = select(func.count()).select_from(AuditEntry).where(AuditEntry.object_id == message_id)
    sent = al.count(of_request.where(AuditEntry.action == "hop:sent"))
    received = xk.count(of_request.where(AuditEntry.action == "hop:received"))
    assert (sent, received) == (1, 1)
    with al.engine.connect() as a, xk.engine.connect() as x:
        assert a.scalar(same_digest.where(AuditEntry.action == "hop:sent")) == x.scalar(
            same_digest.where(AuditEntry.action == "hop:received")
        )
        al_held = set(a.scalars(select(PartyKey.party_id).where(PartyKey.private_sealed.is_not(None))))
        xk_held = set(x.scalars(select(PartyKey.party_id).where(PartyKey.private_sealed.is_not(None))))
    assert al_held == {"AL-SPOC", "spoc-log", "spoc-node", "spoc-witness"}
    assert xk_held == {"XK-SPOC", "spoc-log", "spoc-node", "spoc-witness"}


def _forwarded(al: Node) -> tuple[str, dict[str, Any]]:
    """A message approved at AL, and the hop AL's node would send for it (not sent)."""
    from broker.hop.service import hop_body
    from broker.messages.models import Message

    asker = al.agency("AL-ASP")
    message_id = asker.submit(
        asker.build(payload=b"{}", destination_country="XK", category="drug-trafficking")
    )["message_id"]
    al.officer("al-officer").decide(message_id, "approve")
    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message_id, hop_body(
            session, DatabaseKeyStore(session, state.master_key), message, sender_key=None
        )


def _post(node: Node, body: dict[str, Any], key: KeyPair) -> httpx.Response:
    raw = orjson.dumps(body)
    headers = {"content-type": "application/json"}
    sign_request("POST", URLS[node.country] + HOP_PATH, headers, raw, key=key, label=NODE_LABEL)
    response: httpx.Response = node.client.post(HOP_PATH, content=raw, headers=headers)
    return response


def _transport_key(node: Node) -> KeyPair:
    state = node.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        return DatabaseKeyStore(session, state.master_key).signing_key("spoc-node")


def test_the_same_hop_gets_the_same_receipt_and_a_replayed_request_is_refused(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    _, body = _forwarded(al)
    key = _transport_key(al)
    first = _post(xk, body, key)
    assert first.status_code == 200, first.text
    again = _post(xk, body, key)  # a retry after a lost answer: signed anew, same content
    assert again.json() == first.json()

    raw = orjson.dumps(body)
    headers = {"content-type": "application/json"}
    sign_request("POST", URLS["XK"] + HOP_PATH, headers, raw, key=key, label=NODE_LABEL)
    assert xk.client.post(HOP_PATH, content=raw, headers=headers).status_code == 200
    replayed = xk.client.post(HOP_PATH, content=raw, headers=headers)  # the same bytes and signature
    assert (replayed.status_code, replayed.json()["reason"]) == (401, "nonce")


def test_hostile_hops_are_refused_with_their_reason_audited_and_nothing_stored(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    message_id, body = _forwarded(al)
    refused_before = xk.count(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused")
    )

    unlisted = _post(xk, body, KeyPair.generate("sig"))  # a node the directory does not know
    assert (unlisted.status_code, unlisted.json()["reason"]) == (401, "unlisted-node")

    forged = dict(body)
    statement = statement_of(body["custody"][-1])
    forged["custody"] = [*body["custody"][:-1], countersign(statement, key=KeyPair.generate("sig"))]
    answer = _post(xk, forged, _transport_key(al))
    assert (answer.status_code, answer.json()["reason"]) == (422, "custody")

    missing = {**body, "custody": []}
    answer = _post(xk, missing, _transport_key(al))
    assert (answer.status_code, answer.json()["reason"]) == (422, "custody")

    # A header changed on the way (here the type) no longer verifies under the originator's key.
    notice = {
        **body,
        "envelope": {**body["envelope"], "header": {**body["envelope"]["header"], "type": "notification"}},
    }
    answer = _post(xk, notice, _transport_key(al))
    assert (answer.status_code, answer.json()["reason"]) == (422, "originator-signature")

    from broker.messages.models import Message

    with xk.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) == 0
    refused_after = xk.count(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused")
    )
    assert refused_after == refused_before + 3  # the unlisted key is a denied call, the others hop refusals


def _down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _make_due(node: Node, message_id: str) -> None:
    """Let the backoff pass (the clock is not ours to move): the hop is due again now."""
    with node.engine.begin() as conn:
        conn.execute(update(Hop).where(Hop.message_id == message_id).values(next_attempt_at=utcnow()))


def test_a_peer_down_gets_the_hop_when_it_is_back_once(region_of_two: dict[str, Node]) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    asker = al.agency("AL-ASP")
    message_id = asker.submit(
        asker.build(payload=b"{}", destination_country="XK", category="drug-trafficking")
    )["message_id"]
    al.officer("al-officer").decide(message_id, "approve")
    with httpx.Client(transport=httpx.MockTransport(_down)) as down:
        tried = al.drain(down)  # (with the hops other tests left approved but never sent)
    assert tried["sent"] == tried["dead"] == 0
    assert tried["retry"] >= 1
    with al.engine.connect() as conn:
        hop = conn.execute(
            select(Hop.attempts, Hop.next_attempt_at, Hop.last_error).where(Hop.message_id == message_id)
        ).one()
    assert hop.attempts == 1
    assert hop.next_attempt_at > utcnow()  # backing off
    assert "ConnectError" in hop.last_error
    with peers(region_of_two) as network:
        assert al.drain(network)["sent"] == 0  # not due yet: nothing is sent before the backoff ends
        _make_due(al, message_id)
        assert al.drain(network)["sent"] == 1
        assert al.drain(network)["sent"] == 0  # receipted: never sent again
    from broker.messages.models import Message

    stored = select(func.count()).select_from(Message).where(Message.id == message_id)
    received = (
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == "hop:received", AuditEntry.object_id == message_id)
    )
    assert (xk.count(stored), xk.count(received)) == (1, 1)


def test_a_hop_that_never_gets_through_is_dead_lettered_to_the_origin_s_officers(
    region_of_two: dict[str, Node],
) -> None:
    al = region_of_two["AL"]
    asker = al.agency("AL-ASP")
    message_id = asker.submit(
        asker.build(payload=b"{}", destination_country="XK", category="drug-trafficking")
    )["message_id"]
    al.officer("al-officer").decide(message_id, "approve")
    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        drain(session, DatabaseKeyStore(session, state.master_key))
    patient = al.settings.model_copy(update={"push_max_attempts": 2})
    with httpx.Client(transport=httpx.MockTransport(_down)) as down:
        assert hop_all_due(state.sessionmaker, state.master_key, patient, down)["retry"] == 1
        _make_due(al, message_id)
        assert hop_all_due(state.sessionmaker, state.master_key, patient, down)["dead"] == 1
    dead = (
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == "hop:dead-lettered", AuditEntry.object_id == message_id)
    )
    assert al.count(dead) == 1
    login = al.client.post(
        "/v1/auth/login", json={"username": "al-officer", "password": al.seed.accounts["al-officer"].password}
    )
    notes = al.client.get(
        "/v1/cp/notifications", headers={"Authorization": f"Bearer {login.json()['token']}"}
    )
    assert any(n["kind"] == "hop-dead-letter" and n["message_id"] == message_id for n in notes.json())
