"""The signed regional directory on a node of one country (AL): installed over HTTP by an admin, refused (and
audited) when it is unsigned, signed by another key, tampered with, expired, older than the installed one, a
fork of it, or does not list the node's own keys; once installed, the node knows the other contact points by
their public keys only, and the agreements."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, delete, func, select

from broker.audit.models import AuditEntry
from broker.config import Settings
from broker.crypto import KeyPair, MasterKey
from broker.db import make_engine, make_sessionmaker, unit_of_work
from broker.directory.models import Agreement, ContactPoint, Country
from broker.directory.seed import SeedResult, seed_region
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore
from broker.migrate import upgrade
from broker.region.models import InstalledDirectory
from broker.region.sync import node_entry
from tests.broker.region.region_builders import NodeKeys, draft, nodes, signed
from tests.conftest import PG_ADMIN


@dataclass
class Node:
    client: TestClient
    engine: Engine
    entry: dict[str, Any]
    seed: SeedResult

    def login(self, username: str) -> dict[str, str]:
        password = self.seed.accounts[username].password
        answer = self.client.post("/v1/auth/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    def members(self, *others: str) -> list[NodeKeys | dict[str, Any]]:
        return [self.entry, *nodes(*others)]


@pytest.fixture(scope="module")
def al_database(pg_url: str) -> Iterator[str]:
    """A database of its own: the node of one country, AL, seeded with AL's part of the demo region only."""
    name = f"spoc_node_al_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def al_settings(al_database: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("al-node")
    return Settings(
        environment="test",
        database_url=al_database,
        master_key=SecretStr(MasterKey.generate_secret()),
        data_dir=folder,
        region_anchor=folder / "anchor.jwks.json",
    )


@pytest.fixture(scope="module")
def al_seed(al_settings: Settings) -> tuple[SeedResult, dict[str, Any]]:
    upgrade(al_settings)
    engine = make_engine(al_settings)
    master = MasterKey.from_secret(al_settings.master_key_secret())
    with unit_of_work(make_sessionmaker(engine)) as session:
        seed = seed_region(session, master, data_dir=None, countries={"AL"})
        entry = node_entry(
            session, DatabaseKeyStore(session, master), master, node_id="al", base_url="http://127.0.0.1:8000"
        )
    engine.dispose()
    return seed, entry


@pytest.fixture
def governance() -> KeyPair:
    return KeyPair.generate("sig")


@pytest.fixture
def node(
    al_settings: Settings, al_seed: tuple[SeedResult, dict[str, Any]], governance: KeyPair
) -> Iterator[Node]:
    """The AL node trusting ``governance``, with no directory installed (what a test installed is undone)."""
    from contact_points.app import create_app

    assert al_settings.region_anchor is not None
    al_settings.region_anchor.write_text(json.dumps({"keys": [governance.public.jwk]}))
    app = create_app(al_settings)
    engine: Engine = app.state.engine
    with engine.begin() as conn:
        conn.execute(delete(InstalledDirectory))
        conn.execute(delete(Agreement))
        conn.execute(
            delete(PartyKey).where(PartyKey.private_sealed.is_(None), PartyKey.party_id.like("%-SPOC"))
        )
        conn.execute(delete(ContactPoint).where(ContactPoint.country != "AL"))
        conn.execute(delete(Country).where(Country.code != "AL"))
    with engine.connect() as conn:
        agency_key = conn.scalar(
            select(PartyKey.public_jwk).where(PartyKey.party_id == "AL-ASP", PartyKey.use == "sig").limit(1)
        )
    assert agency_key is not None
    AL_AGENCY_KEY[:] = [agency_key]
    with TestClient(app) as client:
        yield Node(client, engine, al_seed[1], al_seed[0])


def _refusals(engine: Engine) -> int:
    query = (
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "region:directory-refused")
    )
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)


def _installed(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(InstalledDirectory.version).order_by(InstalledDirectory.version)))


def test_an_admin_installs_a_directory_and_any_peer_reads_it_back_as_signed(
    node: Node, governance: KeyPair
) -> None:
    admin = node.login("admin")
    assert node.client.get("/v1/region/directory").status_code == 404
    document = signed(draft(node.members("XK", "MK")), governance)

    first = node.client.post("/v1/region/directory", json=document, headers=admin)
    assert first.status_code == 200, first.text
    assert first.json()["installed"] is True
    assert first.json()["version"] == 1
    again = node.client.post("/v1/region/directory", json=document, headers=admin)
    assert again.json()["installed"] is False  # refreshing with the same document is a no-op

    served = node.client.get("/v1/region/directory")  # no credentials: public keys only, and signed
    assert served.status_code == 200
    assert served.json() == document
    assert _installed(node.engine) == [1]


def test_the_node_learns_the_other_contact_points_by_their_public_keys_and_the_agreements(
    node: Node, governance: KeyPair
) -> None:
    xk, mk = nodes("XK", "MK")
    document = draft([node.entry, xk, mk])
    assert node.client.get("/v1/directory/parties/XK-SPOC/jwks").status_code == 404
    answer = node.client.post(
        "/v1/region/directory", json=signed(document, governance), headers=node.login("admin")
    )
    assert answer.status_code == 200, answer.text

    jwks = node.client.get("/v1/directory/parties/XK-SPOC/jwks").json()["keys"]
    assert {k["x"] for k in jwks} == {xk.signing.public.jwk["x"], xk.encryption.public.jwk["x"]}
    countries = {c["code"]: c["contact_point"] for c in node.client.get("/v1/directory/countries").json()}
    assert countries == {"AL": "AL-SPOC", "XK": "XK-SPOC", "MK": "MK-SPOC"}
    with node.engine.connect() as conn:
        held = set(conn.scalars(select(PartyKey.party_id).where(PartyKey.private_sealed.is_not(None))))
        agreements = list(conn.scalars(select(Agreement.reference).where(Agreement.active.is_(True))))
    assert held == {"AL-SPOC", "spoc-log", "spoc-node", "spoc-witness"}  # no other country's private key
    assert agreements == ["AL-XK police cooperation 2024"]

    # Version 2 rotates XK's signing key and withdraws the agreement: the old key retires, the basis goes.
    rotated = NodeKeys("xk", "XK", "XK-SPOC", xk.url, encryption=xk.encryption)
    document2 = draft([node.entry, rotated, mk], version=2, agreements=[])
    answer = node.client.post(
        "/v1/region/directory", json=signed(document2, governance), headers=node.login("admin")
    )
    assert answer.status_code == 200, answer.text
    with node.engine.connect() as conn:
        statuses = dict(
            conn.execute(select(PartyKey.kid, PartyKey.status).where(PartyKey.party_id == "XK-SPOC")).all()
        )
        active = list(conn.scalars(select(Agreement.reference).where(Agreement.active.is_(True))))
    assert statuses == {
        xk.signing.kid: "retired",
        rotated.signing.kid: "active",
        xk.encryption.kid: "active",
    }
    assert active == []


def test_only_an_admin_installs(node: Node, governance: KeyPair) -> None:
    officer = node.login("al-officer")
    document = signed(draft(node.members("XK")), governance)
    assert node.client.post("/v1/region/directory", json=document, headers=officer).status_code == 403
    assert _installed(node.engine) == []


def _tampered(entry: dict[str, Any], governance: KeyPair) -> dict[str, Any]:
    document = signed(draft([entry, *nodes("XK")]), governance)
    document["directory"]["nodes"][1]["base_url"] = "http://127.0.0.1:9999"
    return document


def _enc_key_as_transport_key(entry: dict[str, Any]) -> dict[str, Any]:
    document = draft([entry, *nodes("XK")])
    document["nodes"][1]["transport_keys"] = [KeyPair.generate("enc").public.jwk]
    return document


def _without_our_keys(governance: KeyPair) -> dict[str, Any]:
    """AL listed with keys this node does not hold: peers would be told to trust an impostor."""
    return signed(draft(nodes("AL", "XK")), governance)


def _extra_key_for_us(entry: dict[str, Any]) -> dict[str, Any]:
    """AL listed with its own keys and one more signing key it does not hold."""
    ours = {**entry, "contact_points": [dict(entry["contact_points"][0])]}
    ours["contact_points"][0]["signing_keys"] = [
        *ours["contact_points"][0]["signing_keys"],
        KeyPair.generate("sig").public.jwk,
    ]
    return draft([ours, *nodes("XK")])


def _agency_key_as_theirs(entry: dict[str, Any]) -> dict[str, Any]:
    """XK's contact point listed with the public key of an AL agency this node knows."""
    document = draft([entry, *nodes("XK")])
    document["nodes"][1]["contact_points"][0]["signing_keys"] = [AL_AGENCY_KEY[0]]
    return document


def _misnamed(entry: dict[str, Any]) -> dict[str, Any]:
    document = draft([entry, *nodes("XK")])
    document["nodes"][1]["contact_points"][0]["id"] = "AL-ASP"  # XK's contact point under an AL agency's name
    return document


def _key_twice(entry: dict[str, Any]) -> dict[str, Any]:
    document = draft([entry, *nodes("XK")])
    document["nodes"][1]["transport_keys"] = document["nodes"][1]["contact_points"][0]["signing_keys"]
    return document


