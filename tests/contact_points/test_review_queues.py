"""The queues: most urgent deadline first, filtered by status, priority, country, category, classification
and assignment, with counts."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.keys.service import DatabaseKeyStore
from contact_points.review.queues import ALL, QueueFilter, counts, queue
from tests.broker.messages.spoc_builders import (
    URGENT_DIRECT,
    URGENT_INDIRECT,
    decide_as,
    officer_headers,
    submit_as,
    user,
)
from tests.factories import Region, agency_client


def _ids(db: Session, username: str, **filters: str) -> list[str]:
    return [
        m.id for m in queue(db, user(db, username), "outbound", limit=500, filters=QueueFilter(**filters))
    ]


def test_sorted_by_deadline_then_filtered(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    normal = submit_as(db, keys, region, "BA-SIPA", destination_country="HR", category="fraud")
    indirect = submit_as(db, keys, region, "BA-SIPA", destination_country="ME", priority=URGENT_INDIRECT)
    direct = submit_as(db, keys, region, "BA-SIPA", destination_country="HR", priority=URGENT_DIRECT)
    notice = submit_as(db, keys, region, "BA-SIPA", destination_country="HR", message_type="notification")
    confidential = submit_as(
        db, keys, region, "BA-SIPA", destination_country="HR", classification="CONFIDENTIAL"
    )
    mine = [direct.id, indirect.id, normal.id, confidential.id, notice.id]

    everything = _ids(db, "ba-officer")
    assert [i for i in everything if i in mine] == mine  # 8 h, 3 d, 7 d, 7 d (later), no deadline last
    assert [i for i in _ids(db, "ba-officer", priority="urgent") if i in mine] == [direct.id, indirect.id]
    assert [i for i in _ids(db, "ba-officer", country="ME") if i in mine] == [indirect.id]
    assert [i for i in _ids(db, "ba-officer", category="fraud") if i in mine] == [normal.id]
    assert [i for i in _ids(db, "ba-officer", classification="CONFIDENTIAL") if i in mine] == [
        confidential.id
    ]

    decide_as(db, keys, "ba-officer", normal.id, "reject", reason="no legal basis stated")
    assert normal.id not in _ids(db, "ba-officer")
    assert normal.id in _ids(db, "ba-officer", status="rejected")
    assert normal.id in _ids(db, "ba-officer", status=ALL)

    decide_as(db, keys, "ba-officer2", confidential.id, "assign", assign_to="ba-officer2")
    assert [i for i in _ids(db, "ba-officer2", assigned="me") if i in mine] == [confidential.id]
    assert confidential.id not in _ids(db, "ba-officer2", assigned="unassigned")


def test_counts_per_state_urgent_and_matching(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    officer = user(db, "ba-officer")
    before = counts(db, officer, "outbound")
    submit_as(db, keys, region, "BA-SIPA", destination_country="HR", priority=URGENT_DIRECT)
    submit_as(db, keys, region, "BA-SIPA", destination_country="HR")
    after = counts(db, officer, "outbound", filters=QueueFilter(priority="urgent"))
    assert after.awaiting == before.awaiting + 2
    assert after.urgent == before.urgent + 1
    assert after.by_state["origin_review"] == before.by_state.get("origin_review", 0) + 2
    assert after.matching == before.urgent + 1


def test_filters_and_counts_over_the_api(client: TestClient, region: Region) -> None:
    asker = agency_client(region, "BA-SIPA", client)
    urgent = asker.submit(
        asker.build(payload=b"{}", destination_country="HR", category="kidnapping", priority=URGENT_DIRECT)
    )["message_id"]
    headers = officer_headers(client, region, "ba-officer")
    listed = client.get(
        "/v1/cp/queues/outbound", params={"priority": "urgent", "limit": 500}, headers=headers
    )
    assert urgent in [m["message_id"] for m in listed.json()]
    assert all(m["priority_level"] == "urgent" for m in listed.json())
    count = client.get("/v1/cp/queues/outbound/counts", params={"priority": "urgent"}, headers=headers).json()
    assert count["urgent"] >= 1
    assert count["matching"] == len(listed.json())


def test_a_queue_page_shows_urgency_without_reading_the_envelopes(client: TestClient, region: Region) -> None:
    """The queue leaves the envelopes in the database; the one part it shows, the priority, is read for the
    page in one query, and an envelope is loaded only if something reads it."""
    from sqlalchemy import event

    from broker.db import unit_of_work
    from contact_points.review.present import summaries
    from tests.broker.messages.spoc_builders import URGENT_DIRECT, user

    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(
        payload=b'{"q": "hostage"}', destination_country="MK", category="kidnapping", priority=URGENT_DIRECT
    )
    message_id = asker.submit(envelope)["message_id"]
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        page = queue(session, user(session, "al-officer"), "outbound", limit=500)
        mine = [m for m in page if m.id == message_id]
        assert mine
        assert all("envelope" not in m.__dict__ for m in page)
        statements: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements.append(statement)

        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            [row] = summaries(session, mine)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert row["urgency_reason"] == "threat-to-life-or-physical-integrity"
        assert row["urgency_explanation"] == URGENT_DIRECT["urgency_explanation"]
        assert len(statements) == 1  # the page's priorities, no envelope
        assert mine[0].envelope["header"]["priority"] == URGENT_DIRECT  # still loads if read
