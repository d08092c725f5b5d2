"""``POST /v1/cp/decisions``: many decisions in one call, each taken exactly as alone (scope, state, four
eyes), each failing on its own without undoing the others."""

from __future__ import annotations

import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.audit.actions import AuditAction
from broker.client.agency import ClientError
from broker.messages.models import Approval
from broker.messages.service import custody_of
from broker.messages.states import State
from tests.broker.messages.spoc_builders import audit_entries, committed
from tests.factories import Region, agency_client, officer_client


def _requests(client: TestClient, region: Region, n: int, *, classification: str = "RESTRICTED") -> list[str]:
    with agency_client(region, "AL-ASP", client) as asker:
        envelopes = [
            asker.build(
                payload=b'{"q": %d}' % i,
                destination_country="MK",
                category="fraud",
                classification=classification,
            )
            for i in range(n)
        ]
        answer = asker.submit_batch(envelopes)
    return [r["receipt"]["message_id"] for r in answer["results"]]


def test_a_page_of_requests_is_approved_in_one_call_each_with_its_custody_and_audit(
    client: TestClient, region: Region
) -> None:
    ids = _requests(client, region, 5)
    with officer_client(region, "al-officer", client) as officer:
        answer = officer.decide_many([(m, {"action": "approve"}) for m in ids])

    assert (answer["decided"], answer["failed"]) == (5, 0)
    assert [(r["index"], r["message_id"], r["status"], r["state"]) for r in answer["results"]] == [
        (i, m, 200, State.FORWARDED) for i, m in enumerate(ids)
    ]
    with committed(client) as session:
        for message_id in ids:
            steps = custody_of(session, message_id)
            assert [s.decision for s in steps] == ["submitted", "approved"]
            assert steps[-1].actor == "al-officer"
            actions = [e.action for e in audit_entries(session, object_id=message_id)]
            assert actions[-1] == AuditAction.MESSAGE_FORWARDED


def test_each_decision_fails_alone_and_leaves_nothing_of_itself(client: TestClient, region: Region) -> None:
    good, done, wrong_action = _requests(client, region, 3)
    with officer_client(region, "al-officer", client) as officer:
        officer.decide(done, "approve")
        unknown = str(uuid.uuid4())
        answer = officer.decide_many(
            [
                (good, {"action": "approve"}),
                (unknown, {"action": "approve"}),
                (done, {"action": "approve"}),
                (wrong_action, {"action": "route", "route_to_agency": "MK-MOI"}),
            ]
        )
    assert [r["status"] for r in answer["results"]] == [200, 404, 409, 409]
    assert (answer["decided"], answer["failed"]) == (1, 3)
    assert answer["results"][2]["problem"]["type"] == "urn:spoc:problem:conflict"
    with committed(client) as session:
        assert [s.decision for s in custody_of(session, good)] == ["submitted", "approved"]
        assert [s.decision for s in custody_of(session, done)] == ["submitted", "approved"]  # not twice
        assert [s.decision for s in custody_of(session, wrong_action)] == ["submitted"]


def test_four_eyes_cannot_be_met_by_one_officer_naming_a_message_twice(
    client: TestClient, region: Region
) -> None:
    [confidential] = _requests(client, region, 1, classification="CONFIDENTIAL")
    with officer_client(region, "al-officer2", client) as officer:
        answer = officer.decide_many([(confidential, {"action": "approve"})] * 2)
    assert [r["status"] for r in answer["results"]] == [200, 409]
    assert answer["results"][0]["state"] == State.ORIGIN_REVIEW  # first approval only
    with committed(client) as session:
        approvals = session.scalar(
            select(func.count()).select_from(Approval).where(Approval.message_id == confidential)
        )
        assert approvals == 1
        assert [s.decision for s in custody_of(session, confidential)] == ["submitted", "approved-first"]


def test_an_officer_of_another_contact_point_decides_nothing(client: TestClient, region: Region) -> None:
    ids = _requests(client, region, 2)
    with officer_client(region, "mk-officer", client) as officer:
        answer = officer.decide_many([(m, {"action": "approve"}) for m in ids])
    assert [r["status"] for r in answer["results"]] == [404, 404]
    with committed(client) as session:
        for message_id in ids:
            assert [s.decision for s in custody_of(session, message_id)] == ["submitted"]


@pytest.mark.parametrize("count", [0, 101])
def test_a_batch_of_decisions_has_bounds(client: TestClient, region: Region, count: int) -> None:
    with officer_client(region, "al-officer", client) as officer, pytest.raises(ClientError) as refused:
        officer.decide_many([(str(uuid.uuid4()), {"action": "approve"})] * count)
    assert refused.value.status in (400, 422)


def test_agencies_cannot_post_decisions(client: TestClient, region: Region) -> None:
    with agency_client(region, "AL-ASP", client) as agency, pytest.raises(ClientError) as refused:
        agency._call("POST", "/v1/cp/decisions", json={"decisions": []})
    assert refused.value.status == 401


def test_two_officers_deciding_overlapping_pages_in_opposite_orders_both_finish(
    client: TestClient, region: Region
) -> None:
    """Each decision keeps its message locked to the commit; pages taken in opposite orders would deadlock
    (one call failing as 503) unless a page locks its messages in one order first."""
    ids = _requests(client, region, 30, classification="CONFIDENTIAL")  # four eyes: both must approve
    start = threading.Barrier(2)
    answers: dict[str, dict[str, object]] = {}
    failures: list[BaseException] = []

    def approve(username: str, order: list[str]) -> None:
        try:
            with officer_client(region, username, client) as officer:
                start.wait(10)
                answers[username] = officer.decide_many([(m, {"action": "approve"}) for m in order])
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=approve, args=("al-officer2", ids)),
        threading.Thread(target=approve, args=("al-supervisor", ids[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert {name: a["decided"] for name, a in answers.items()} == {"al-officer2": 30, "al-supervisor": 30}
    with committed(client) as session:
        for message_id in ids:
            assert sorted(s.decision for s in custody_of(session, message_id))[:2] == [
                "approved",
                "approved-first",
            ]
