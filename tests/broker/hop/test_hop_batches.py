"""Many hops at once, each judged alone: a batch POST where one hop is forged, a settle step where the
receipts of one batch differ in kind, and a peer that refuses the batch as a whole and gets each hop alone.

The set-based paths (one INSERT per table on the receiving side, one read and one UPDATE of the ``hops`` rows
on the sending side) must leave each hop exactly as it would be after a step of its own."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from broker.audit.models import AuditEntry
from broker.crypto import KeyPair, countersign
from broker.crypto.countersign import sign_transport_receipt, statement_of
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.db import unit_of_work, utcnow
from broker.hop.models import Hop
from broker.hop.outbound import HopOutcome, prepare, send, settle
from broker.hop.service import HOP_BATCH_PATH, HOP_PATH, hop_body, hop_bytes
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import CustodyStep, Message
from broker.messages.work import drain
from tests.broker.hop.nodes import URLS, Node, peers


def _approved(al: Node, n: int) -> list[str]:
    """``n`` requests submitted and approved at AL, their hops queued by AL's outbox (not sent)."""
    asker = al.agency("AL-ASP")
    envelopes = [
        asker.build(payload=b'{"q": "batch"}', destination_country="XK", category="drug-trafficking")
        for _ in range(n)
    ]
    ids = [str(e["header"]["message_id"]) for e in envelopes]
    assert asker.submit_batch(envelopes)["accepted"] == n
    al.officer("al-officer").decide_many([(m, {"action": "approve"}) for m in ids])
    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        drain(session, DatabaseKeyStore(session, state.master_key))
    return ids


def _hop_ids(node: Node, message_ids: list[str]) -> list[int]:
    """The outgoing hops of ``message_ids``, in the order of the messages."""
    with node.engine.connect() as conn:
        found = dict(
            conn.execute(
                select(Hop.message_id, Hop.id).where(
                    Hop.message_id.in_(message_ids), Hop.direction == "out", Hop.event_id.is_(None)
                )
            ).all()
        )
    return [found[m] for m in message_ids]


def _bodies(al: Node, message_ids: list[str]) -> list[dict[str, Any]]:
    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        keys = DatabaseKeyStore(session, state.master_key)
        return [hop_body(session, keys, session.get_one(Message, m), sender_key=None) for m in message_ids]


def _transport_key(node: Node) -> KeyPair:
    state = node.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        return DatabaseKeyStore(session, state.master_key).signing_key("spoc-node")


def _post_batch(xk: Node, hops: list[dict[str, Any]], key: KeyPair) -> httpx.Response:
    raw = orjson.dumps({"hops": hops})
    headers = {"content-type": "application/json"}
    sign_request("POST", URLS["XK"] + HOP_BATCH_PATH, headers, raw, key=key, label=NODE_LABEL)
    response: httpx.Response = xk.client.post(HOP_BATCH_PATH, content=raw, headers=headers)
    return response


def _audited(node: Node, action: str, message_id: str) -> int:
    return node.count(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == action, AuditEntry.object_id == message_id)
    )


def test_hop_bytes_are_the_hop_body_serialised_from_the_envelope_s_text() -> None:
    envelope = {
        "header": {"message_id": "m", "type": "request"},
        "payload": {"ciphertext": "é"},
        "signature": "s",
    }
    text = json.dumps(envelope, ensure_ascii=False)  # any spelling of the JSON: here with spaces
    assert orjson.loads(hop_bytes(text, ["c1", "c2"], "k")) == {
        "envelope": envelope,
        "custody": ["c1", "c2"],
        "sender_key": "k",
    }


def test_a_forged_hop_in_a_batch_is_refused_alone_and_a_repeat_gets_the_first_receipt(
    region_of_two: dict[str, Node],
) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    ids = _approved(al, 3)
    good, forged_one, other = _bodies(al, ids)
    forged = {
        **forged_one,
        "custody": [countersign(statement_of(forged_one["custody"][-1]), key=KeyPair.generate("sig"))],
    }
    refused_before = xk.count(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused")
    )

    answer = _post_batch(xk, [good, forged, other, good], _transport_key(al))

    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [200, 422, 200, 200]
    assert results[1]["problem"]["reason"] == "custody"
    assert results[3]["receipt"] == results[0]["receipt"]  # the same hop twice: stored once, one receipt
    stored = select(func.count()).select_from(Message).where(Message.id.in_(ids))
    assert xk.count(stored) == 2
    for message_id, result in ((ids[0], results[0]), (ids[2], results[2])):
        assert _audited(xk, "hop:received", message_id) == 1
        with xk.engine.connect() as conn:
            steps = conn.execute(
                select(CustodyStep.seq, CustodyStep.party, CustodyStep.decision)
                .where(CustodyStep.message_id == message_id)
                .order_by(CustodyStep.seq)
            ).all()
            hop = conn.execute(
                select(Hop.receipt, Hop.peer_node, Hop.digest).where(
                    Hop.message_id == message_id, Hop.direction == "in"
                )
            ).one()
            state = conn.scalar(select(Message.state).where(Message.id == message_id))
        assert [tuple(s) for s in steps] == [
            (0, "AL-ASP", "submitted"),
            (1, "AL-SPOC", "approved"),
            (2, "XK-SPOC", "received"),
        ]
        assert (hop.receipt, hop.peer_node) == (result["receipt"], "al")
        assert statement_of(result["receipt"])["digest"] == hop.digest
        assert state == "destination_review"
    assert _audited(xk, "hop:received", ids[1]) == 0
    refused_after = xk.count(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused")
    )
    assert refused_after == refused_before + 1

    # The refusal kept nothing of that hop: sent as it was made, it is taken.
    again = _post_batch(xk, [forged_one], _transport_key(al))
    assert [r["status"] for r in again.json()["results"]] == [200]
    assert xk.count(stored) == 3


