"""Three separate nodes (XK, AL, MK), each its own OS processes started with the installed command
(``spoc run --country CC``: API and worker with beat), its own PostgreSQL database, its own master key and
its own Redis queue namespace, joined by one signed regional directory that the test, as the region's
governance, signs and installs on each node over HTTP. Driven only through the doors users use: agencies and
officers over HTTP, a hostile node's signed POSTs over HTTP; the databases are read, never written, except by
the last test, where AL's operator turns hostile: it uses its own database and master key to sign a forked log.

One region for the module (one start-up); each test makes its own messages and counts only those.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, func, select, text

from broker.audit import checkpoints as cps
from broker.audit import merkle
from broker.audit.models import AuditEntry, AuditLeaf
from broker.audit.service import sequence_all
from broker.audit.tree import StoredTree
from broker.client.agency import AgencyClient
from broker.client.credentials import AgencyCredentials
from broker.client.officer import OfficerClient
from broker.crypto import KeyPair, MasterKey, countersign
from broker.crypto.countersign import statement_of
from broker.crypto.httpsig import NODE_LABEL, sign_request
from broker.crypto.note import NoteSigner, sign_note
from broker.db import make_sessionmaker, unit_of_work
from broker.hop.models import Hop
from broker.hop.service import HOP_PATH, hop_body
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore
from broker.launcher import free_port
from broker.localregion import agreements
from broker.messages.models import CustodyStep, Message
from broker.witness.protocol import ADD_CHECKPOINT, SUBMISSION_PREFIX, request_body
from tests.broker.region.region_builders import draft, signed
from tests.conftest import PG_ADMIN, REDIS_URL, _unavailable

pytestmark = pytest.mark.integration

SPOC = Path(sys.executable).parent / "spoc"
COUNTRIES = ("XK", "AL", "MK")
OWN = {"spoc-log", "spoc-node", "spoc-witness"}


def _wait(what: str, probe: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Node:
    """One node: its `spoc run --country` process (and, through it, its API and worker), database, keys."""

    country: str
    port: int
    folder: Path
    database: str
    env: dict[str, str]
    engine: Engine
    proc: subprocess.Popen[bytes] | None = None
    clients: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def master(self) -> MasterKey:
        return MasterKey.from_secret(self.env["SPOC_MASTER_KEY"])

    def start(self) -> None:
        with (self.folder / "run.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(SPOC), "run", "--country", self.country, "--port", str(self.port), "--no-pending"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.country}'s node exited:\n{(self.folder / 'run.log').read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        return False

    def children(self) -> list[int]:
        assert self.proc is not None
        found = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def kill(self) -> None:
        """SIGKILL: the API and the worker (each its own process group, with the worker's pool), then the
        `spoc run` that started them; nothing gets to finish what it was doing."""
        assert self.proc is not None
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()

    def password(self, username: str) -> str:
        return str(json.loads((self.folder / "demo-accounts.json").read_text())[username]["password"])

    def officer(self, username: str) -> OfficerClient:
        client = OfficerClient(self.url, username, self.password(username))
        self.clients.append(client)
        return client

    def agency(self, agency_id: str) -> AgencyClient:
        client = AgencyClient(
            self.url, AgencyCredentials.load(self.folder / "agencies" / f"{agency_id}.json")
        )
        self.clients.append(client)
        return client

    def scalar(self, query: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def rows(self, query: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]

    def transport_key(self) -> KeyPair:
        """The node's own transport private key, unsealed with its master key: what its operator holds."""
        with make_sessionmaker(self.engine)() as session:
            return DatabaseKeyStore(session, self.master).signing_key("spoc-node")


@dataclass
class Region:
    nodes: dict[str, Node]
    governance: KeyPair
    entries: list[dict[str, Any]]


def _node_entry(node: Node) -> subprocess.Popen[bytes]:
    out = node.folder / "entry.json"
    return subprocess.Popen(
        [
            str(SPOC),
            "region",
            "node-entry",
            "--node-id",
            node.country.lower(),
            "--url",
            node.url,
            "--out",
            str(out),
        ],
        env=node.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _directory(region: Region, version: int, key: KeyPair | None = None) -> dict[str, Any]:
    document = draft(region.entries, version=version, agreements=agreements(COUNTRIES))
    return signed(document, key or region.governance)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    folder = tmp_path_factory.mktemp("region")
    run = uuid.uuid4().hex[:8]
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            names = {cc: f"spoc_node_{cc.lower()}_{run}" for cc in COUNTRIES}
            for name in names.values():
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    governance = KeyPair.generate("sig")
    anchor = folder / "anchor.jwks.json"
    anchor.write_text(json.dumps({"keys": [governance.public.jwk]}))
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    nodes: dict[str, Node] = {}
    for cc in COUNTRIES:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{names[cc]}"
        env = base | {
            "SPOC_ENVIRONMENT": "test",
            "SPOC_DATABASE_URL": url,
            # One Redis (db 0) for the three nodes, each queue under its own prefix: one node's tasks never
            # reach another's worker, and no other test run's (they use their own random db and no prefix).
            "SPOC_BROKER_URL": f"{REDIS_URL}/0",
            "SPOC_BROKER_KEY_PREFIX": f"spoc-test-{run}-{cc.lower()}:",
            "SPOC_MASTER_KEY": MasterKey.generate_secret(),
            "SPOC_DATA_DIR": str(folder / cc.lower()),
            "SPOC_REGION_ANCHOR": str(anchor),
            # A peer that is down is tried again within seconds, and not dead-lettered while it restarts.
            "SPOC_PUSH_BACKOFF_BASE_SECONDS": "0.5",
            "SPOC_PUSH_BACKOFF_CAP_SECONDS": "2",
            "SPOC_PUSH_MAX_ATTEMPTS": "60",
        }
        (folder / cc.lower()).mkdir(mode=0o700)
        nodes[cc] = Node(cc, free_port(), folder / cc.lower(), names[cc], env, create_engine(url))
    made = Region(nodes, governance, [])
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            _wait(f"{node.country}'s node", node.ready, timeout=120)
        entries = [(_node_entry(node), node) for node in nodes.values()]
        for proc, node in entries:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            made.entries.append(json.loads((node.folder / "entry.json").read_text()))
        directory = _directory(made, version=2)
        for node in nodes.values():
            with node.officer("admin") as admin:
                installed = admin._call("POST", "/v1/region/directory", json=directory)
            assert installed["version"] == 2
        yield made
    finally:
        for node in nodes.values():  # (a clean stop is test_deploy_run's; here only the time would be spent)
            for client in node.clients:
                client.close()
            if node.proc is not None and node.proc.poll() is None:
                node.kill()
            node.engine.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(f"{REDIS_URL}/0")
        for key in client.scan_iter(f"spoc-test-{run}-*"):
            client.delete(key)


def _awaiting(officer: OfficerClient, message_id: str, state: str) -> bool:
    found = officer.message(message_id)
    return found is not None and found["state"] == state


def _in_inbox(agency: AgencyClient, message_id: str) -> dict[str, Any] | None:
    return next((i for i in agency.inbox_all() if i["message_id"] == message_id), None)


def _count(node: Node, action: str, object_id: str) -> int:
    query = select(func.count()).select_from(AuditEntry)
    return int(node.scalar(query.where(AuditEntry.action == action, AuditEntry.object_id == object_id)))


def test_a_request_crosses_to_another_node_and_its_answer_comes_back(region: Region) -> None:
    xk, al = region.nodes["XK"], region.nodes["AL"]
    asker = xk.agency("XK-KP")
    envelope = asker.build(
        payload=b'{"q": "who drives the van 01-XYZ-23"}',
        destination_country="AL",
        category="migrant-smuggling",
    )
    message_id = asker.submit(envelope)["message_id"]
    xk.officer("xk-officer").decide(message_id, "approve")  # XK's worker hops it to AL's node

    al_officer = al.officer("al-officer")
    _wait(
        "the request in AL's inbound review",
        functools.partial(_awaiting, al_officer, message_id, "destination_review"),
    )
    al_officer.decide(message_id, "accept")
    al_officer.decide(message_id, "route", route_to_agency="AL-ASP")
    responder = al.agency("AL-ASP")
    item = _wait("delivery to AL-ASP", functools.partial(_in_inbox, responder, message_id))
    opened = responder.open(item)  # XK-KP's signature and XK-SPOC's countersignature, from the directory
    assert opened.plaintext == b'{"q": "who drives the van 01-XYZ-23"}'
    assert [(s["party"], s["decision"]) for s in opened.custody][:2] == [
        ("XK-SPOC", "approved"),
        ("AL-SPOC", "received"),
    ]
    responder.ack(opened)
    answer = responder.reply(opened, payload=b'{"a": "a rental company in Tirana"}')
    answer_id = responder.submit(answer)["message_id"]
    al_officer.decide(answer_id, "approve")  # AL's worker hops the answer back to XK's node

    xk_officer = xk.officer("xk-officer")
    _wait(
        "the answer in XK's inbound review",
        functools.partial(_awaiting, xk_officer, answer_id, "destination_review"),
    )
    xk_officer.decide(answer_id, "route", route_to_agency="XK-KP")
    back = _wait("the answer delivered to XK-KP", functools.partial(_in_inbox, asker, answer_id))
    answered = asker.open(back)
    assert answered.plaintext == b'{"a": "a rental company in Tirana"}'
    assert str(answered.header.in_reply_to) == message_id
    asker.ack(answered)

    # Each crossing is an entry on both sides with the same digest: the logs can be reconciled.
    for sender, receiver, mid in ((xk, al, message_id), (al, xk, answer_id)):
        digest = select(AuditEntry.details["digest"].as_string()).where(AuditEntry.object_id == mid)
        sent = sender.scalar(digest.where(AuditEntry.action == "hop:sent"))
        received = receiver.scalar(digest.where(AuditEntry.action == "hop:received"))
        assert sent is not None
        assert sent == received
    # Neither node could open what it holds of the other's content: the request is sealed to XK-SPOC, AL-SPOC
    # (and the agency); AL's node holds AL-SPOC's key only (test_no_node_holds_another_country_s_private_key).


def _peer_up(node: Node, peer: str) -> float | None:
    """``spoc_endpoint_up{kind="peer"}`` for ``peer`` in a scrape of the node's running API (``/metrics``)."""
    scraped = httpx.get(node.url + "/metrics", timeout=15)
    assert scraped.status_code == 200, scraped.text
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "spoc_endpoint_up" and sample.labels == {"kind": "peer", "endpoint": peer}:
                return float(sample.value)
    return None


def test_a_peer_killed_mid_flight_gets_every_message_once_when_it_is_back(region: Region) -> None:
    xk, mk = region.nodes["XK"], region.nodes["MK"]
    asker = xk.agency("XK-KP")
    ids = [
        asker.submit(
            asker.build(payload=b'{"n": %d}' % i, destination_country="MK", category="migrant-smuggling")
        )["message_id"]
        for i in range(6)
    ]
    officer = xk.officer("xk-officer")
    for message_id in ids[:3]:
        officer.decide(message_id, "approve")
    mk.kill()  # while the first hops are on their way, or queued
    for message_id in ids[3:]:
        officer.decide(message_id, "approve")

    def failed_while_down() -> bool:
        query = (
            select(func.count())
            .select_from(Hop)
            .where(
                Hop.message_id.in_(ids[3:]), Hop.direction == "out", Hop.attempts >= 1, Hop.receipt.is_(None)
            )
        )
        return int(xk.scalar(query)) == 3

    _wait("XK's hops to MK failing while MK is down", failed_while_down)
    assert "ConnectError" in str(xk.scalar(select(Hop.last_error).where(Hop.message_id == ids[-1])))
    assert _peer_up(xk, "mk") == 0.0  # the operator's /metrics says so before any officer notices

    mk.start()  # the same command, the same database and queue namespace
    _wait("MK's node back", mk.ready, timeout=90)

    def all_receipted() -> bool:
        query = (
            select(func.count())
            .select_from(Hop)
            .where(Hop.message_id.in_(ids), Hop.direction == "out", Hop.receipt.is_not(None))
        )
        return int(xk.scalar(query)) == len(ids)

    _wait("every hop receipted by MK", all_receipted)
    assert _peer_up(xk, "mk") == 1.0
    for message_id in ids:  # 0 lost, 0 duplicated: on both sides, in every table that records the hop
        assert xk.scalar(select(func.count()).select_from(Hop).where(Hop.message_id == message_id)) == 1
        assert mk.scalar(select(func.count()).select_from(Hop).where(Hop.message_id == message_id)) == 1
        assert mk.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) == 1
        received_steps = (
            select(func.count())
            .select_from(CustodyStep)
            .where(CustodyStep.message_id == message_id, CustodyStep.decision == "received")
        )
        assert mk.scalar(received_steps) == 1
        assert (_count(xk, "hop:sent", message_id), _count(mk, "hop:received", message_id)) == (1, 1)
    with mk.officer("mk-officer") as mk_officer:
        inbound = {m["message_id"] for m in mk_officer.queue("inbound")}
    assert set(ids) <= inbound


def _signed_post(node: Node, body: bytes, key: KeyPair) -> tuple[bytes, dict[str, str]]:
    headers = {"content-type": "application/json"}
    sign_request("POST", node.url + HOP_PATH, headers, body, key=key, label=NODE_LABEL)
    return body, headers


def _post(node: Node, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(node.url + HOP_PATH, content=body, headers=headers, timeout=15)


def _refused(answer: httpx.Response, status: int, reason: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["reason"] == reason


def _stored(node: Node) -> tuple[int, int, int]:
    return (
        int(node.scalar(select(func.count()).select_from(Message))),
        int(node.scalar(select(func.count()).select_from(Hop))),
        int(node.scalar(select(func.count()).select_from(CustodyStep))),
    )


def test_a_hostile_node_is_refused_over_http_audited_and_nothing_is_stored(region: Region) -> None:
    xk, al, mk = region.nodes["XK"], region.nodes["AL"], region.nodes["MK"]
    asker = xk.agency("XK-KP")
    message_id = asker.submit(
        asker.build(payload=b"{}", destination_country="AL", category="drug-trafficking")
    )["message_id"]
    xk.officer("xk-officer").decide(message_id, "approve")
    _wait(
        "the genuine hop receipted",
        lambda: xk.scalar(select(Hop.receipt).where(Hop.message_id == message_id, Hop.direction == "out")),
    )
    with make_sessionmaker(xk.engine)() as session:  # the hop as XK's node built it, from XK's database
        message = session.get(Message, message_id)
        assert message is not None
        hop = session.scalar(select(Hop).where(Hop.message_id == message_id, Hop.direction == "out"))
        assert hop is not None
        body = hop_body(session, DatabaseKeyStore(session, xk.master), message, sender_key=hop.sender_key)
    before = _stored(al)
    refused_before = int(
        al.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "hop:refused"))
    )

    # A forged countersignature: XK's approval re-signed by a key that is not XK-SPOC's.
    forged = {
        **body,
        "custody": [
            *body["custody"][:-1],
            countersign(statement_of(body["custody"][-1]), key=KeyPair.generate("sig")),
        ],
    }
    _refused(_post(al, *_signed_post(al, orjson.dumps(forged), xk.transport_key())), 422, "custody")
    # A node claiming a country it does not serve: MK's node hands over XK's message.
    _refused(_post(al, *_signed_post(al, orjson.dumps(body), mk.transport_key())), 422, "wrong-country")
    # A key the directory does not list.
    _refused(_post(al, *_signed_post(al, orjson.dumps(body), KeyPair.generate("sig"))), 401, "unlisted-node")
    # A replay: the genuine hop sent again is answered with the first receipt (idempotent); the same signed
    # request a second time is refused by its nonce.
    raw, headers = _signed_post(al, orjson.dumps(body), xk.transport_key())
    again = _post(al, raw, headers)
    assert again.status_code == 200, again.text
    assert again.json()["receipt"] == hop.receipt
    _refused(_post(al, raw, headers), 401, "nonce")

    assert _stored(al) == before  # nothing of any refused hop, and nothing twice
    refusals = al.rows(
        select(AuditEntry.actor, AuditEntry.details["reason"].as_string())
        .where(AuditEntry.action == "hop:refused")
        .order_by(AuditEntry.id)
        .offset(refused_before)
    )
    assert [tuple(r) for r in refusals] == [("xk", "custody"), ("mk", "wrong-country")]
    denied = al.rows(
        select(AuditEntry.details["reason"].as_string(), AuditEntry.details["status"].as_string()).where(
            AuditEntry.action == "access:denied",
            AuditEntry.details["route"].as_string().contains(HOP_PATH),
        )
    )
    assert {(r[0], r[1]) for r in denied} >= {("unlisted-node", "401"), ("nonce", "401")}

    # A stale directory (older than the one installed) and one signed by another key: refused, audited.
    with al.officer("admin") as admin:
        for offered, reason in (
            (_directory(region, version=1), "directory-stale"),
            (_directory(region, version=3, key=KeyPair.generate("sig")), "directory-signature"),
        ):
            answer = httpx.post(
                al.url + "/v1/region/directory", json=offered, headers=admin._http.headers, timeout=15
            )
            _refused(answer, 422, reason)
    installed = httpx.get(al.url + "/v1/region/directory", timeout=15).json()
    assert installed["directory"]["version"] == 2
    directory_refusals = al.rows(
        select(AuditEntry.object_id, AuditEntry.details["reason"].as_string()).where(
            AuditEntry.action == "region:directory-refused"
        )
    )
    assert {tuple(r) for r in directory_refusals} >= {("1", "directory-stale"), ("3", "directory-signature")}


def _dump(node: Node) -> str:
    """Every row of every table of the node's database, as text."""
    with node.engine.connect() as conn:
        tables = conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).all()
        return "\n".join(
            row
            for t in tables
            for row in conn.scalars(text(f'SELECT CAST(t AS text) FROM "{t}" t'))  # noqa: S608
        )