AL_AGENCY_KEY: list[dict[str, Any]] = []  # filled by the `node` fixture: AL-ASP's registered public key


Make = Callable[[dict[str, Any], KeyPair], dict[str, Any]]
NOW = datetime.now(UTC)
REFUSED: dict[str, tuple[Make, int, str | None]] = {
    "signed by a key that is not the anchor": (
        lambda e, g: signed(draft([e, *nodes("XK")]), KeyPair.generate("sig")),
        422,
        "directory-signature",
    ),
    "changed after it was signed": (_tampered, 422, "directory-signature"),
    "expired": (
        lambda e, g: signed(draft([e, *nodes("XK")], issued_at=NOW - timedelta(days=40)), g),
        422,
        "directory-expired",
    ),
    "issued in the future": (
        lambda e, g: signed(draft([e, *nodes("XK")], issued_at=NOW + timedelta(hours=2)), g),
        422,
        "directory-not-yet-valid",
    ),
    "unsigned": (lambda e, g: {"directory": draft([e, *nodes("XK")])}, 400, None),
    "a node's key of the wrong kind": (lambda e, g: signed(_enc_key_as_transport_key(e), g), 400, None),
    "without this node's own keys": (lambda e, g: _without_our_keys(g), 422, "directory-own-keys"),
    "an extra signing key listed for this node's contact point": (
        lambda e, g: signed(_extra_key_for_us(e), g),
        422,
        "directory-own-keys",
    ),
    "a local agency's key listed as another contact point's": (
        lambda e, g: signed(_agency_key_as_theirs(e), g),
        422,
        "directory-key-conflict",
    ),
    "a contact point not named for its country": (lambda e, g: signed(_misnamed(e), g), 400, None),
    "one key listed twice": (lambda e, g: signed(_key_twice(e), g), 400, None),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_directory_is_refused_with_its_reason_audited_and_not_installed(
    case: str, node: Node, governance: KeyPair
) -> None:
    make, status, reason = REFUSED[case]
    before = _refusals(node.engine)
    answer = node.client.post(
        "/v1/region/directory", json=make(node.entry, governance), headers=node.login("admin")
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if reason is not None:
        assert answer.json()["reason"] == reason
    elif case == "a node's key of the wrong kind":
        assert "transport_keys: a enc key where a sig key belongs" in answer.json()["detail"]
    assert _installed(node.engine) == []
    assert _refusals(node.engine) == before + 1
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ContactPoint)) == 1  # nothing learnt


def test_the_version_never_goes_back_and_one_version_is_one_document(node: Node, governance: KeyPair) -> None:
    admin = node.login("admin")
    members = node.members("XK", "MK")
    v1, v2 = signed(draft(members, version=1), governance), signed(draft(members, version=2), governance)
    assert node.client.post("/v1/region/directory", json=v2, headers=admin).status_code == 200

    stale = node.client.post("/v1/region/directory", json=v1, headers=admin)
    assert (stale.status_code, stale.json()["reason"]) == (422, "directory-stale")

    fork = signed(draft(members[:2], version=2), governance)  # same version, MK dropped: a second history
    forked = node.client.post("/v1/region/directory", json=fork, headers=admin)
    assert (forked.status_code, forked.json()["reason"]) == (422, "directory-fork")

    other = signed(draft(members, version=3, region="elsewhere"), governance)
    moved = node.client.post("/v1/region/directory", json=other, headers=admin)
    assert (moved.status_code, moved.json()["reason"]) == (422, "directory-region")

    v3 = signed(draft(members, version=3), governance)
    assert node.client.post("/v1/region/directory", json=v3, headers=admin).json()["installed"]
    assert _installed(node.engine) == [2, 3]
    assert node.client.get("/v1/region/directory").json()["directory"]["version"] == 3


def test_a_production_node_refuses_peers_reached_over_plain_http(
    node: Node, al_settings: Settings, governance: KeyPair
) -> None:
    """The payload is sealed either way, but the routing header and every signature would cross in the clear."""
    from contact_points.app import create_app

    production = al_settings.model_copy(update={"environment": "production"})
    with TestClient(create_app(production)) as client:
        admin = {"Authorization": node.login("admin")["Authorization"]}
        plain = signed(draft(node.members("XK")), governance)
        refused = client.post("/v1/region/directory", json=plain, headers=admin)
        assert (refused.status_code, refused.json()["reason"]) == (422, "directory-insecure-url")
        secure = draft([{**node.entry, "base_url": "https://spoc.al.example"}, *nodes("XK")])
        secure["nodes"][1]["base_url"] = "https://spoc.xk.example"
        installed = client.post("/v1/region/directory", json=signed(secure, governance), headers=admin)
        assert installed.status_code == 200, installed.text
