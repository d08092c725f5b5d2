"""Real objects for tests: agency and officer clients bound to the in-process app or a live URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.directory.seed import SeedResult


@dataclass(frozen=True)
class Region:
    seed: SeedResult
    data_dir: Path

    def password(self, username: str) -> str:
        return self.seed.accounts[username].password


def agency_client(
    region: Region, agency_id: str, client: TestClient | None = None, url: str = "http://testserver"
) -> AgencyClient:
    creds = region.seed.agencies[agency_id]
    transport = client._transport if client is not None else None
    return AgencyClient(url, creds, transport=transport)


def officer_client(
    region: Region, username: str, client: TestClient | None = None, url: str = "http://testserver"
) -> OfficerClient:
    transport = client._transport if client is not None else None
    return OfficerClient(url, username, region.password(username), transport=transport)


def drain(client: TestClient) -> int:
    """Run the outbox in-process (what a worker does), committing like a worker task."""
    from broker.db import unit_of_work
    from broker.keys.service import DatabaseKeyStore
    from broker.messages.work import drain as drain_outbox

    state = client.app.state  # type: ignore[attr-defined]
    with unit_of_work(state.sessionmaker) as session:
        return drain_outbox(session, DatabaseKeyStore(session, state.master_key))


def deliver_request(
    client: TestClient,
    region: Region,
    *,
    sender: str,
    target: str,
    payload: bytes = b'{"q": 1}',
    **build: object,
) -> tuple[str, dict[str, Any]]:
    """Submit a request from ``sender`` to agency ``target`` and take it through both contact points to the
    target's inbox. Returns (message id, inbox item)."""
    origin, destination = sender.split("-", 1)[0], target.split("-", 1)[0]
    asker = agency_client(region, sender, client)
    envelope = asker.build(payload=payload, destination_country=destination, **build)  # type: ignore[arg-type]
    message_id = asker.submit(envelope)["message_id"]
    officer_client(region, f"{origin.lower()}-officer", client).decide(message_id, "approve")
    drain(client)
    officer_client(region, f"{destination.lower()}-officer", client).decide(
        message_id, "route", route_to_agency=target
    )
    drain(client)
    item = next(i for i in agency_client(region, target, client).inbox_all() if i["message_id"] == message_id)
    return message_id, item