def test_settle_judges_each_hop_of_a_batch_alone(region_of_two: dict[str, Node]) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    ids = _approved(al, 5)
    hop_ids = _hop_ids(al, ids)
    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        jobs, known = prepare(session, DatabaseKeyStore(session, state.master_key), hop_ids)
    assert not known
    assert [job.hop_ids for job in jobs] == [tuple(sorted(hop_ids))]
    with peers(region_of_two) as network:
        receipts = {o.hop_id: o.receipt for o in send(jobs, client=network)}
    assert all(receipts.values())
    h = hop_ids
    stranger = sign_transport_receipt(statement_of(str(receipts[h[3]])), key=KeyPair.generate("sig"))
    outcomes = [
        HopOutcome(h[0], receipt=receipts[h[0]]),
        HopOutcome(h[1], receipt=receipts[h[2]]),  # another hop's receipt
        HopOutcome(h[2], receipt=receipts[h[2]]),
        HopOutcome(h[3], receipt=stranger),  # signed by a key the directory does not list for XK
        HopOutcome(h[4], error="the peer node answered 422 (custody)", permanent=True),
    ]
    before = utcnow()

    with unit_of_work(state.sessionmaker) as session:
        counts = settle(session, outcomes, al.settings)

    assert counts == {"sent": 2, "retry": 2, "dead": 1, "skipped": 0}
    with al.engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    Hop.id, Hop.receipt, Hop.attempts, Hop.next_attempt_at, Hop.last_error, Hop.dead_at
                ).where(Hop.id.in_(hop_ids))
            )
        }
    for sent in (h[0], h[2]):
        assert (rows[sent].receipt, rows[sent].attempts) == (receipts[sent], 1)
        assert rows[sent].next_attempt_at is rows[sent].last_error is rows[sent].dead_at is None
    for retried, error in ((h[1], "is not for this hop"), (h[3], "does not verify")):
        assert (rows[retried].receipt, rows[retried].attempts, rows[retried].dead_at) == (None, 1, None)
        next_at: datetime = rows[retried].next_attempt_at
        assert next_at > before
        assert error in rows[retried].last_error
    dead = rows[h[4]]
    assert (dead.receipt, dead.attempts, dead.next_attempt_at) == (None, 1, None)
    assert dead.dead_at is not None
    assert dead.last_error == "the peer node answered 422 (custody)"

    # The log: hop:sent for the two receipted, in hop order, hop:dead-lettered for the one given up.
    with al.engine.connect() as conn:
        logged = conn.execute(
            select(AuditEntry.action, AuditEntry.object_id, AuditEntry.details)
            .where(AuditEntry.object_id.in_(ids), AuditEntry.action.like("hop:%"))
            .order_by(AuditEntry.id)
        ).all()
    assert [(a, m) for a, m, _ in logged] == [
        ("hop:sent", ids[0]),
        ("hop:sent", ids[2]),
        ("hop:dead-lettered", ids[4]),
    ]
    sent_details = logged[0][2]
    assert sent_details["to_node"] == "xk"
    assert sent_details["attempts"] == 1
    assert sent_details["received_at"] == statement_of(str(receipts[h[0]]))["received_at"]
    assert logged[2][2]["error"] == "the peer node answered 422 (custody)"

    # Settled hops are not settled twice; the open ones are tried again (their receipt was never wrong).
    with unit_of_work(state.sessionmaker) as session:
        again = settle(session, outcomes, al.settings)
    assert again == {"sent": 0, "retry": 2, "dead": 0, "skipped": 3}
    with unit_of_work(state.sessionmaker) as session:
        counts = settle(
            session,
            [HopOutcome(h[1], receipt=receipts[h[1]]), HopOutcome(h[3], receipt=receipts[h[3]])],
            al.settings,
        )
    assert counts == {"sent": 2, "retry": 0, "dead": 0, "skipped": 0}
    assert (
        al.count(select(func.count()).select_from(Hop).where(Hop.id.in_(h[:4]), Hop.receipt.is_not(None)))
        == 4
    )
    # At XK each message was stored once (the dead letter here is this test's doing: it was received).
    assert xk.count(select(func.count()).select_from(Message).where(Message.id.in_(ids))) == 5


def test_a_peer_that_refuses_the_batch_as_a_whole_gets_each_hop_alone(region_of_two: dict[str, Node]) -> None:
    al, xk = region_of_two["AL"], region_of_two["XK"]
    ids = _approved(al, 3)
    hop_ids = _hop_ids(al, ids)
    paths: list[str] = []
    xk_transport: httpx.BaseTransport = xk.client._transport

    def no_batches(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == HOP_BATCH_PATH:
            return httpx.Response(404, json={"status": 404})
        request.read()
        return xk_transport.handle_request(request)

    state = al.client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        jobs, _ = prepare(session, DatabaseKeyStore(session, state.master_key), hop_ids)
    with httpx.Client(transport=httpx.MockTransport(no_batches)) as network:
        outcomes = send(jobs, client=network)
    with unit_of_work(state.sessionmaker) as session:
        assert settle(session, outcomes, al.settings)["sent"] == 3

    assert paths == [HOP_BATCH_PATH, HOP_PATH, HOP_PATH, HOP_PATH]
    assert xk.count(select(func.count()).select_from(Message).where(Message.id.in_(ids))) == 3
    for message_id in ids:
        assert _audited(al, "hop:sent", message_id) == _audited(xk, "hop:received", message_id) == 1
