"""The signed regional directory: installed over HTTP by an admin, refused (and audited) when it is unsigned,
signed by another key, tampered with, expired, older than the installed one, or a fork of it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select

from broker.audit.models import AuditEntry
from broker.config import Settings
from broker.crypto import KeyPair
from broker.region.models import InstalledDirectory
from tests.broker.region.region_builders import draft, nodes, signed
from tests.factories import Region


@pytest.fixture
def governance() -> KeyPair:
    return KeyPair.generate("sig")


@pytest.fixture
def node(
    settings: Settings, region: Region, engine: Engine, governance: KeyPair, tmp_path: Path
) -> Iterator[TestClient]:
    """A node whose anchor is ``governance``, with no directory installed yet."""
    from contact_points.app import create_app

    anchor = tmp_path / "anchor.jwks.json"
    anchor.write_text(json.dumps({"keys": [governance.public.jwk]}))
    with engine.begin() as conn:
        conn.execute(delete(InstalledDirectory))
    with TestClient(create_app(settings.model_copy(update={"region_anchor": anchor}))) as client:
        yield client


def _token(client: TestClient, region: Region, username: str) -> dict[str, str]:
    answer = client.post("/v1/auth/login", json={"username": username, "password": region.password(username)})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _refusals(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "region:directory-refused")
            )
            or 0
        )


def _installed(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(InstalledDirectory.version).order_by(InstalledDirectory.version)))


def test_an_admin_installs_a_directory_and_any_peer_reads_it_back_as_signed(
    node: TestClient, region: Region, governance: KeyPair, engine: Engine
) -> None:
    admin = _token(node, region, "admin")
    assert node.get("/v1/region/directory").status_code == 404
    document = signed(draft(nodes("AL", "XK", "MK")), governance)

    first = node.post("/v1/region/directory", json=document, headers=admin)
    assert first.status_code == 200, first.text
    assert first.json()["installed"] is True
    assert first.json()["version"] == 1
    again = node.post("/v1/region/directory", json=document, headers=admin)
    assert again.json()["installed"] is False  # refreshing with the same document is a no-op

    served = node.get("/v1/region/directory")  # no credentials: public keys only, and signed
    assert served.status_code == 200
    assert served.json() == document
    assert _installed(engine) == [1]


def test_only_an_admin_installs(
    node: TestClient, region: Region, governance: KeyPair, engine: Engine
) -> None:
    officer = _token(node, region, "al-officer")
    answer = node.post("/v1/region/directory", json=signed(draft(nodes("AL")), governance), headers=officer)
    assert answer.status_code == 403
    assert _installed(engine) == []


def _tampered(governance: KeyPair) -> dict[str, Any]:
    document = signed(draft(nodes("AL", "XK")), governance)
    document["directory"]["nodes"][1]["base_url"] = "http://127.0.0.1:9999"
    return document


def _enc_key_as_transport_key() -> dict[str, Any]:
    document = draft(nodes("AL", "XK"))
    document["nodes"][0]["transport_keys"] = [KeyPair.generate("enc").public.jwk]
    return document


REFUSED: dict[str, tuple[Callable[[KeyPair], dict[str, Any]], int, str | None]] = {
    "signed by a key that is not the anchor": (
        lambda g: signed(draft(nodes("AL", "XK")), KeyPair.generate("sig")),
        422,
        "directory-signature",
    ),
    "changed after it was signed": (_tampered, 422, "directory-signature"),
    "expired": (
        lambda g: signed(
            draft(
                nodes("AL", "XK"),
                issued_at=datetime.now(UTC) - timedelta(days=40),
                valid_for=timedelta(days=30),
            ),
            g,
        ),
        422,
        "directory-expired",
    ),
    "issued in the future": (
        lambda g: signed(draft(nodes("AL", "XK"), issued_at=datetime.now(UTC) + timedelta(hours=2)), g),
        422,
        "directory-not-yet-valid",
    ),
    "unsigned": (lambda g: {"directory": draft(nodes("AL", "XK"))}, 400, None),
    "a node's key of the wrong kind": (lambda g: signed(_enc_key_as_transport_key(), g), 400, None),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_directory_is_refused_with_its_reason_audited_and_not_installed(
    case: str, node: TestClient, region: Region, governance: KeyPair, engine: Engine
) -> None:
    make, status, reason = REFUSED[case]
    admin = _token(node, region, "admin")
    before = _refusals(engine)
    answer = node.post("/v1/region/directory", json=make(governance), headers=admin)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if reason is not None:
        assert answer.json()["reason"] == reason
    elif case == "a node's key of the wrong kind":
        assert "transport_keys: a enc key where a sig key belongs" in answer.json()["detail"]
    assert _installed(engine) == []
    assert _refusals(engine) == before + 1


def test_the_version_never_goes_back_and_one_version_is_one_document(
    node: TestClient, region: Region, governance: KeyPair, engine: Engine
) -> None:
    admin = _token(node, region, "admin")
    members = nodes("AL", "XK", "MK")
    v1, v2 = signed(draft(members, version=1), governance), signed(draft(members, version=2), governance)
    assert node.post("/v1/region/directory", json=v2, headers=admin).status_code == 200

    stale = node.post("/v1/region/directory", json=v1, headers=admin)
    assert (stale.status_code, stale.json()["reason"]) == (422, "directory-stale")

    fork = signed(draft(members[:2], version=2), governance)  # same version, MK dropped: a second history
    forked = node.post("/v1/region/directory", json=fork, headers=admin)
    assert (forked.status_code, forked.json()["reason"]) == (422, "directory-fork")

    other = signed(draft(members, version=3, region="elsewhere"), governance)
    moved = node.post("/v1/region/directory", json=other, headers=admin)
    assert (moved.status_code, moved.json()["reason"]) == (422, "directory-region")

    assert node.post(
        "/v1/region/directory", json=signed(draft(members, version=3), governance), headers=admin
    ).json()["installed"]
    assert _installed(engine) == [2, 3]
    assert node.get("/v1/region/directory").json()["directory"]["version"] == 3
