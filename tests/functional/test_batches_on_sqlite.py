"""Batch intake and bulk decisions on the embedded default (SQLite), which ``make run`` uses: the same
no-autoflush batch and per-decision savepoints must hold there too."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from broker.bench.load import build_envelopes, credentials
from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.launcher import prepare


def test_a_batch_and_a_page_of_decisions_on_sqlite(tmp_path: Path) -> None:
    from contact_points.app import create_app

    settings = Settings(
        data_dir=tmp_path, master_key=SecretStr(MasterKey.generate_secret()), environment="test"
    )
    assert settings.is_sqlite
    prepare(settings)
    with TestClient(create_app(settings)) as http:
        built = build_envelopes("http://testserver", tmp_path, 24, transport=http._transport)
        mine = [envelope for sender, envelope in built if sender == "AL-ASP"]
        with AgencyClient(
            "http://testserver", credentials(tmp_path, "AL-ASP"), transport=http._transport
        ) as agency:
            answer = agency.submit_batch([*mine, mine[0]])
        assert [r["status"] for r in answer["results"]] == [202] * len(mine) + [409]

        accounts = json.loads((tmp_path / "demo-accounts.json").read_text())
        password = accounts["al-officer"]["password"]
        with OfficerClient("http://testserver", "al-officer", password, transport=http._transport) as officer:
            queued = [item["message_id"] for item in officer.queue("outbound")]
            assert sorted(queued) == sorted(e["header"]["message_id"] for e in mine)
            decided = officer.decide_many([(m, {"action": "approve"}) for m in [*queued, queued[0]]])
            assert [r["status"] for r in decided["results"]] == [200] * len(queued) + [409]
            assert officer.queue("outbound") == []
