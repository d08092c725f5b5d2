"""Over HTTP: content claiming the structured format is checked at the agency's node (refused naming the
field, audited); unstructured content still passes; and after a run no table holds a selector in clear."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from broker.audit.models import AuditEntry
from broker.client.agency import AgencyClient, ClientError
from broker.client.officer import OfficerClient
from broker.crosscheck.normalise import fold, normal_number
from broker.models import Base
from tests.broker.crosscheck.scenario import two_countries_ask
from tests.broker.messages.spoc_builders import committed
from tests.factories import Region, agency_client, officer_client


def _send(client: TestClient, region: Region, payload: bytes) -> dict[str, Any]:
    with agency_client(region, "RS-MUP", client) as asker:
        envelope = asker.build(payload=payload, destination_country="MK", category="fraud")
        try:
            return asker.submit(envelope)
        except ClientError as exc:
            return {"status": exc.status, **exc.problem}


def test_structured_content_that_does_not_fit_is_refused_naming_the_field(
    client: TestClient, region: Region
) -> None:
    bad_iban = {
        "format": "spoc-content/1",
        "bank_accounts": [{"iban": "RS35 2600 0560 1001 6113 78"}],  # one digit wrong
    }
    refused = _send(client, region, json.dumps(bad_iban).encode())
    assert refused["status"] == 422
    assert refused["type"] == "urn:spoc:problem:policy-refused"
    assert refused["reason"] == "content-schema"
    assert refused["errors"][0]["loc"] == ["content", "bank_accounts", "0", "iban"]
    assert "bank_accounts.0.iban" in refused["detail"]

    misspelt = {"format": "spoc-content/1", "persons": [{"full_name": "Ana Ilić", "birth_year": 1990}]}
    refused = _send(client, region, json.dumps(misspelt).encode())
    assert refused["errors"][0]["loc"] == ["content", "persons", "0", "birth_year"]
    assert refused["errors"][0]["type"] == "extra_forbidden"

    unknown_version = {"format": "spoc-content/9", "text": "?"}
    assert _send(client, region, json.dumps(unknown_version).encode())["errors"][0]["loc"] == [
        "content",
        "format",
    ]

    with committed(client) as session:
        audited = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "message:refused-at-intake", AuditEntry.object_id == "RS-MUP"
            )
        ).all()
        assert any(e.details.get("reason") == "content-schema" for e in audited)


def test_unstructured_content_still_passes(client: TestClient, region: Region) -> None:
    for payload in (b"Who owns the van BG 123-AB?", json.dumps({"q": "free JSON", "format": "pdf"}).encode()):
        assert "message_id" in _send(client, region, payload)


def test_no_table_holds_a_selector_in_clear(client: TestClient, region: Region) -> None:
    with contextlib.ExitStack() as stack:
        state = client.app.state  # type: ignore[attr-defined]

        def agency(agency_id: str) -> AgencyClient:
            return stack.enter_context(agency_client(region, agency_id, client))

        def officer(username: str) -> OfficerClient:
            return stack.enter_context(officer_client(region, username, client))

        two_countries_ask(
            agency,
            officer,
            state.sessionmaker,
            state.master_key,
            latin=("Vukašin", "Brankovićević"),
            cyrillic=("Вукашин", "Бранковићевић"),
            year=1961,
            secret_detail="Brankovicevic-secret",
        )
    clear = ["Vukašin", "Вукашин", "Brankovićević", "Бранковићевић", "Brankovicevic", "Vukasin"]
    normalised = [fold("Brankovićević Vukašin"), "brankovicevic", "vukasin", "BG123AB", "BG 123-AB"]
    numbers = [
        "+38267123456",
        "+382 67 123 456",
        "38267123456",
        "012345678",
        normal_number("AL/ASP/2026/0412"),
    ]
    needles = [n.lower() for n in clear + normalised + numbers]
    with committed(client) as session:
        assert session.scalar(text("SELECT count(*) FROM crosscheck_selectors")) > 0
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                flat = " ".join(str(v) for v in row).lower()
                found = [n for n in needles if n in flat]
                assert not found, f"{table.name} holds {found}"
