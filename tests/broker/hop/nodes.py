"""Two nodes for the hop's tests: AL's and XK's, each its own PostgreSQL database, keys and app, joined by one
signed regional directory; reached over HTTP through their ASGI transports (``peers``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from broker.audit.service import SYSTEM
from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from broker.directory.seed import SeedResult, seed_region
from broker.hop.outbound import hop_all_due
from broker.keys.service import DatabaseKeyStore
from broker.messages.work import drain
from broker.migrate import upgrade
from broker.region.service import install
from broker.region.sync import node_entry
from tests.broker.region.region_builders import draft, signed
from tests.conftest import PG_ADMIN

URLS = {"AL": "http://al.node.test", "XK": "http://xk.node.test"}


@dataclass
class Node:
    country: str
    settings: Settings
    seed: SeedResult
    client: TestClient
    engine: Engine

    def agency(self, agency_id: str) -> AgencyClient:
        return AgencyClient(
            URLS[self.country], self.seed.agencies[agency_id], transport=self.client._transport
        )

    def officer(self, username: str) -> OfficerClient:
        password = self.seed.accounts[username].password
        return OfficerClient(URLS[self.country], username, password, transport=self.client._transport)

    def drain(self, peers: httpx.Client) -> dict[str, int]:
        """Run the outbox in-process (what a worker does), then send every due hop over ``peers``."""
        state = self.client.app.state  # type: ignore[attr-defined]
        with unit_of_work(state.sessionmaker) as session:
            drain(session, DatabaseKeyStore(session, state.master_key))
        return hop_all_due(state.sessionmaker, state.master_key, self.settings, peers)

    def count(self, query: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)


def make_region_of_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    from contact_points.app import create_app

    governance = KeyPair.generate("sig")
    folder = tmp_path_factory.mktemp("two-nodes")
    anchor = folder / "anchor.jwks.json"
    anchor.write_text(orjson.dumps({"keys": [governance.public.jwk]}).decode())
    names = {c: f"spoc_node_{c.lower()}_{uuid.uuid4().hex[:8]}" for c in URLS}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    made: dict[str, tuple[Settings, SeedResult, dict[str, Any]]] = {}
    for country, name in names.items():
        settings = Settings(
            environment="test",
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            master_key=SecretStr(MasterKey.generate_secret()),
            data_dir=Path(folder / country),
            region_anchor=anchor,
            push_backoff_base_seconds=60,  # a failed hop is not due again within a test unless made due
        )
        upgrade(settings)
        engine = make_engine(settings)
        master = MasterKey.from_secret(settings.master_key_secret())
        with unit_of_work(make_sessionmaker(engine)) as session:
            seed = seed_region(session, master, data_dir=None, countries={country})
            entry = node_entry(
                session,
                DatabaseKeyStore(session, master),
                master,
                node_id=country.lower(),
                base_url=URLS[country],
            )
        engine.dispose()
        made[country] = (settings, seed, entry)
    agreement = {
        "reference": "AL-XK police cooperation 2024",
        "countries": ["AL", "XK"],
        "categories": ["drug-trafficking", "migrant-smuggling"],
        "max_classification": "CONFIDENTIAL",
        "valid_from": "2024-01-01T00:00:00Z",
    }
    directory = signed(draft([made["AL"][2], made["XK"][2]], agreements=[agreement]), governance)
    nodes: dict[str, Node] = {}
    clients = []
    for country, (settings, seed, _) in made.items():
        app = create_app(settings)
        with unit_of_work(app.state.sessionmaker) as session:
            install(session, directory, anchor=[governance.public], now=utcnow(), actor=SYSTEM)
        client = TestClient(app, base_url=URLS[country])
        client.__enter__()
        clients.append(client)
        nodes[country] = Node(country, settings, seed, client, app.state.engine)
    yield nodes
    for client in clients:
        client.__exit__(None, None, None)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peers(nodes: dict[str, Node]) -> httpx.Client:
    """The network between the nodes: each node's base URL reaches that node's app, and nothing else."""
    return httpx.Client(mounts={URLS[c]: n.client._transport for c, n in nodes.items()})
