"""Push delivery at the service level (rolled back): signed pushes, receipts, retries, dead letters.

The agency's endpoint is an ``httpx.MockTransport`` that verifies the contact point's RFC 9421 signature
exactly as ``broker.client.receiver`` does, then answers as the test says.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.config import Settings
from broker.crypto.httpsig import verify_request
from broker.db import utcnow
from broker.delivery import push
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.delivery.service import deliver
from broker.directory.service import get_agency
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.states import State
from tests.broker.messages.spoc_builders import audit_entries, receipt_for, routed_message
from tests.factories import Region

ENDPOINT = "https://push.al-asp.example/spoc"
Answer = Callable[[Message], httpx.Response]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"push_max_attempts": 3, "push_backoff_base_seconds": 2.0, "push_backoff_cap_seconds": 60.0}
    )


def _routed_to_push_agency(db: Session, keys: DatabaseKeyStore, region: Region) -> Message:
    get_agency(db, "AL-ASP").push_url = ENDPOINT
    message = routed_message(db, keys, region)
    deliver(db, message.id)
    return message


def _item(db: Session, message: Message) -> InboxItem:
    item = db.scalar(select(InboxItem).where(InboxItem.message_id == message.id))
    assert item is not None
    return item


def _push_once(
    db: Session, keys: DatabaseKeyStore, settings: Settings, answer: Answer, message: Message
) -> dict[str, int]:
    def handler(request: httpx.Request) -> httpx.Response:
        verify_request(
            request.method,
            str(request.url),
            request.headers,
            request.content,
            resolve=lambda kid: keys.resolve(kid, party_id="AL-SPOC"),
            max_age=60,
        )
        assert orjson.loads(request.content)["message_id"] == message.id
        return answer(message)

    mine = _item(db, message).id
    push.claim(db, limit=1000, lease_seconds=30, now=utcnow() + timedelta(hours=1))
    jobs, known = push.prepare(db, keys, [mine])  # only this test's push (others may be due too)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        outcomes = known + push.send(jobs, client=client, concurrency=4)
    return push.settle(db, keys, outcomes, settings, rng=random.Random(7))


def test_a_push_agency_gets_a_pending_push_and_the_message_stays_routed(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _routed_to_push_agency(db, keys, region)
    deliver(db, message.id)  # the outbox task ran twice
    [item] = db.scalars(select(InboxItem).where(InboxItem.message_id == message.id)).all()
    assert (item.channel, item.status, message.state) == (Channel.PUSH, DeliveryStatus.PENDING, State.ROUTED)
    assert audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_DELIVERED) == []


def test_a_signed_push_answered_with_a_receipt_is_delivered_once(
    db: Session, keys: DatabaseKeyStore, region: Region, fast: Settings
) -> None:
    message = _routed_to_push_agency(db, keys, region)

    def ok(m: Message) -> httpx.Response:
        return httpx.Response(200, json={"receipt": receipt_for(region, "AL-ASP", m)})

    assert _push_once(db, keys, fast, ok, message)["delivered"] == 1
    item = _item(db, message)
    assert item.status == DeliveryStatus.DELIVERED
    assert item.acked_at is not None
    assert item.receipt is not None
    assert message.state == State.DELIVERED
    assert _push_once(db, keys, fast, ok, message) == {"delivered": 0, "retry": 0, "dead": 0, "skipped": 0}
    # (a delivered push is not pending any more: nothing was prepared, nothing sent)
    [delivered] = audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_DELIVERED)
    assert delivered.details["channel"] == "push"
    assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_ACKNOWLEDGED)) == 1


def test_settling_the_same_outcome_twice_records_it_once(
    db: Session, keys: DatabaseKeyStore, region: Region, fast: Settings
) -> None:
    """A push task that runs twice (redelivered after a lost acknowledgement) settles nothing twice."""
    message = _routed_to_push_agency(db, keys, region)
    outcome = push.PushOutcome(_item(db, message).id, receipt=receipt_for(region, "AL-ASP", message))
    assert push.settle(db, keys, [outcome], fast)["delivered"] == 1
    assert push.settle(db, keys, [outcome], fast)["skipped"] == 1
    assert len(audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_DELIVERED)) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            lambda m: httpx.Response(503, text="maintenance"),
            "HTTP 503 from the endpoint (its answer is not kept)",
        ),
        (lambda m: httpx.Response(200, json={}), "HTTP 200 without a receipt"),
        (lambda m: httpx.Response(200, json={"receipt": "a.b.c"}), "the receipt does not verify"),
    ],
    ids=["unavailable", "no-receipt", "bad-receipt"],
)
def test_a_failed_push_is_retried_with_backoff_then_dead_lettered(
    db: Session, keys: DatabaseKeyStore, region: Region, fast: Settings, answer: Answer, error: str
) -> None:
    message = _routed_to_push_agency(db, keys, region)
    before = utcnow()
    assert _push_once(db, keys, fast, answer, message)["retry"] == 1
    item = _item(db, message)
    assert item.attempts == 1
    assert item.last_error is not None
    assert item.last_error.startswith(error)
    assert item.next_attempt_at is not None
    wait = (item.next_attempt_at - before).total_seconds()
    assert 1.0 <= wait <= 2.5  # base 2 s, jittered to 50-100 %
    assert _push_once(db, keys, fast, answer, message)["retry"] == 1
    assert _push_once(db, keys, fast, answer, message)["dead"] == 1
    item = _item(db, message)
    assert (item.status, item.attempts, item.next_attempt_at) == (DeliveryStatus.DEAD, 3, None)
    assert message.state == State.ROUTED
    [dead] = audit_entries(db, object_id=message.id, action=AuditAction.MESSAGE_DELIVERED)
    assert (dead.outcome, dead.details["attempts"]) == ("dead-lettered", 3)


def test_an_answer_retrying_cannot_fix_is_dead_lettered_at_once(
    db: Session, keys: DatabaseKeyStore, region: Region, fast: Settings
) -> None:
    message = _routed_to_push_agency(db, keys, region)
    assert _push_once(db, keys, fast, lambda m: httpx.Response(404), message)["dead"] == 1
    assert _item(db, message).attempts == 1


def test_retry_after_is_honoured_and_timeouts_are_retried(
    db: Session, keys: DatabaseKeyStore, region: Region, fast: Settings
) -> None:
    message = _routed_to_push_agency(db, keys, region)
    before = utcnow()
    _push_once(db, keys, fast, lambda m: httpx.Response(429, headers={"Retry-After": "30"}), message)
    item = _item(db, message)
    assert item.next_attempt_at is not None
    assert (item.next_attempt_at - before).total_seconds() >= 30

    def timeout(m: Message) -> httpx.Response:
        raise httpx.ReadTimeout("slow endpoint")

    assert _push_once(db, keys, fast, timeout, message)["retry"] == 1
    assert item.last_error == "timeout: ReadTimeout"


def test_a_claimed_push_is_not_claimed_again_until_its_lease_runs_out(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    message = _routed_to_push_agency(db, keys, region)
    now = utcnow() + timedelta(hours=1)  # past anything other tests left due
    first = push.claim(db, limit=100, lease_seconds=60, now=now)
    assert _item(db, message).id in first
    assert _item(db, message).id not in push.claim(db, limit=100, lease_seconds=60, now=now)
    later = now + timedelta(seconds=61)  # the worker that claimed it was killed
    assert _item(db, message).id in push.claim(db, limit=100, lease_seconds=60, now=later)


def test_an_agency_that_withdrew_its_endpoint_gets_the_message_in_its_pull_inbox(
    db: Session, keys: DatabaseKeyStore, region: Region, fast: Settings
) -> None:
    message = _routed_to_push_agency(db, keys, region)
    get_agency(db, "AL-ASP").push_url = None
    assert _push_once(db, keys, fast, lambda m: httpx.Response(500), message)["delivered"] == 1
    item = _item(db, message)
    assert (item.channel, item.status, message.state) == (
        Channel.PULL,
        DeliveryStatus.DELIVERED,
        State.DELIVERED,
    )


@given(attempts=st.integers(min_value=1, max_value=60), seed=st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_exponentially_is_capped_and_jittered(attempts: int, seed: int) -> None:
    ceiling = min(300.0, 2.0 * 2 ** (attempts - 1))
    delay = push.backoff(attempts, base=2.0, cap=300.0, rng=random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling
