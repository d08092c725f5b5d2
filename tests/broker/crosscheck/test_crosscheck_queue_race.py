"""The cross-check queue under concurrency, on real connections (committed, cleaned up after): a custody step
committed while a batch decides that a message has nothing left to scan keeps that message queued.

Without the ``requeued`` counter the custody trigger's insert found the row still queued and did nothing, the
batch (which could not see the uncommitted step) deleted the row, and the destination's scan was lost."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import Engine, delete, select

from broker.config import Settings
from broker.crosscheck.models import CrosscheckPending, CrosscheckScan
from broker.crosscheck.service import _settle
from broker.crypto import MasterKey
from broker.db import make_sessionmaker, new_row, unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import CustodyStep
from tests.broker.messages.spoc_builders import submit_as
from tests.factories import Region


def test_a_custody_step_committed_during_a_settle_keeps_the_message_queued(
    engine: Engine, region: Region, settings: Settings
) -> None:
    factory = make_sessionmaker(engine)
    with unit_of_work(factory) as session:
        keys = DatabaseKeyStore(session, MasterKey.from_secret(settings.master_key_secret()))
        message = submit_as(
            session, keys, region, "AL-ASP", destination_country="ME", payload=f"race {uuid.uuid4()}".encode()
        )
        message_id = message.id
        # The origin has scanned it: only the destination's arrival can make it due again.
        session.add(new_row(CrosscheckScan, contact_point_id="AL-SPOC", message_id=message_id, outcome="text",
                            selectors=0, scanned_at=message.received_at))  # fmt: skip
    try:
        with unit_of_work(factory) as session:
            seen = session.scalar(
                select(CrosscheckPending.requeued).where(CrosscheckPending.message_id == message_id)
            )
        assert seen == 0

        arrival = factory()  # the destination countersigns the arrival; not committed yet
        arrival.add(new_row(CustodyStep, message_id=message_id, seq=1, party="ME-SPOC", actor="ME-SPOC",
                            decision="received", to_state="destination_review", signature="test"))  # fmt: skip
        arrival.flush()  # the trigger ran: the queue row is locked until this commits

        def batch() -> None:
            with unit_of_work(factory) as session:
                _settle(session, ["AL-SPOC", "ME-SPOC"], {message_id: seen})  # sees no due pair: deletes

        settling = threading.Thread(target=batch)
        settling.start()
        time.sleep(0.5)  # the batch's DELETE now waits for the arrival's lock
        arrival.commit()
        arrival.close()
        settling.join(timeout=30)
        assert not settling.is_alive()
        with unit_of_work(factory) as session:
            row = session.scalar(select(CrosscheckPending).where(CrosscheckPending.message_id == message_id))
            assert row is not None  # still queued: the destination's scan is due
            assert row.requeued == 1
    finally:
        with unit_of_work(factory) as session:
            session.execute(delete(CrosscheckPending).where(CrosscheckPending.message_id == message_id))
            session.execute(delete(CrosscheckScan).where(CrosscheckScan.message_id == message_id))
