"""The state gauges read from the database (``broker.ops.state``), in a rolled-back session."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.alerts import raise_alert
from broker.db import utcnow
from broker.delivery.models import Channel, DeliveryStatus, InboxItem
from broker.delivery.service import deliver
from broker.directory.service import get_agency
from broker.hop.models import Hop
from broker.keys.service import DatabaseKeyStore
from broker.ops.state import QUEUES, Snapshot, families, read
from tests.broker.messages.spoc_builders import decide_as, routed_message, submit_as
from tests.factories import Region

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_a_message_moves_through_the_queues(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    before = read(db)
    message = submit_as(db, keys, region, "XK-KP", destination_country="AL")
    submitted = read(db, now=utcnow() + timedelta(minutes=5))
    assert submitted.messages["origin_review"] == before.messages["origin_review"] + 1
    assert submitted.queues["outbound_review"].depth == before.queues["outbound_review"].depth + 1
    assert submitted.audit_pending > before.audit_pending
    oldest = submitted.queues["outbound_review"].oldest
    assert oldest is not None
    assert oldest <= message.updated_at

    decide_as(db, keys, "xk-officer", message.id, "approve")
    approved = read(db)
    assert approved.queues["outbound_review"].depth == before.queues["outbound_review"].depth
    assert approved.messages["forwarded"] == before.messages["forwarded"] + 1
    assert approved.queues["outbox"].depth > before.queues["outbox"].depth  # the forward waits for a worker


def test_overdue_dead_letters_and_alerts(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    before = read(db)
    message = routed_message(db, keys, region)
    message.deadline_at = utcnow() - timedelta(seconds=1)
    get_agency(db, "AL-ASP").push_url = "https://push.al-asp.example/spoc"
    deliver(db, message.id)
    item = db.scalar(select(InboxItem).where(InboxItem.message_id == message.id))
    assert item is not None
    assert item.channel == Channel.PUSH
    pending = read(db)
    assert pending.overdue == before.overdue + 1
    assert pending.queues["push"].depth == before.queues["push"].depth + 1

    item.status, item.attempts, item.last_attempt_at = DeliveryStatus.DEAD, 8, utcnow()
    raise_alert(db, kind="fork", reporter=f"ops-test-{uuid.uuid4().hex[:6]}", detail="two roots")
    db.flush()
    after = read(db)
    assert after.queues["dead_letter"].depth == before.queues["dead_letter"].depth + 1
    assert after.endpoints[("agency", "AL-ASP")] is False
    assert after.alerts["fork"] == before.alerts.get("fork", 0) + 1


def test_a_peer_is_reachable_when_its_newest_hop_was_receipted(db: Session) -> None:
    def hop(**kw: object) -> None:
        db.add(Hop(message_id=str(uuid.uuid4()), direction="out", peer_node="qq", digest="sha-256:x", **kw))
        db.flush()

    hop(attempts=3, last_error="ConnectError reaching the peer node", next_attempt_at=utcnow())
    assert read(db).endpoints[("peer", "qq")] is False
    assert read(db).queues["hop"].depth >= 1
    hop(attempts=1, receipt="receipt-token")
    assert read(db).endpoints[("peer", "qq")] is True
    hop(attempts=0, next_attempt_at=utcnow())  # not tried yet: says nothing
    assert read(db).endpoints[("peer", "qq")] is True


def test_the_gauges_carry_bounded_labels_only(db: Session, keys: DatabaseKeyStore, region: Region) -> None:
    message = routed_message(db, keys, region)
    snapshot = read(db)
    registry = CollectorRegistry()

    class Fixed(Collector):
        def collect(self) -> Iterable[Metric]:
            return families(snapshot)

    registry.register(Fixed())
    text = generate_latest(registry).decode()
    assert message.id not in text
    assert UUID.search(text) is None
    for name in QUEUES:
        assert f'spoc_queue_depth{{queue="{name}"}}' in text
    labels = set(re.findall(r"[{,]([a-z_]+)=", text))
    assert labels <= {"state", "queue", "kind", "endpoint"}


def test_an_empty_snapshot_has_zero_ages() -> None:
    empty = Snapshot(
        at=utcnow(), messages={}, overdue=0, queues={}, audit_pending=0, checkpoint=None, alerts={}
    )
    names = {family.name for family in families(empty)}
    assert "spoc_audit_checkpoint_age_seconds" in names  # declared even before the first checkpoint
    assert all(
        sample.value == 0 for family in families(empty) for sample in family.samples if "age" in sample.name
    )
