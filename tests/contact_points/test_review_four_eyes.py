"""Four eyes and clearance in the contact point's review (DESIGN §2 step 3, §5)."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from broker.accounts.models import User
from broker.accounts.service import create_user
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, Actor
from broker.client.agency import ClientError
from broker.db import unit_of_work
from broker.errors import Conflict, NotPermitted
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import custody_of
from broker.messages.states import State
from contact_points.review.service import queue, read_content
from tests.broker.messages.spoc_builders import (
    audit_entries,
    committed,
    decide_as,
    submit_as,
    user,
)
from tests.factories import Region, agency_client, officer_client


def _confidential_request(client: TestClient, region: Region) -> str:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(
        payload=b'{"q": "account holder"}',
        destination_country="MK",
        category="money-laundering",
        classification="CONFIDENTIAL",
    )
    message_id: str = asker.submit(envelope)["message_id"]
    return message_id


def test_confidential_needs_two_different_officers(client: TestClient, region: Region) -> None:
    message_id = _confidential_request(client, region)
    asker = agency_client(region, "AL-ASP", client)
    first = officer_client(region, "al-officer2", client)

    assert first.decide(message_id, "approve")["state"] == "origin_review"
    with committed(client) as session:
        still_queued = queue(session, user(session, "al-officer2"), "outbound", limit=500)
        assert message_id in [m.id for m in still_queued]

    with pytest.raises(ClientError) as again:
        first.decide(message_id, "approve")
    assert again.value.status == 409
    assert "four eyes" in again.value.problem["detail"]
    assert asker.status(message_id)["state"] == "origin_review"

    second = officer_client(region, "al-supervisor", client)
    assert second.decide(message_id, "approve")["state"] == "forwarded"
    assert asker.status(message_id)["state"] == "forwarded"
    with committed(client) as session:
        assert [s.decision for s in custody_of(session, message_id)] == [
            "submitted",
            "approved-first",
            "approved",
        ]
        assert [s.actor for s in custody_of(session, message_id)][1:] == ["al-officer2", "al-supervisor"]
        approvals = audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_APPROVED)
        assert [a.details for a in approvals] == [{"four_eyes": "first"}]
        assert len(audit_entries(session, object_id=message_id, action=AuditAction.MESSAGE_FORWARDED)) == 1


def test_restricted_needs_one_officer(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK")
    assert decide_as(db, keys, "al-officer", message.id, "approve").state == State.FORWARDED


def test_a_supervisor_alone_is_still_one_pair_of_eyes(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", classification="CONFIDENTIAL")
    assert decide_as(db, keys, "al-supervisor", message.id, "approve").state == State.ORIGIN_REVIEW
    with pytest.raises(Conflict):
        decide_as(db, keys, "al-supervisor", message.id, "approve")
    assert decide_as(db, keys, "al-officer2", message.id, "approve").state == State.FORWARDED


def _cleared_officer(db: Session, username: str) -> User:
    return create_user(
        db,
        username=username,
        password="a-long-test-password",
        role="officer",
        contact_point_id="HR-SPOC",
        country="HR",
        clearance="SECRET",
        actor=SYSTEM,
    )


def _secret_request(db: Session, keys: DatabaseKeyStore, region: Region) -> Message:
    return submit_as(
        db,
        keys,
        region,
        "HR-DORH",
        destination_country="SI",
        destination_agency="SI-DT",
        category="corruption",
        classification="SECRET",
    )


def test_secret_needs_a_supervisor_among_the_two(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    _cleared_officer(db, "hr-secret-a")
    _cleared_officer(db, "hr-secret-b")
    message = _secret_request(db, keys, region)

    assert decide_as(db, keys, "hr-secret-a", message.id, "approve").state == State.ORIGIN_REVIEW
    with db.begin_nested(), pytest.raises(Conflict, match="supervisor"):  # rolled back, as a request would be
        decide_as(db, keys, "hr-secret-b", message.id, "approve")
    assert message.state == State.ORIGIN_REVIEW
    assert [s.decision for s in custody_of(db, message.id)] == ["submitted", "approved-first"]

    assert decide_as(db, keys, "hr-supervisor", message.id, "approve").state == State.FORWARDED


def test_secret_with_supervisor_first_then_cleared_officer(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    _cleared_officer(db, "hr-secret-c")
    message = _secret_request(db, keys, region)
    assert decide_as(db, keys, "hr-supervisor", message.id, "approve").state == State.ORIGIN_REVIEW
    assert decide_as(db, keys, "hr-secret-c", message.id, "approve").state == State.FORWARDED


def test_an_officer_below_the_classification_cannot_approve_secret(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _secret_request(db, keys, region)
    with pytest.raises(NotPermitted):
        decide_as(db, keys, "hr-officer2", message.id, "approve")  # CONFIDENTIAL clearance
    assert message.state == State.ORIGIN_REVIEW


# --- clearance ----------------------------------------------------------------------------------------


def test_uncleared_officer_cannot_decide_on_confidential_over_the_api(
    client: TestClient, region: Region
) -> None:
    message_id = _confidential_request(client, region)
    low = officer_client(region, "al-officer", client)  # RESTRICTED
    for action, fields in [("approve", {}), ("reject", {"reason": "no"}), ("return", {"reason": "why?"})]:
        with pytest.raises(ClientError) as refused:
            low.decide(message_id, action, **fields)
        assert refused.value.status == 403
    assert agency_client(region, "AL-ASP", client).status(message_id)["state"] == "origin_review"


def test_uncleared_officer_reads_metadata_only_and_the_attempt_is_audited(
    client: TestClient, region: Region
) -> None:
    message_id = _confidential_request(client, region)
    low = officer_client(region, "al-officer", client)
    content = low.content(message_id)
    assert content["readable"] is False
    assert content["payload_b64"] is None
    assert "CONFIDENTIAL" in content["notice"]

    cleared = officer_client(region, "al-officer2", client).content(message_id)
    assert cleared["readable"] is True
    assert base64.b64decode(cleared["payload_b64"]) == b'{"q": "account holder"}'

    with committed(client) as session:
        reads = audit_entries(session, object_id=message_id, action=AuditAction.CONTENT_READ)
        assert [(r.actor, r.outcome) for r in reads] == [("al-officer", "denied"), ("al-officer2", "ok")]
        assert reads[0].details == {"clearance": "RESTRICTED"}


def test_read_content_service_denies_below_clearance(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", classification="CONFIDENTIAL")
    officer = user(db, "al-officer")
    content = read_content(db, keys, officer, message.id, actor=Actor(officer.username, officer.role))
    assert content.readable is False
    assert content.plaintext is None
    [entry] = audit_entries(db, object_id=message.id, action=AuditAction.CONTENT_READ)
    assert entry.outcome == "denied"
    assert entry.actor == "al-officer"


def test_two_officers_approving_at_the_same_moment_complete_four_eyes(
    client: TestClient, region: Region
) -> None:
    """The second decision waits for the first one's row lock, then sees its approval and forwards.

    Without the lock each transaction would see no other approval, both would record a first one, and the
    message would sit in review with two approvals and nobody left to give the second.
    """
    message_id = _confidential_request(client, region)
    maker = client.app.state.sessionmaker  # type: ignore[attr-defined]
    master = client.app.state.master_key  # type: ignore[attr-defined]
    holding, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def approve(username: str, hold: bool) -> None:
        try:
            with unit_of_work(maker) as session:
                decide_as(session, DatabaseKeyStore(session, master), username, message_id, "approve")
                if hold:  # keep the first transaction open until the second one is waiting on it
                    holding.set()
                    release.wait(30)
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)
            holding.set()

    first = threading.Thread(target=approve, args=("al-officer2", True))
    first.start()
    assert holding.wait(30)
    second = threading.Thread(target=approve, args=("al-supervisor", False))
    second.start()
    with committed(client) as session:
        for _ in range(600):  # until the second transaction is blocked on the first one's lock
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                break
            time.sleep(0.05)
            session.rollback()
        else:
            release.set()
            pytest.fail("the second approval never waited for the first one's lock")
    release.set()
    first.join(30)
    second.join(30)
    assert failures == []
    assert agency_client(region, "AL-ASP", client).status(message_id)["state"] == "forwarded"
