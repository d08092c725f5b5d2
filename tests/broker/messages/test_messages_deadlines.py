"""Deadlines of Directive (EU) 2023/977 Art. 5(1): they run from submission, for requests only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.keys.service import DatabaseKeyStore
from broker.messages.deadlines import deadline_for
from tests.broker.messages.spoc_builders import URGENT_DIRECT, URGENT_INDIRECT, submit_as
from tests.factories import Region, agency_client

T0 = datetime(2025, 3, 1, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("level", "access", "expected"),
    [
        ("urgent", "direct", timedelta(hours=8)),
        ("urgent", "indirect", timedelta(days=3)),
        ("normal", "direct", timedelta(days=7)),
        ("normal", "indirect", timedelta(days=7)),
    ],
)
def test_request_deadlines(level: str, access: str, expected: timedelta) -> None:
    deadline = deadline_for(
        message_type="request", priority_level=level, information_access=access, submitted_at=T0
    )
    assert deadline == T0 + expected


@pytest.mark.parametrize("message_type", ["response", "clarification", "notification", "acknowledgement"])
@pytest.mark.parametrize("level", ["urgent", "normal"])
def test_only_requests_have_a_deadline(message_type: str, level: str) -> None:
    assert (
        deadline_for(
            message_type=message_type, priority_level=level, information_access="direct", submitted_at=T0
        )
        is None
    )


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        (URGENT_DIRECT, timedelta(hours=8)),
        (URGENT_INDIRECT, timedelta(days=3)),
        ({"level": "normal", "information_access": "direct"}, timedelta(days=7)),
        (
            {"level": "urgent", **{k: v for k, v in URGENT_DIRECT.items() if k != "information_access"}},
            timedelta(days=3),
        ),  # information_access defaults to indirect: the longer deadline
    ],
    ids=["urgent-direct", "urgent-indirect", "normal", "urgent-default-access"],
)
def test_submitted_request_gets_its_deadline_from_received_at(
    db: Session, keys: DatabaseKeyStore, region: Region, priority: dict[str, Any], expected: timedelta
) -> None:
    message = submit_as(db, keys, region, "AL-ASP", destination_country="MK", priority=priority)
    assert message.deadline_at == message.received_at + expected


def test_notification_gets_no_deadline(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = submit_as(
        db,
        keys,
        region,
        "AL-ASP",
        destination_country="MK",
        message_type="notification",
        priority=URGENT_DIRECT,
    )
    assert message.deadline_at is None


def test_urgent_direct_request_over_the_api_is_due_eight_hours_after_receipt(
    client: TestClient, region: Region
) -> None:
    asker = agency_client(region, "AL-ASP", client)
    envelope = asker.build(
        payload=b'{"q": "where is the hostage"}',
        destination_country="MK",
        category="kidnapping",
        priority=URGENT_DIRECT,
    )
    before = datetime.now(UTC)
    receipt = asker.submit(envelope)
    after = datetime.now(UTC)
    received = datetime.fromisoformat(receipt["received_at"])
    deadline = datetime.fromisoformat(receipt["deadline_at"])
    assert before - timedelta(seconds=1) <= received <= after + timedelta(seconds=1)
    assert deadline - received == timedelta(hours=8)
    status = asker.status(receipt["message_id"])
    assert datetime.fromisoformat(status["deadline_at"]) == deadline
    assert status["priority_level"] == "urgent"
