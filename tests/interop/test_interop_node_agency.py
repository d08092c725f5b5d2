"""Issue 12: an agency written in another language, from the docs alone, against a real server.

``tests/interop/node_agency/agency.mjs`` is plain Node.js 20 (no packages, no spoc code), written from
docs/envelope.md, docs/agency-signing.md and docs/receipts.md. This test starts uvicorn on a free port
against the session's database, gives the script two agencies' private JWKs (the seeded credentials), and
drives the whole path over HTTP:

1. AL-ASP (Node) fetches both contact points' keys, builds and signs an envelope and POSTs it;
2. the AL officer approves, the outbox runs, the MK officer routes it to MK-MOI, the outbox runs
   (the outbox is drained from this process through the same database: what a worker does);
3. MK-MOI (Node) pulls its inbox, verifies the originator and the chain of custody, decrypts and
   acknowledges with a signed receipt;
4. AL-ASP (Node) reads the message status and verifies the receipt.

Wrong steps fail with the documented answer: a Content-Digest that is not the body's and a wrong signature
label give 401 with ``reason`` ``digest`` / ``signature-label``; a ciphertext changed after signing gives 422
``verification-failed``; a ``created_at`` of 2001 gives 422 ``policy-refused`` with ``reason`` ``created-at``.
The script also reproduces the worked examples of docs/agency-signing.md §4 and docs/envelope.md §8.

Node is required: without /usr/bin/node (``make test`` installs Debian's ``nodejs``) this test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import make_sessionmaker, unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.launcher import free_port
from broker.messages.work import drain
from tests.factories import Region

SCRIPT = Path(__file__).resolve().parent / "node_agency" / "agency.mjs"
REPO = Path(__file__).resolve().parents[2]
SENDER, RECEIVER = "AL-ASP", "MK-MOI"
PLAINTEXT = '{"question":"who rented the flat at Rruga e Kavajës 12?","ref":"AL-2026-0042 ✓"}'


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node") or "/usr/bin/node"
    if not os.access(path, os.X_OK):
        pytest.fail("Node.js is required for the interop test (make test installs Debian's nodejs)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.lstrip("v").split(".")[0]) >= 18, version  # Debian bookworm ships 18; fetch is there
    return path


@pytest.fixture(scope="module")
def server(settings: Settings, region: Region, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn on 127.0.0.1 with the session's settings (same database, master key and data folder)."""
    port = free_port()
    log = tmp_path_factory.mktemp("node-agency") / "api.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SPOC_ENVIRONMENT": "test",
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_MASTER_KEY": settings.master_key_secret(),
        "SPOC_DATA_DIR": str(settings.data_dir),
        "SPOC_DB_POOL_SIZE": "2",
    }
    command = [sys.executable, "-m", "uvicorn", "contact_points.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        api = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if api.poll() is not None:
                pytest.fail(f"uvicorn exited at start-up:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"uvicorn did not answer:\n{log.read_text()}")
        yield url
    finally:
        api.terminate()
        try:
            api.wait(10)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


def agency(region: Region, agency_id: str) -> dict[str, Any]:
    """What the integrator's system holds: its id and its two private JWKs (the seeded credentials)."""
    creds = region.seed.agencies[agency_id]
    return {
        "id": agency_id,
        "signing_key": json.loads(creds.signing_key),
        "encryption_key": json.loads(creds.encryption_key),
    }


def run(node: str, command: str, payload: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(SCRIPT), command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"agency.mjs {command} failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def drain_outbox(engine: Engine, settings: Settings) -> int:
    """What a worker does: forward and deliver, committing, against the server's database."""
    with unit_of_work(make_sessionmaker(engine)) as session:
        return drain(session, DatabaseKeyStore(session, MasterKey.from_secret(settings.master_key_secret())))


def officer(url: str, region: Region, username: str) -> OfficerClient:
    return OfficerClient(url, username, region.password(username))


def send_input(url: str, region: Region, **extra: Any) -> dict[str, Any]:
    return {
        "url": url,
        "agency": agency(region, SENDER),
        "destination_country": "MK",
        "category": "migrant-smuggling",
        "classification": "RESTRICTED",
        "legal_basis": "DEMO/AL-MK/police-cooperation",
        "plaintext": PLAINTEXT,
        **extra,
    }


def test_a_node_agency_written_from_the_docs_goes_the_whole_path(
    node: str, server: str, region: Region, engine: Engine, settings: Settings
) -> None:
    # 1-3: keys from the directory, envelope, signed POST
    sent = run(node, "send", send_input(server, region))
    assert sent["answer"]["status"] == 202, sent["answer"]
    assert sent["answer"]["body"]["message_id"] == sent["message_id"]
    assert sent["answer"]["body"]["state"] == "origin_review"
    message_id = sent["message_id"]
    jwks = {
        p: httpx.get(f"{server}/v1/directory/parties/{p}/jwks").json()["keys"] for p in ("AL-SPOC", "MK-SPOC")
    }
    assert sent["readers"] == [[k for k in jwks[p] if k["use"] == "enc"][-1]["kid"] for p in jwks]

    # the officers and the outbox, over HTTP and through the same database
    with officer(server, region, "al-officer") as al:
        assert al.decide(message_id, "approve")["state"] == "forwarded"
    assert drain_outbox(engine, settings) >= 1
    with officer(server, region, "mk-officer") as mk:
        mk.decide(message_id, "route", route_to_agency=RECEIVER)
    assert drain_outbox(engine, settings) >= 1

    # 4: the receiving agency pulls, verifies, decrypts and acknowledges
    received = run(
        node, "receive", {"url": server, "agency": agency(region, RECEIVER), "message_id": message_id}
    )
    assert "error" not in received, received
    assert received["plaintext"] == PLAINTEXT
    assert received["digest"] == sent["digest"]
    assert [(s["party"], s["decision"]) for s in received["chain"]] == [
        (SENDER, "submitted"),
        ("AL-SPOC", "approved"),
        ("MK-SPOC", "received"),
        ("MK-SPOC", "routed"),
    ]
    assert received["ack"]["status"] == 204, received["ack"]

    # 5: the sender sees the receipt and verifies it
    checked = run(
        node,
        "check",
        {
            "url": server,
            "agency": agency(region, SENDER),
            "message_id": message_id,
            "digest": sent["digest"],
            "receiver": RECEIVER,
        },
    )
    assert checked["state"] == "delivered", checked
    assert len(checked["receipts"]) == 1
    (receipt,) = checked["receipts"]
    assert receipt["problems"] == []
    assert receipt["statement"] == received["statement"]


def test_a_content_digest_that_is_not_the_body_is_refused_with_reason_digest(
    node: str, server: str, region: Region
) -> None:
    answer = run(node, "send", send_input(server, region, fault="content-digest"))["answer"]
    assert answer["status"] == 401
    assert answer["contentType"] == "application/problem+json"
    assert answer["body"]["type"] == "urn:spoc:problem:not-authenticated"
    assert answer["body"]["reason"] == "digest"


def test_a_wrong_signature_label_is_refused_with_reason_signature_label(
    node: str, server: str, region: Region
) -> None:
    answer = run(node, "probe", {"url": server, "agency": agency(region, RECEIVER), "fault": "label"})
    assert answer["status"] == 401
    assert answer["body"]["type"] == "urn:spoc:problem:not-authenticated"
    assert answer["body"]["reason"] == "signature-label"


def test_a_ciphertext_changed_after_signing_is_refused(node: str, server: str, region: Region) -> None:
    answer = run(node, "send", send_input(server, region, fault="ciphertext"))["answer"]
    assert answer["status"] == 422
    assert answer["body"]["type"] == "urn:spoc:problem:verification-failed"


def test_an_envelope_dated_2001_is_refused_with_reason_created_at(
    node: str, server: str, region: Region
) -> None:
    """docs/envelope.md §9 lists created-at among the policy refusals (created_at outside the window)."""
    answer = run(node, "send", send_input(server, region, created_at="2001-01-01T00:00:00.000Z"))["answer"]
    assert answer["status"] == 422
    assert answer["body"]["type"] == "urn:spoc:problem:policy-refused"
    assert answer["body"]["reason"] == "created-at"


def test_the_node_agency_reproduces_the_worked_examples_of_the_docs(node: str) -> None:
    """agency-signing.md §4 byte for byte, envelope.md §8 (1504 bytes, digest, signature, both readers)."""
    result = run(node, "examples", {"examples_dir": str(REPO / "schemas" / "examples")})
    assert [(r["name"], r["same"]) for r in result["requests"]] == [("with-body", True), ("with-query", True)]
    assert result["requests"][0]["keyid"] == "902KM7ToAXrHUesVkFKy3VoJ9_ULQufbJGWg0D0aaPk"
    assert result["envelope"] == {
        "kids_are_thumbprints": True,
        "signing_input_bytes": 1504,
        "digest": "sha-256:aeb67977fe98e14a9adff5b3c860d0d0550925001c764a06b4ccb6fcfa459064",
        "signature_verifies": True,
        "changed_header_verifies": False,
        "opened_by": {"AL-SPOC": True, "RS-SPOC": True},
    }
