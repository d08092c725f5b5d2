"""A region of in-process nodes for the witness tests: each node its own PostgreSQL database, keys and app,
joined by one signed regional directory (as in tests/broker/hop/test_hop_two_nodes.py), plus one *external*
log listed in the directory whose keys the test makes with the ``cryptography`` library alone (the interop
client of tests/broker/witness/test_witness_interop.py).

The databases are copies of one migrated template (``CREATE DATABASE … TEMPLATE``): migrating once keeps the
fixture to seconds.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broker.audit.service import SYSTEM
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from broker.directory.seed import seed_region
from broker.keys.service import DatabaseKeyStore
from broker.migrate import upgrade
from broker.region.service import install
from broker.region.sync import node_entry
from tests.broker.region.region_builders import draft, signed
from tests.conftest import PG_ADMIN

EXTERNAL_ORIGIN = "spoc/ext/audit-log"


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def vkey(name: str, sig_type: int, public: bytes) -> str:
    """A C2SP signed-note verifier key, written from the spec (https://c2sp.org/signed-note)."""
    key_id = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(bytes([sig_type]) + public).decode()}"


@dataclass
class External:
    """A log outside spoc, listed in the directory: its log key is a raw ``cryptography`` Ed25519 key."""

    log_key: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        return self.log_key.public_key().public_bytes_raw()

    def entry(self) -> dict[str, Any]:
        def okp(crv: str, x: bytes, use: str) -> dict[str, Any]:
            return {"kty": "OKP", "crv": crv, "x": b64u(x), "use": use}

        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        sig = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        enc = X25519PrivateKey.generate().public_key().public_bytes_raw()
        transport = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        witness = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        return {
            "node_id": "ext",
            "base_url": "http://ext.node.test",
            "contact_points": [
                {
                    "id": "ME-SPOC",
                    "country": "ME",
                    "name": "Montenegro (an external log)",
                    "signing_keys": [okp("Ed25519", sig, "sig")],
                    "encryption_keys": [okp("X25519", enc, "enc")],
                }
            ],
            "transport_keys": [okp("Ed25519", transport, "sig")],
            "log_key": vkey(EXTERNAL_ORIGIN, 0x01, self.public),
            "witness_key": vkey("spoc/witness/ext", 0x04, witness),
        }


@dataclass
class Node:
    country: str
    node_id: str
    url: str
    settings: Settings
    client: TestClient
    engine: Engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.client.app.state.sessionmaker  # type: ignore[attr-defined,no-any-return]

    @contextmanager
    def session(self) -> Iterator[Session]:
        with unit_of_work(self.sessions) as session:
            yield session

    def keys(self, session: Session) -> DatabaseKeyStore:
        return DatabaseKeyStore(session, self.client.app.state.master_key)  # type: ignore[attr-defined]


@dataclass
class Region:
    nodes: dict[str, Node]
    external: External
    directory: dict[str, Any]
    anchor: Path

    def network(self) -> httpx.Client:
        """Each node's base URL reaches that node's app, and nothing else; the external log's node is down."""

        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        mounts: dict[str, httpx.BaseTransport] = {n.url: n.client._transport for n in self.nodes.values()}
        return httpx.Client(mounts={**mounts, "http://ext.node.test": httpx.MockTransport(down)})


@contextmanager
def region_of(countries: list[str], folder: Path) -> Iterator[Region]:
    governance = KeyPair.generate("sig")
    anchor = folder / "anchor.jwks.json"
    anchor.write_text(orjson.dumps({"keys": [governance.public.jwk]}).decode())
    tag = uuid.uuid4().hex[:8]
    template = f"spoc_wtpl_{tag}"
    names = {c: f"spoc_wit_{c.lower()}_{tag}" for c in countries}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{template}"')
    base = Settings(
        environment="test",
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{template}",
        data_dir=folder,
    )
    upgrade(base)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    made: dict[str, tuple[Settings, dict[str, Any]]] = {}
    for country, name in names.items():
        settings = Settings(
            environment="test",
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            master_key=SecretStr(MasterKey.generate_secret()),
            data_dir=Path(folder / country),
            region_anchor=anchor,
        )
        engine = make_engine(settings)
        master = MasterKey.from_secret(settings.master_key_secret())
        with unit_of_work(make_sessionmaker(engine)) as session:
            seed_region(session, master, data_dir=None, countries={country})
            entry = node_entry(
                session,
                DatabaseKeyStore(session, master),
                master,
                node_id=country.lower(),
                base_url=f"http://{country.lower()}.node.test",
            )
        engine.dispose()
        made[country] = (settings, entry)
    external = External(Ed25519PrivateKey.generate())
    directory = signed(draft([*(e for _, e in made.values()), external.entry()], agreements=[]), governance)
    nodes: dict[str, Node] = {}
    from contact_points.app import create_app

    try:
        for country, (settings, entry) in made.items():
            app = create_app(settings)
            with unit_of_work(app.state.sessionmaker) as session:
                install(session, directory, anchor=[governance.public], now=utcnow(), actor=SYSTEM)
            client = TestClient(app, base_url=entry["base_url"])
            client.__enter__()
            nodes[country] = Node(
                country, entry["node_id"], entry["base_url"], settings, client, app.state.engine
            )
        yield Region(nodes, external, directory, anchor)
    finally:
        for node in nodes.values():
            node.client.__exit__(None, None, None)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in [*names.values(), template]:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
