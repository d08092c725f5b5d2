"""Retention on the embedded default (SQLite), which ``make run`` uses: the same set-based deletion (SQLite's
``json_remove`` where PostgreSQL has ``jsonb`` operators), holds, the sweep and a verifying log."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from typer.testing import CliRunner

from broker.audit.service import sequence_all, verify_log
from broker.cli import app as cli
from broker.config import Settings, get_settings
from broker.crosscheck.models import SelectorHash
from broker.crypto import MasterKey
from broker.launcher import prepare
from broker.messages.models import Message
from tests.broker.retention.scenario import (
    answered_exchange,
    backdate,
    committed,
    cross_check,
    person_content,
    run_sweep,
)
from tests.factories import Region, officer_client


def test_retention_on_sqlite(tmp_path: Path) -> None:
    from contact_points.app import create_app

    settings = Settings(
        data_dir=tmp_path, master_key=SecretStr(MasterKey.generate_secret()), environment="test"
    )
    assert settings.is_sqlite
    seeded = prepare(settings)
    assert seeded is not None
    region = Region(seeded, tmp_path)
    with TestClient(create_app(settings)) as client:
        held = answered_exchange(client, region, payload=person_content("Known addresses."))
        swept = answered_exchange(client, region, payload=person_content("Known vehicles."))
        cross_check(client)
        with officer_client(region, "mk-officer", client) as mk:
            mk._call("POST", f"/v1/retention/{held.conversation_id}/hold", json={"reason": "appeal pending"})
        for x in (held, swept):
            backdate(client, x.conversation_id, 4 * 365)

        assert run_sweep(client) == [swept.conversation_id]
        with committed(client) as session:
            for m in session.scalars(select(Message).where(Message.conversation_id == swept.conversation_id)):
                assert set(m.envelope) == {"spoc", "header"}
                assert "urgency_explanation" not in m.envelope["header"]["priority"]
                assert m.content_deletion == "period"
            ids = [swept.request_id, swept.answer_id]
            assert session.scalar(select(func.count()).where(SelectorHash.message_id.in_(ids))) == 0
            kept = session.get(Message, held.request_id)
            assert kept is not None
            assert "payload" in kept.envelope
            sequence_all(session)
            report = verify_log(session)
        assert report.ok, report.line()

    # The command line, on the same node: the held exchange waits for review; nothing else is due.
    get_settings.cache_clear()
    env = {"SPOC_DATA_DIR": str(tmp_path), "SPOC_MASTER_KEY": settings.master_key_secret()}
    listed = CliRunner().invoke(cli, ["retention", "queue"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"{held.conversation_id}  ended" in listed.output
    assert "HELD" in listed.output
    assert swept.conversation_id not in listed.output, "its content is gone: nothing to review"
    done = CliRunner().invoke(cli, ["retention", "sweep"], env=env)
    assert done.exit_code == 0, done.output
    assert "content deleted: 0 exchanges, 0 messages" in done.output
