"""Retention on the embedded default (SQLite), which ``make run`` uses: the same set-based deletion (SQLite's
``json_remove`` where PostgreSQL has ``jsonb`` operators), holds, the sweep and a verifying log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, event, func, select
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


def test_deleted_content_is_not_left_in_the_sqlite_files(tmp_path: Path) -> None:
    """Irrevocably: after the sweep, neither the database file nor its journal holds the payload's ciphertext
    or the free text, in free pages or anywhere, even with SQLite built with upstream's default
    (``secure_delete`` off; Debian's build turns it on, which would hide the leak here)."""
    from contact_points.app import create_app

    def upstream_default(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA secure_delete=OFF")

    event.listen(Engine, "connect", upstream_default, insert=True)
    try:
        settings = Settings(
            data_dir=tmp_path, master_key=SecretStr(MasterKey.generate_secret()), environment="test"
        )
        seeded = prepare(settings)
        assert seeded is not None
        explanation = "Vranjesevic-urgency: the courier crosses at Qafe Thane tonight"
        purpose = "Vranjesevic-purpose: joint investigation team with Podgorica"
        with TestClient(create_app(settings)) as client:
            x = answered_exchange(
                client,
                Region(seeded, tmp_path),
                payload=person_content("Known addresses."),
                priority={
                    "level": "urgent",
                    "urgency_reason": "threat-to-life-or-physical-integrity",
                    "urgency_explanation": explanation,
                    "information_access": "indirect",
                },
                purpose=purpose,
            )
            with committed(client) as session:
                needles = [explanation, purpose]
                for m in session.scalars(select(Message).where(Message.conversation_id == x.conversation_id)):
                    needles += [m.envelope["payload"]["ciphertext"], m.envelope["payload"]["iv"]]
            backdate(client, x.conversation_id, 4 * 365)
            assert run_sweep(client) == [x.conversation_id]
    finally:
        event.remove(Engine, "connect", upstream_default)
    files = {f.name: f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("spoc.db")}
    assert "spoc.db" in files
    left = [
        (name, needle[:24]) for name, data in files.items() for needle in needles if needle.encode() in data
    ]
    assert not left, f"still stored after deletion: {left}"
