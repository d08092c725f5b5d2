"""The auditors' API: each role's scope, proofs a client can check itself, and never any content."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from broker.audit import merkle
from broker.audit.actions import AuditAction
from broker.audit.bundle import verify_bundle
from broker.audit.service import Actor, record, sequence_all
from broker.crypto.note import NoteKey, open_note
from broker.db import unit_of_work
from tests.factories import Region, deliver_request


@pytest.fixture
def committed(client: TestClient) -> Iterator[Session]:
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        yield session


def login(client: TestClient, region: Region, username: str) -> dict[str, str]:
    response = client.post(
        "/v1/auth/login", json={"username": username, "password": region.password(username)}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
def tagged(client: TestClient) -> tuple[str, dict[str, int]]:
    """Three committed entries by a fresh actor: touching AL+RS, BA+HR, and no country."""
    actor = f"scope-{uuid.uuid4().hex[:8]}"
    ids = {}
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        for name, countries in (("al-rs", ["AL", "RS"]), ("ba-hr", ["BA", "HR"]), ("none", [])):
            entry = record(
                session,
                actor=Actor(actor, "system"),
                action=AuditAction.KEY_CREATED,
                object_type="key",
                object_id=f"{actor}-{name}",
                countries=countries,
            )
            session.flush()  # record() defers the insert to the next flush; the id is known after it
            ids[name] = entry.id
        sequence_all(session)
    return actor, ids


@pytest.mark.parametrize(
    ("username", "visible"),
    [
        ("al-auditor", {"al-rs"}),
        ("rs-auditor", {"al-rs"}),
        ("ba-auditor", {"ba-hr"}),
        ("xk-auditor", set()),
        ("regional-auditor", {"al-rs", "ba-hr", "none"}),
        ("admin", {"al-rs", "ba-hr", "none"}),
    ],
)
def test_each_auditor_sees_exactly_its_scope(
    client: TestClient, region: Region, tagged: tuple[str, dict[str, int]], username: str, visible: set[str]
) -> None:
    actor, ids = tagged
    headers = login(client, region, username)
    found = client.get("/v1/audit/entries", params={"actor": actor}, headers=headers).json()["entries"]
    names = {name for name, entry_id in ids.items() if entry_id in {e["id"] for e in found}}
    assert names == visible
    for name, entry_id in ids.items():
        status = client.get(f"/v1/audit/entries/{entry_id}", headers=headers).status_code
        assert status == (200 if name in visible else 404)
    # A filter narrows; it never widens a national scope.
    wider = client.get("/v1/audit/entries", params={"actor": actor, "country": "BA"}, headers=headers).json()
    expected = {"ba-hr"} & visible
    assert {e["id"] for e in wider["entries"]} == {ids[n] for n in expected}


@pytest.mark.parametrize("username", ["al-officer", "al-supervisor"])
def test_officers_and_strangers_cannot_read_the_log(
    client: TestClient, region: Region, username: str
) -> None:
    headers = login(client, region, username)
    for path in ("/v1/audit/entries", "/v1/audit/checkpoints", "/v1/audit/export", "/v1/audit/keys"):
        assert client.get(path, headers=headers).status_code == 403
        assert client.get(path).status_code == 401
    assert client.post("/v1/audit/checkpoints", headers=headers).status_code == 403


def test_proofs_over_the_api_verify_against_the_signed_checkpoint(
    client: TestClient, region: Region, tagged: tuple[str, dict[str, int]]
) -> None:
    _, ids = tagged
    headers = login(client, region, "rs-auditor")
    first = client.post("/v1/audit/checkpoints", headers=headers)
    assert first.status_code in (200, 201), first.text
    keys = client.get("/v1/audit/keys", headers=headers).json()
    log_keys = [NoteKey.from_vkey(k) for k in keys["log_keys"]]
    note = client.get("/v1/audit/checkpoint", headers=headers)
    assert note.headers["content-type"].startswith("text/plain")
    text = open_note(note.text, verifiers=log_keys).text
    origin, size, root_b64 = text.split("\n")[:3]
    assert origin == keys["origin"] == "spoc/audit-log"
    proof = client.get(f"/v1/audit/entries/{ids['al-rs']}/proof", headers=headers).json()
    assert proof["tree_size"] == int(size)
    leaf = bytes.fromhex(proof["leaf_hash"])
    from broker.audit.service import leaf_hash

    assert leaf_hash(proof["entry"]) == leaf  # the client can hash the entry itself
    merkle.verify_inclusion(
        proof["leaf_index"],
        int(size),
        leaf,
        [bytes.fromhex(x) for x in proof["inclusion_path"]],
        base64.b64decode(root_b64),
    )
    # Out of scope: RS's auditor gets no proof of a BA-HR entry.
    assert client.get(f"/v1/audit/entries/{ids['ba-hr']}/proof", headers=headers).status_code == 404
    # A later checkpoint is consistent with this one.
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        record(
            session,
            actor=Actor("scope", "system"),
            action=AuditAction.KEY_CREATED,
            object_type="key",
            object_id="k",
        )
    later = client.post("/v1/audit/checkpoints", headers=headers).json()
    assert later["size"] > int(size)
    consistency = client.get(
        "/v1/audit/proofs/consistency", params={"first": int(size), "second": later["size"]}, headers=headers
    ).json()
    merkle.verify_consistency(
        int(size),
        later["size"],
        base64.b64decode(root_b64),
        bytes.fromhex(later["root"]),
        [bytes.fromhex(x) for x in consistency["consistency_path"]],
    )
    too_big = client.get(
        "/v1/audit/proofs/consistency", params={"first": 1, "second": 10**9}, headers=headers
    )
    assert too_big.status_code == 409


def test_a_witness_cosigns_on_demand_for_an_admin_only(client: TestClient, region: Region) -> None:
    admin = login(client, region, "admin")
    assert client.post("/v1/audit/checkpoints", headers=admin).status_code in (200, 201)
    done = client.post("/v1/audit/witnesses/SI-SPOC/cosign", headers=admin).json()
    assert done["status"] in ("cosigned", "already")
    latest = client.get("/v1/audit/checkpoints", params={"limit": 1}, headers=admin).json()["checkpoints"][0]
    assert "SI-SPOC" in [c["witness"] for c in latest["cosignatures"]]
    assert "— spoc/witness/SI-SPOC " in latest["note"]
    auditor = login(client, region, "si-auditor")
    assert client.post("/v1/audit/witnesses/SI-SPOC/cosign", headers=auditor).status_code == 403
    assert client.post("/v1/audit/witnesses/NOPE/cosign", headers=admin).status_code == 404


def test_timeline_and_export_of_an_exchange_never_show_content(client: TestClient, region: Region) -> None:
    marker = f"secret-payload-{uuid.uuid4().hex}"
    message_id, _ = deliver_request(
        client, region, sender="ME-UP", target="HR-POL", payload=marker.encode(), category="fraud"
    )
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        from broker.messages.models import Message

        message = session.get(Message, message_id)
        assert message is not None
        ciphertext = message.envelope["payload"]["ciphertext"]
    regional = login(client, region, "regional-auditor")
    assert client.post("/v1/audit/checkpoints", headers=regional).status_code in (200, 201)
    timeline = client.get(f"/v1/audit/messages/{message_id}/timeline", headers=regional)
    actions = [e["action"] for e in timeline.json()["entries"]]
    assert actions[:2] == ["message:submitted", "message:queued"]
    assert "message:routed" in actions
    export = client.get("/v1/audit/export", params={"message": message_id}, headers=regional)
    assert export.status_code == 200
    bundle = export.json()
    assert {e["entry"]["object_id"] for e in bundle["entries"]} == {message_id}
    assert verify_bundle(bundle).ok
    for response in (
        timeline,
        export,
        client.get("/v1/audit/entries", params={"message": message_id}, headers=regional),
    ):
        assert marker not in response.text
        assert ciphertext not in response.text
    # National scopes: ME and HR see the exchange, XK does not.
    assert (
        client.get(
            f"/v1/audit/messages/{message_id}/timeline", headers=login(client, region, "me-auditor")
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/v1/audit/messages/{message_id}/timeline", headers=login(client, region, "xk-auditor")
        ).status_code
        == 404
    )
    # The export itself is audited, in the exporter's scope.
    exported = client.get(
        "/v1/audit/entries",
        params={"action": "audit:exported", "actor": "regional-auditor"},
        headers=regional,
    ).json()["entries"]
    assert exported
    assert exported[0]["details"]["filters"] == {"message": message_id}


def test_a_national_bundle_holds_only_its_country_and_verifies(
    client: TestClient, region: Region, tagged: tuple[str, dict[str, int]]
) -> None:
    actor, ids = tagged
    headers = login(client, region, "ba-auditor")
    assert client.post("/v1/audit/checkpoints", headers=headers).status_code in (200, 201)
    bundle = client.get("/v1/audit/export", params={"actor": actor}, headers=headers).json()
    assert bundle["scope"] == "BA"
    assert [e["entry"]["id"] for e in bundle["entries"]] == [ids["ba-hr"]]
    assert all("BA" in e["entry"]["countries"] for e in bundle["entries"])
    report = verify_bundle(bundle)
    assert report.ok, report.line()
    assert report.entries == 1  # the one BA entry of this actor, proven in the signed tree


def test_search_by_time_range(client: TestClient, region: Region) -> None:
    actor = f"time-{uuid.uuid4().hex[:8]}"
    months = {"jan": datetime(2026, 1, 1, tzinfo=UTC), "feb": datetime(2026, 2, 1, tzinfo=UTC)}
    months["mar"] = datetime(2026, 3, 1, tzinfo=UTC)
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        for name, at in months.items():
            entry = record(
                session,
                actor=Actor(actor, "system"),
                action=AuditAction.KEY_CREATED,
                object_type="key",
                object_id=f"{actor}-{name}",
                countries=["AL"],
            )
            entry.at = at  # record() defers its insert: the time can still be set, as if written then
    headers = login(client, region, "regional-auditor")

    def found(**params: str) -> set[str]:
        entries = client.get("/v1/audit/entries", params={"actor": actor, **params}, headers=headers).json()
        return {e["object_id"].rsplit("-", 1)[1] for e in entries["entries"]}

    assert found() == {"jan", "feb", "mar"}
    assert found(since="2026-01-15T00:00:00Z", until="2026-02-15T00:00:00Z") == {"feb"}
    assert found(since="2026-02-01T00:00:00Z") == {"feb", "mar"}  # since is inclusive
    assert found(until="2026-02-01T00:00:00Z") == {"jan"}  # until is exclusive


def test_search_by_agency_finds_its_messages_and_its_own_acts(client: TestClient, region: Region) -> None:
    message_id, _ = deliver_request(client, region, sender="ME-UP", target="HR-POL", category="fraud")
    headers = login(client, region, "regional-auditor")

    def found(agency: str) -> list[dict[str, object]]:
        params = {"agency": agency, "message": message_id}
        return list(client.get("/v1/audit/entries", params=params, headers=headers).json()["entries"])

    sender = found("ME-UP")
    assert sender, "the sender's message is found by the sender's agency"
    assert {e["object_id"] for e in sender} == {message_id}
    assert any(e["actor"] == "ME-UP" for e in sender)  # its own submission
    assert {e["id"] for e in found("HR-POL")} == {e["id"] for e in sender}  # the addressee's too
    assert found("MK-MOI") == []  # an agency with no part in it finds nothing of it