def test_no_node_holds_another_country_s_private_key(region: Region) -> None:
    secrets: dict[str, list[str]] = {}
    for cc, node in region.nodes.items():
        held = select(PartyKey.party_id).where(PartyKey.private_sealed.is_not(None))
        with node.engine.connect() as conn:
            assert set(conn.scalars(held)) == {f"{cc}-SPOC", *OWN}
            # It knows the other contact points, by their public keys only.
            others = {f"{c}-SPOC" for c in COUNTRIES if c != cc}
            known = set(conn.scalars(select(PartyKey.party_id).where(PartyKey.party_id.in_(others))))
            assert known == others
            sealed = list(
                conn.scalars(select(PartyKey.private_sealed).where(PartyKey.private_sealed.is_not(None)))
            )
        with make_sessionmaker(node.engine)() as session:
            keys = DatabaseKeyStore(session, node.master)
            private = [keys.signing_key(p) for p in (f"{cc}-SPOC", *OWN)]
        # What only this node may hold: its private key material (the JWK's "d") and its sealed blobs.
        secrets[cc] = [json.loads(k.private_jwk_json())["d"] for k in private] + [s for s in sealed if s]
    for cc, node in region.nodes.items():
        dump = _dump(node)
        for other, material in secrets.items():
            if other != cc:
                assert not [m for m in material if m in dump], f"{cc}'s database holds {other}'s private keys"
        assert all(m in dump for m in secrets[cc][len(OWN) + 1 :])  # the search finds what is there


