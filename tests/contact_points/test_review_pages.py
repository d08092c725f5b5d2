"""A page of approvals and routings (``POST /v1/cp/decisions``) is written set-based
(``contact_points.review.pages``): the same states, custody steps, approvals, outbox work and audit entries as
the decisions taken one by one, four eyes included across pages."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from broker.audit.actions import AuditAction
from broker.crosscheck.models import CrosscheckScan
from broker.crypto import verify_countersignature
from broker.db import unit_of_work
from broker.directory.models import ContactPoint
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Approval
from broker.messages.service import custody_of
from broker.messages.states import State
from broker.outbox.models import OutboxItem
from contact_points.review.pages import lock_page
from tests.broker.messages.spoc_builders import _sessionmaker, audit_entries, committed, drain
from tests.contact_points.test_review_bulk_decisions import _requests
from tests.factories import Region, agency_client, officer_client


def test_four_eyes_over_two_pages_then_a_page_of_routings(client: TestClient, region: Region) -> None:
    ids = _requests(client, region, 3, classification="CONFIDENTIAL")
    with officer_client(region, "al-officer2", client) as first:
        answer = first.decide_many([(m, {"action": "approve"}) for m in ids])
    assert [(r["status"], r["state"]) for r in answer["results"]] == [(200, State.ORIGIN_REVIEW)] * 3
    # The same officer again: each refused alone (four eyes), nothing written.
    with officer_client(region, "al-officer2", client) as first:
        again = first.decide_many([(m, {"action": "approve"}) for m in ids])
    assert [r["status"] for r in again["results"]] == [409] * 3  # four eyes, as one by one
    with officer_client(region, "al-supervisor", client) as second:
        answer = second.decide_many([(m, {"action": "approve"}) for m in ids])
    assert [(r["status"], r["state"]) for r in answer["results"]] == [(200, State.FORWARDED)] * 3
    with committed(client) as session:
        for message_id in ids:
            steps = custody_of(session, message_id)
            assert [(s.seq, s.decision, s.actor) for s in steps] == [
                (0, "submitted", "AL-ASP"),
                (1, "approved-first", "al-officer2"),
                (2, "approved", "al-supervisor"),
            ]
            approvals = session.scalars(
                select(Approval.user_id).where(Approval.message_id == message_id)
            ).all()
            assert len(set(approvals)) == 2
            actions = [e.action for e in audit_entries(session, object_id=message_id)]
            assert actions.count(AuditAction.MESSAGE_APPROVED) == 1
            assert actions[-1] == AuditAction.MESSAGE_FORWARDED
            work = session.scalars(select(OutboxItem.kind).where(OutboxItem.message_id == message_id)).all()
            assert work == ["forward"]
    drain(client)
    with officer_client(region, "mk-officer2", client) as destination:
        answer = destination.decide_many([(m, {"action": "route", "route_to_agency": "MK-MOI"}) for m in ids])
    assert [(r["status"], r["state"]) for r in answer["results"]] == [(200, State.ROUTED)] * 3
    with committed(client) as session:
        keys = DatabaseKeyStore(session, client.app.state.master_key)  # type: ignore[attr-defined]
        for message_id in ids:
            last = custody_of(session, message_id)[-1]
            assert (last.decision, last.party, last.from_state, last.to_state) == (
                "routed",
                "MK-SPOC",
                State.DESTINATION_REVIEW,
                State.ROUTED,
            )
            statement = verify_countersignature(
                last.signature, resolve=lambda kid: keys.resolve(kid, party_id="MK-SPOC")
            )
            assert (statement["seq"], statement["decision"]) == (last.seq, "routed")
            assert audit_entries(session, object_id=message_id)[-1].action == AuditAction.MESSAGE_ROUTED
    drain(client)
    with committed(client) as session:
        from broker.messages.models import Message

        states = session.scalars(select(Message.state).where(Message.id.in_(ids))).all()
    assert set(states) == {State.DELIVERED}


def test_a_page_lock_excludes_other_decisions_but_not_a_reference_to_the_message(
    client: TestClient, region: Region
) -> None:
    """The deadlock the benchmark found: a page held ``FOR UPDATE`` on its messages while the cross-check batch,
    holding ``FOR KEY SHARE`` on others through its inserts' foreign keys, waited for them, and the page for
    those. Now a page's lock lets a row that references a locked message in at once, and still excludes a
    second decision on it until the commit (PostgreSQL; SQLite serialises writers)."""
    message_id = _requests(client, region, 1)[0]
    factory = _sessionmaker(client)
    with unit_of_work(factory) as holder:
        cp = holder.get(ContactPoint, "AL-SPOC")
        assert cp is not None
        assert [m.id for m in lock_page(holder, cp, [message_id])] == [message_id]
        with unit_of_work(factory) as crosscheck:  # another transaction, while the page holds its lock
            crosscheck.execute(text("SET LOCAL lock_timeout = '2s'"))
            crosscheck.add(CrosscheckScan(contact_point_id="MK-SPOC", message_id=message_id, outcome="text"))
            crosscheck.flush()  # would wait for the page's commit (and time out) under FOR UPDATE
            crosscheck.rollback()
        second = factory()
        try:
            second.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                lock_page(second, cp, [message_id])  # a second decision waits for the first's commit
        finally:
            second.rollback()
            second.close()


def _versions(client: TestClient, ids: list[str]) -> dict[str, int]:
    from broker.messages.models import Message

    with committed(client) as session:
        rows = session.execute(select(Message.id, Message.version).where(Message.id.in_(ids))).all()
    return dict(rows)


def test_a_page_writes_each_message_once_with_the_reader_it_added(client: TestClient, region: Region) -> None:
    """The page's messages are written by one UPDATE (``pages._update_messages``): each message's version moves
    on by exactly one per decision, and a routing's new reader and agency are stored, so the agency the sender
    did not address can verify the whole chain and open the content."""
    ids = _requests(client, region, 3)  # addressed to MK, no agency: the routing adds MK-MOI's reader
    submitted = _versions(client, ids)
    with officer_client(region, "al-officer", client) as origin:
        origin.decide_many([(m, {"action": "approve"}) for m in ids])
    assert _versions(client, ids) == {m: v + 1 for m, v in submitted.items()}
    drain(client)
    received = _versions(client, ids)
    with officer_client(region, "mk-officer", client) as destination:
        answer = destination.decide_many([(m, {"action": "route", "route_to_agency": "MK-MOI"}) for m in ids])
    assert answer["decided"] == 3
    assert _versions(client, ids) == {m: v + 1 for m, v in received.items()}
    drain(client)
    with agency_client(region, "MK-MOI", client) as agency:
        items = {i["message_id"]: i for i in agency.inbox_all() if i["message_id"] in ids}
        assert sorted(items) == sorted(ids)
        for message_id in ids:
            assert agency.open(items[message_id]).plaintext.startswith(b'{"q": ')
            assert items[message_id]["envelope"]["header"]["destination_country"] == "MK"


def test_a_message_changed_meanwhile_fails_the_page_write_and_nothing_is_kept(
    client: TestClient, region: Region
) -> None:
    """The one UPDATE is compare-and-set on each message's version, as the unit of work's UPDATE per message
    was: if a row moved on after it was read, StaleDataError, and the caller's savepoint undoes the page."""
    from sqlalchemy.orm.exc import StaleDataError

    from broker.messages.models import Message
    from contact_points.review.pages import _update_messages

    ids = _requests(client, region, 2)
    with committed(client) as session:
        messages = list(session.scalars(select(Message).where(Message.id.in_(ids)).order_by(Message.id)))
        session.execute(text("UPDATE messages SET version = version + 1 WHERE id = :id"), {"id": ids[0]})
        for message in messages:
            message.state = State.FORWARDED
        with pytest.raises(StaleDataError), session.begin_nested():
            _update_messages(session, messages)
        session.rollback()
    with committed(client) as session:
        states = session.scalars(select(Message.state).where(Message.id.in_(ids))).all()
    assert set(states) == {State.ORIGIN_REVIEW}


def test_a_routing_whose_payload_does_not_open_is_refused_as_unread(
    client: TestClient, region: Region
) -> None:
    """A page's routing opens the payload once (``review.service.check_and_route``), and a payload that does
    not open gets the refusal a single decision gives (not readable: 403), not the re-wrap's own."""
    ids = _requests(client, region, 2)
    with officer_client(region, "al-officer", client) as origin:
        origin.decide_many([(m, {"action": "approve"}) for m in ids])
    drain(client)
    with committed(client) as session:  # a tag that authenticates nothing: the payload no longer opens
        session.execute(
            text(
                "UPDATE messages SET envelope = jsonb_set(envelope, '{payload,tag}', '\"AAAAAAAAAAAAAAAAAAAAAA\"')"
                " WHERE id = :id"
            ),
            {"id": ids[0]},
        )
    with officer_client(region, "mk-officer", client) as destination:
        answer = destination.decide_many([(m, {"action": "route", "route_to_agency": "MK-MOI"}) for m in ids])
    first, second = answer["results"]
    assert first["status"] == 403
    assert "cannot be decrypted with MK-SPOC's keys" in first["problem"]["detail"]
    assert (second["status"], second["state"]) == (200, State.ROUTED)
