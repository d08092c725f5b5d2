"""The audit beat tasks, run in-process on the test database: checkpoints at an interval, witnesses cosign."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from broker.audit.actions import AuditAction
from broker.audit.models import AuditCheckpoint, AuditCosignature
from broker.audit.service import SYSTEM, record
from broker.audit.tree import StoredTree
from broker.db import unit_of_work


@pytest.mark.usefixtures("worker_env")
def test_the_beat_signs_checkpoints_and_the_witnesses_cosign_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.audit_tasks import checkpoint, witness
    from workers.celery_app import app
    from workers.runtime import runtime

    # The witness task that a new checkpoint sends runs in-process, as the worker would run it.
    monkeypatch.setitem(app.conf, "task_always_eager", True)

    schedule = app.conf.beat_schedule
    assert schedule["audit-checkpoint"]["task"] == "spoc.audit.checkpoint"
    assert schedule["audit-witness"]["task"] == "spoc.audit.witness"
    assert {"spoc.audit.checkpoint", "spoc.audit.witness"} <= set(app.tasks)
    # Between nodes (broker.witness): submission to the peers' witnesses, and gossip between witnesses.
    assert schedule["witness-submit"]["task"] == "spoc.witness.submit"
    assert schedule["witness-gossip"]["task"] == "spoc.witness.gossip"
    assert {"spoc.witness.submit", "spoc.witness.gossip"} <= set(app.tasks)

    with unit_of_work(runtime().sessionmaker) as session:
        record(session, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED, object_type="message", object_id="b")
    signed = checkpoint.run()
    assert signed is not None
    with unit_of_work(runtime().sessionmaker) as session:
        row = session.get(AuditCheckpoint, signed)
        assert row is not None
        assert row.size == StoredTree(session).size()  # every sequenced entry is covered
    with unit_of_work(runtime().sessionmaker) as session:  # the new checkpoint sent the witness task
        count = session.scalar(
            select(func.count()).select_from(AuditCosignature).where(AuditCosignature.checkpoint_id == signed)
        )
    assert count == 8  # one witness per contact point of the region
    assert checkpoint.run() == signed  # the log did not grow: no new checkpoint

    outcome = witness.run()
    assert not any(k.startswith("alert-") for k in outcome)  # no fork, no inconsistency
    assert len(outcome) == 8
    assert set(outcome.values()) == {"already"}  # idempotent: each witness cosigned this tree once
