"""The retention rules over HTTP: a held exchange survives the sweep past its period and goes once released;
refusals (a hold without a reason, deleting held data, reviewing what has not ended, a role that may not) are
answered with problem+json and audited; the review queue lists what ended long enough ago and was not reviewed,
and a review takes it off, audited."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from broker.audit.models import AuditEntry
from broker.config import Settings
from broker.db import unit_of_work
from broker.messages.models import Message
from broker.retention.models import RetentionHold
from broker.retention.service import sweep
from tests.broker.messages.spoc_builders import agency_http
from tests.broker.retention.scenario import answered_exchange, backdate, committed, run_sweep
from tests.factories import Region, agency_client, officer_client
from workers.celery_app import create_celery

PERIOD = 3 * 365  # the default retention period (days)


def _bearer(client: TestClient, region: Region, username: str) -> httpx.Client:
    login = client.post("/v1/auth/login", json={"username": username, "password": region.password(username)})
    assert login.status_code == 200, login.text
    return httpx.Client(
        base_url="http://testserver",
        transport=client._transport,
        headers={"Authorization": f"Bearer {login.json()['token']}"},
    )


def _entries(client: TestClient, action: str, object_id: str) -> list[AuditEntry]:
    with committed(client) as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == action, AuditEntry.object_id == object_id)
                .order_by(AuditEntry.id)
            )
        )


def _deleted(client: TestClient, message_id: str) -> bool:
    with committed(client) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.content_deleted_at is not None


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def test_a_held_exchange_survives_its_period_and_goes_once_released(
    client: TestClient, region: Region
) -> None:
    held = answered_exchange(client, region)
    free = answered_exchange(client, region)
    with _bearer(client, region, "al-officer") as al:
        hold = al.post(f"/v1/retention/{held.conversation_id}/hold", json={"reason": "court order K-88/2026"})
        assert hold.status_code == 201, hold.text
        assert hold.json()["held"] is True
        backdate(client, held.conversation_id, PERIOD + 10)
        backdate(client, free.conversation_id, PERIOD + 10)

        swept = run_sweep(client)
        assert free.conversation_id in swept
        assert held.conversation_id not in swept
        assert _deleted(client, free.request_id)
        assert _deleted(client, free.answer_id)
        assert not _deleted(client, held.request_id)

        released = al.post(
            f"/v1/retention/{held.conversation_id}/hold/release", json={"reason": "case closed"}
        )
        assert released.status_code == 200, released.text
        assert released.json()["held"] is False
    assert held.conversation_id in run_sweep(client)
    assert _deleted(client, held.request_id)
    assert _deleted(client, held.answer_id)

    [hold_set] = _entries(client, "retention:hold-set", held.conversation_id)
    assert hold_set.actor == "al-officer"
    assert hold_set.details["reason"] == "court order K-88/2026"
    assert hold_set.countries == ["AL", "MK"]
    assert len(_entries(client, "retention:hold-released", held.conversation_id)) == 1
    [deleted] = _entries(client, "retention:deleted", held.request_id)
    assert deleted.actor == "retention"
    assert deleted.details["basis"] == "period"


def test_refusals_are_answered_and_audited(client: TestClient, region: Region) -> None:
    x = answered_exchange(client, region)
    backdate(client, x.conversation_id, 200)
    cid = x.conversation_id
    with _bearer(client, region, "al-officer") as al:
        for body in ({}, {"reason": "   "}):
            problem = _problem(al.post(f"/v1/retention/{cid}/hold", json=body), 422)
            assert problem["type"] == "urn:spoc:problem:policy-refused"
            assert "reason" in problem["detail"]
        assert al.post(f"/v1/retention/{cid}/hold", json={"reason": "pending trial"}).status_code == 201
        problem = _problem(al.post(f"/v1/retention/{cid}/review", json={"decision": "delete"}), 409)
        assert "legal hold" in problem["detail"]
        _problem(al.post(f"/v1/retention/{cid}/review", json={"decision": "hold"}), 422)
    assert not _deleted(client, x.request_id), "held data was not deleted"

    refused = _entries(client, "retention:refused", cid)
    assert [e.details["attempt"] for e in refused] == ["hold", "hold", "review:delete", "review:hold"]
    assert all(e.outcome == "refused" and e.actor == "al-officer" for e in refused)
    assert all(e.countries == ["AL", "MK"] for e in refused)

    # A role that may not review: the admin (403) and an agency (401), each an access:denied entry.
    with _bearer(client, region, "admin") as admin:
        _problem(admin.post(f"/v1/retention/{cid}/review", json={"decision": "keep"}), 403)
    with agency_http(client, region, "AL-ASP") as agency:
        _problem(agency.post(f"/v1/retention/{cid}/review", json={"decision": "keep"}), 401)
    denied = {(e.actor, e.details["status"]): e for e in _entries(client, "access:denied", cid)}
    assert denied[("admin", 403)].details["route"] == "POST /v1/retention/{conversation_id}/review"
    assert denied[("anonymous", 401)].details["claimed"]["party"] == "AL-ASP"

    # Out of scope: RS's officer does not learn that the exchange exists.
    with _bearer(client, region, "rs-officer") as rs:
        _problem(rs.post(f"/v1/retention/{cid}/hold", json={"reason": "x"}), 404)
        _problem(rs.get(f"/v1/retention/{cid}"), 404)


def test_an_exchange_that_has_not_ended_is_not_reviewed(client: TestClient, region: Region) -> None:
    with agency_client(region, "AL-ASP", client) as asker:
        envelope = asker.build(payload=b'{"q": 1}', destination_country="MK", category="fraud")
        asker.submit(envelope)
    cid = envelope["header"]["conversation_id"]
    backdate(client, cid, 200)  # old, but still in review: open
    with _bearer(client, region, "al-officer") as al:
        problem = _problem(al.post(f"/v1/retention/{cid}/review", json={"decision": "delete"}), 409)
        assert "not ended" in problem["detail"]
        # A hold needs no end: a court can order one while the exchange runs.
        assert al.post(f"/v1/retention/{cid}/hold", json={"reason": "investigation"}).status_code == 201
    assert [e.details["attempt"] for e in _entries(client, "retention:refused", cid)] == ["review:delete"]


def _queue(client: TestClient, region: Region, username: str) -> list[str]:
    with _bearer(client, region, username) as http:
        response = http.get("/v1/retention/review-queue", params={"limit": 500})
        assert response.status_code == 200, response.text
        return [e["conversation_id"] for e in response.json()]


def test_the_review_queue_lists_what_ended_long_enough_ago_and_was_not_reviewed(
    client: TestClient, region: Region
) -> None:
    due = answered_exchange(client, region)
    recent = answered_exchange(client, region)
    to_delete = answered_exchange(client, region)
    backdate(client, due.conversation_id, 184)
    backdate(client, recent.conversation_id, 120)
    backdate(client, to_delete.conversation_id, 400)

    queue = _queue(client, region, "al-officer")
    assert due.conversation_id in queue
    assert to_delete.conversation_id in queue
    assert recent.conversation_id not in queue
    assert queue.index(to_delete.conversation_id) < queue.index(due.conversation_id), "longest ended first"
    # Scope: MK received them (its case file), AL's and MK's auditors oversee them, RS's officer and auditor not.
    for username in ("mk-officer", "al-auditor", "mk-auditor", "regional-auditor"):
        assert due.conversation_id in _queue(client, region, username)
    for username in ("rs-officer", "rs-auditor"):
        assert due.conversation_id not in _queue(client, region, username)

    with _bearer(client, region, "al-auditor") as auditor:
        kept = auditor.post(
            f"/v1/retention/{due.conversation_id}/review", json={"decision": "keep", "reason": "open appeal"}
        )
        assert kept.status_code == 200, kept.text
        assert kept.json()["deleted_messages"] == 0
    with officer_client(region, "mk-officer", client) as mk:
        answer = mk._call(
            "POST", f"/v1/retention/{to_delete.conversation_id}/review", json={"decision": "delete"}
        )
    assert answer["deleted_messages"] == 2
    assert _deleted(client, to_delete.request_id)
    assert not _deleted(client, due.request_id), "keep keeps"

    queue = _queue(client, region, "al-officer")
    assert due.conversation_id not in queue
    assert to_delete.conversation_id not in queue
    [reviewed] = _entries(client, "retention:reviewed", due.conversation_id)
    assert reviewed.actor == "al-auditor"
    assert reviewed.details["decision"] == "keep"
    [reviewed] = _entries(client, "retention:reviewed", to_delete.conversation_id)
    assert reviewed.details["decision"] == "delete"
    assert _entries(client, "retention:deleted", to_delete.answer_id)[0].details["basis"] == "review"


def test_the_sweep_is_a_beat_task(tmp_path: Any) -> None:
    app = create_celery(Settings(data_dir=tmp_path, retention_sweep_interval_seconds=900))
    assert app.conf.beat_schedule["retention-sweep"]["task"] == "spoc.retention.sweep"
    assert app.conf.beat_schedule["retention-sweep"]["schedule"] == 900
    import workers.retention_tasks  # noqa: F401 - registers the task on the module-level app
    from workers.celery_app import app as module_app

    assert "spoc.retention.sweep" in module_app.tasks


def test_periods_are_per_category_and_checked() -> None:
    settings = Settings(retention_days_by_category={"terrorism": 3650})
    assert settings.retention_days("terrorism") == 3650
    assert settings.retention_days("fraud") == settings.retention_default_days == PERIOD
    assert settings.retention_review_after_days == 183
    with pytest.raises(ValidationError, match="jaywalking"):
        Settings(retention_days_by_category={"jaywalking": 10})


def test_a_hold_that_waited_for_the_sweep_is_refused_not_set_on_deleted_content(
    client: TestClient, region: Region
) -> None:
    """The sweep has locked the exchange and is deleting it when an officer's hold arrives: the hold waits for
    the sweep's commit and is then refused (409, audited), never answered 201 "held" over content that is gone.
    The same for a hold asked after the deletion."""
    x = answered_exchange(client, region)
    backdate(client, x.conversation_id, PERIOD + 10)
    answers: list[httpx.Response] = []
    with _bearer(client, region, "al-officer") as al:

        def hold() -> None:
            answers.append(al.post(f"/v1/retention/{x.conversation_id}/hold", json={"reason": "court order"}))

        state = client.app.state  # type: ignore[attr-defined]
        with unit_of_work(state.sessionmaker) as session:
            assert sweep(session, state.settings).conversations == [
                x.conversation_id
            ]  # locked, not committed
            racing = threading.Thread(target=hold)
            racing.start()
            racing.join(timeout=1.0)
            assert racing.is_alive(), "the hold waits for the sweep's lock"
        racing.join(timeout=10)
        assert not racing.is_alive()
        [raced] = answers
        problem = _problem(raced, 409)
        assert "deleted" in problem["detail"]
        _problem(al.post(f"/v1/retention/{x.conversation_id}/hold", json={"reason": "court order"}), 409)
    assert _deleted(client, x.request_id)
    with committed(client) as session:
        assert not session.scalars(
            select(RetentionHold).where(RetentionHold.conversation_id == x.conversation_id)
        ).all()
    refused = _entries(client, "retention:refused", x.conversation_id)
    assert [e.details["attempt"] for e in refused] == ["hold", "hold"]