# Last in the module: it leaves AL's log forked (and a peer-fork alert on XK's and MK's nodes).


def _pg_busy(node: Node) -> int:
    """Connections to the node's database in the middle of something (a query, or an open transaction)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state <> 'idle'", (node.database,)
        ).fetchone()
    return int(found[0]) if found else 0


@contextlib.contextmanager
def _worker_paused(node: Node) -> Iterator[None]:
    """SIGSTOP the node's worker (with its beat and pool: one process group), resumed at the end: its beat
    must not sign and submit AL's own checkpoints while the test, as AL's operator, shows the witnesses what it
    chooses. Stopped only while it holds no transaction (a lock held by a stopped process would block us)."""
    worker = next(p for p in node.children() if b"celery" in Path(f"/proc/{p}/cmdline").read_bytes())
    try:
        for _ in range(50):
            os.killpg(worker, signal.SIGSTOP)
            time.sleep(0.2)
            if not _pg_busy(node):
                break
            os.killpg(worker, signal.SIGCONT)
            time.sleep(0.1)
        else:
            raise AssertionError(f"{node.country}'s database never fell idle")
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker, signal.SIGCONT)


def _spoc_audit(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPOC), "audit", *args], env=node.env, capture_output=True, text=True, timeout=60, check=False
    )


def _witnessed(witness: Node, origin: str) -> dict[str, Any]:
    """What ``witness`` publishes for gossip as the latest checkpoint it cosigned of ``origin``."""
    listed = httpx.get(witness.url + SUBMISSION_PREFIX + "/checkpoints", timeout=15).json()["checkpoints"]
    return next(c for c in listed if c["origin"] == origin)


def test_a_node_that_forks_its_log_is_caught_by_its_peers(region: Region) -> None:
    al, xk, mk = region.nodes["AL"], region.nodes["XK"], region.nodes["MK"]
    with _worker_paused(al):
        # 1. AL signs a checkpoint and both peers' witnesses cosign it, through the installed commands.
        signed_cp = _spoc_audit(al, "checkpoint")
        assert signed_cp.returncode == 0, signed_cp.stdout + signed_cp.stderr
        checked = _spoc_audit(al, "peers")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "cosigned by mk (MK), xk (XK)" in checked.stdout
        with al.officer("regional-auditor") as auditor:
            first = auditor._call("GET", "/v1/audit/checkpoints?limit=1")["checkpoints"][0]
        assert {c["node"] for c in first["peer_cosignatures"]} == {"mk", "xk"}
        origin, n1 = first["origin"], first["size"]
        assert origin == "spoc/al/audit-log"
        assert _witnessed(xk, origin)["size"] == _witnessed(mk, origin)["size"] == n1

        # 2. AL's operator, hostile. The log grows (logins over HTTP are audited); then two checkpoints of one
        # size S, both signed with AL's log key: the stored tree's, shown to XK, and another tree with the
        # same first n1 entries and then others (so that a valid proof from n1 exists), shown to MK.
        for _ in range(3):
            al.officer("al-officer").close()
        with unit_of_work(make_sessionmaker(al.engine)) as session:
            sequence_all(session)
        with unit_of_work(make_sessionmaker(al.engine)) as session:
            keys = DatabaseKeyStore(session, al.master)
            real = cps.issue(session, keys).checkpoint
            assert real is not None
            size, real_note = real.size, real.note
            assert size > n1
            real_proof = StoredTree(session).consistency_proof(n1, size)
            leaves = [
                bytes.fromhex(h)
                for h in session.scalars(select(AuditLeaf.leaf_hash).order_by(AuditLeaf.seq).limit(size))
            ]
            other = leaves[:n1] + [merkle.leaf_hash(f"rewritten {i}".encode()) for i in range(size - n1)]
            forged_root = merkle.root_of(other)
            assert forged_root != real.root
            text_ = cps.CheckpointBody(origin, size, forged_root, int(time.time())).text()
            signer = NoteSigner.from_keypair(origin, key=keys.signing_key(cps.LOG_PARTY))
            forged_note = sign_note(text_, signer)
        forged_proof = [merkle.root_of(other[a:b]) for a, b in merkle.consistency_ranges(n1, size)]
        for witness, proof, note in ((xk, real_proof, real_note), (mk, forged_proof, forged_note)):
            shown = httpx.post(
                witness.url + ADD_CHECKPOINT,
                content=request_body(n1, proof, note),
                headers={"content-type": "text/plain; charset=utf-8"},
                timeout=15,
            )
            assert shown.status_code == 200, shown.text
            assert shown.text.startswith(f"\u2014 spoc/witness/{witness.country.lower()} ")
        assert (_witnessed(xk, origin)["note"], _witnessed(mk, origin)["note"]) == (real_note, forged_note)

        # 3. Gossip, run by each witness's operator with the installed command: each compares the other's
        # view of AL's log with its own, two signed trees of one size, and says so (exit 1).
        for witness in (xk, mk):
            gossiped = _spoc_audit(witness, "peers", "--no-submit")
            assert gossiped.returncode == 1, gossiped.stdout + gossiped.stderr
            assert "peer-fork by witness:al" in gossiped.stdout

            # What the witness node's auditor sees, over HTTP: the alert, and the entry with both signed notes.
            with witness.officer("regional-auditor") as auditor:
                alerts = auditor._call("GET", "/v1/audit/alerts")["alerts"]
                entries = auditor._call("GET", "/v1/audit/entries?action=log:fork-detected&actor=witness:al")[
                    "entries"
                ]
            assert {a["kind"] for a in alerts if a["reporter"] == "witness:al"} == {"peer-fork"}
            assert entries, f"no log:fork-detected entry on {witness.country}'s node"
            details = entries[0]["details"]
            assert details["kind"] == "peer-fork"
            assert {details["evidence"]["ours"], details["evidence"]["theirs"]} == {real_note, forged_note}
            assert details["evidence"]["origin"] == origin
            assert set(entries[0]["countries"]) >= set(COUNTRIES)
