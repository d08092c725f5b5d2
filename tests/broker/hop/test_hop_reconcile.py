"""Reconciliation of hops between two nodes, each its own API process and PostgreSQL database (issue 13).

Requests cross from AL's node to XK's and back over real HTTP; then an auditor (``POST /v1/hop/reconcile``),
the operator (the installed ``spoc region reconcile --peer``) and a regional auditor offline (two exported
ledgers, ``--ledger a --ledger b --anchor``) compare the two nodes' ledgers. A hostile operator then edits
its own node's ``hops`` table — deleting a received hop, deleting a sent one, changing a digest, swapping a
receipt — and each edit is found, named, audited and alerted. Each test reconciles only the period of its
own hops (the others' tampering stays outside it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.bench.hop import Node, Region, region_of_two

SPOC = Path(sys.executable).parent / "spoc"


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Region]:
    del redis_url  # only to skip (or fail under SPOC_REQUIRE_SERVICES) when Redis is down
    with region_of_two(tmp_path_factory.mktemp("reconcile"), redis_dbs=(11, 12)) as made:
        yield made


def _now() -> datetime:
    return datetime.now(UTC)


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hop(origin: Node, destination: Node, agency: str) -> str:
    """A request from ``agency`` approved at ``origin`` and hopped to ``destination`` over HTTP."""
    with origin.agency(agency) as client:
        envelope = client.build(
            payload=b'{"q": "reconcile"}',
            destination_country=destination.country,
            category="drug-trafficking",
            classification="UNCLASSIFIED",
        )
        message_id: str = client.submit(envelope)["message_id"]
    with origin.officer(f"{origin.country.lower()}-officer") as officer:
        officer.decide(message_id, "approve")
    assert origin.send_hops()["sent"] >= 1
    return message_id


def _reconcile_api(node: Node, peer: str, since: datetime) -> dict[str, Any]:
    password = node.seed.accounts["regional-auditor"].password
    with httpx.Client(base_url=node.url, timeout=60) as http:
        token = http.post("/v1/auth/login", json={"username": "regional-auditor", "password": password})
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        answer = http.post(
            "/v1/hop/reconcile",
            json={"peer": peer, "since": _z(since), "until": _z(_now() + timedelta(seconds=5))},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        report: dict[str, Any] = answer.json()
        alerts = http.get("/v1/audit/alerts", headers=headers).json()["alerts"]
    report["_alerts"] = [a for a in alerts if a["kind"] == "hop-mismatch"]
    return report


def _spoc(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")} | node.env
    return subprocess.run(
        [str(SPOC), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


def _audited(node: Node, action: str) -> list[tuple[str, dict[str, Any]]]:
    with node.connect() as conn:
        rows = conn.execute(
            "SELECT outcome, details FROM audit_entries WHERE action = %s ORDER BY id", (action,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_hops_both_ways_reconcile_online_by_api_and_command_and_offline_from_exports(
    region: Region, tmp_path: Path
) -> None:
    al, xk = region.nodes["AL"], region.nodes["XK"]
    since = _now()
    there = [_hop(al, xk, "AL-ASP"), _hop(al, xk, "AL-ASP")]
    back = _hop(xk, al, "XK-KP")

    report = _reconcile_api(al, "xk", since)
    assert report["ok"] is True, report
    assert report["counts"] == {"al->xk": {"sent": 2, "received": 2}, "xk->al": {"sent": 1, "received": 1}}
    for finding in (
        "sent_not_received",
        "received_not_sent",
        "digest_mismatches",
        "bad_receipts",
        "not_in_log",
    ):
        assert report[finding] == []
    outcome, details = _audited(al, "hop:reconciled")[-1]
    assert (outcome, details["peer"], details["counts"]["al->xk"]["sent"]) == ("ok", "xk", 2)
    assert _audited(xk, "audit:exported")  # XK served its ledger to AL, and logged it

    until = _z(_now() + timedelta(seconds=5))
    ran = _spoc(xk, "region", "reconcile", "--peer", "al", "--since", _z(since), "--until", until)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "reconciled" in ran.stdout
    assert "xk->al: 1 sent, 1 received" in ran.stdout

    exports = []
    for node, peer in ((al, "xk"), (xk, "al")):
        out = tmp_path / f"{node.node_id}.ledger.json"
        made = _spoc(
            node,
            "region",
            "ledger",
            "--peer",
            peer,
            "--since",
            _z(since),
            "--until",
            until,
            "--out",
            str(out),
        )
        assert made.returncode == 0, made.stderr
        exports.append(out)
        ledger = json.loads(out.read_text())
        assert {r["id"] for r in ledger["rows"]} >= {*there, back}
        assert all(
            isinstance(r["log_index"], int) and r["inclusion_proof"] is not None for r in ledger["rows"]
        )
    offline = _spoc(
        al,  # any machine: offline reconciliation reads no database
        "region", "reconcile", "--ledger", str(exports[0]), "--ledger", str(exports[1]),
        "--anchor", str(region.anchor), "--since", _z(since), "--until", until, "--json",
    )  # fmt: skip
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads(offline.stdout)["counts"]["al->xk"] == {"sent": 2, "received": 2}

    # An export whose rows were edited after the fact no longer matches the log it cites.
    forged = json.loads(exports[1].read_text())
    forged["rows"][0]["entry"]["details"]["digest"] = "sha-256:" + "0" * 64
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = _spoc(
        al, "region", "reconcile", "--ledger", str(exports[0]), "--ledger", str(tmp_path / "forged.json"),
        "--anchor", str(region.anchor), "--since", _z(since), "--until", until, "--json",
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert [f["node"] for f in json.loads(refused.stdout)["not_in_log"]] == ["xk"]


def test_the_beat_reconciles_with_every_peer_and_records_each_run(region: Region) -> None:
    """The scheduled run (``spoc.region.reconcile``, in the node's own worker environment): every other node
    of the directory, the last 7 days, each run a ``hop:reconciled`` entry by the system; a peer that does
    not answer is recorded as failed, not raised."""
    al = region.nodes["AL"]
    _hop(al, region.nodes["XK"], "AL-ASP")
    before = len(_audited(al, "hop:reconciled"))
    code = "import json; from workers.region_tasks import reconcile; print(json.dumps(reconcile()))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")} | al.env
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == {"xk": "reconciled"}
    runs = _audited(al, "hop:reconciled")[before:]
    assert [(outcome, details["peer"]) for outcome, details in runs] == [("ok", "xk")]
    with al.connect() as conn:
        actor = conn.execute(
            "SELECT actor FROM audit_entries WHERE action = 'hop:reconciled' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert actor is not None
    assert actor[0] == "spoc"

    import workers.region_tasks  # noqa: F401 - registers the task
    from broker.config import Settings
    from workers.celery_app import app, create_celery

    schedule = create_celery(Settings(region_reconcile_seconds=3600)).conf.beat_schedule
    assert schedule["region-reconcile"]["task"] == "spoc.region.reconcile"
    assert schedule["region-reconcile"]["schedule"] == 3600
    assert "region-reconcile" not in create_celery(Settings(region_reconcile_seconds=0)).conf.beat_schedule
    assert "spoc.region.reconcile" in app.tasks


def test_a_received_hop_deleted_by_the_receiving_operator_is_sent_not_received(region: Region) -> None:
    al, xk = region.nodes["AL"], region.nodes["XK"]
    since = _now()
    kept, hidden = _hop(al, xk, "AL-ASP"), _hop(al, xk, "AL-ASP")
    with xk.connect() as conn:  # a hostile operator of XK's node removes what it received
        conn.execute("DELETE FROM hops WHERE message_id = %s AND direction = 'in'", (hidden,))

    until = _z(_now() + timedelta(seconds=5))
    ran = _spoc(al, "region", "reconcile", "--peer", "xk", "--since", _z(since), "--until", until, "--json")
    assert ran.returncode == 2, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert _ids(report["sent_not_received"]) == {hidden}
    assert report["sent_not_received"][0]["from"] == "al"
    assert kept not in json.dumps(report["sent_not_received"])
    assert report["received_not_sent"] == report["digest_mismatches"] == []
    assert "alert" in report
    assert _audited(al, "hop:reconciled")[-1][0] == "mismatch"
    with al.connect() as conn:
        alert = conn.execute(
            "SELECT kind, detail FROM audit_alerts WHERE id = %s", (report["alert"],)
        ).fetchone()
    assert alert is not None
    assert alert[0] == "hop-mismatch"
    assert "1 sent not received" in alert[1]


def test_a_sent_hop_deleted_by_the_sending_operator_is_received_not_sent(region: Region) -> None:
    al, xk = region.nodes["AL"], region.nodes["XK"]
    since = _now()
    hidden = _hop(al, xk, "AL-ASP")
    with al.connect() as conn:  # AL's operator hides that it sent it
        conn.execute("DELETE FROM hops WHERE message_id = %s AND direction = 'out'", (hidden,))

    report = _reconcile_api(xk, "al", since)
    assert report["ok"] is False
    assert _ids(report["received_not_sent"]) == {hidden}
    assert report["received_not_sent"][0]["to"] == "xk"
    assert report["sent_not_received"] == []
    assert any("received not sent" in a["detail"] for a in report["_alerts"])


def test_a_changed_digest_and_a_swapped_receipt_are_found(region: Region) -> None:
    al, xk = region.nodes["AL"], region.nodes["XK"]
    since = _now()
    changed, swapped, other = _hop(al, xk, "AL-ASP"), _hop(al, xk, "AL-ASP"), _hop(al, xk, "AL-ASP")
    with xk.connect() as conn:
        conn.execute(
            "UPDATE hops SET digest = %s WHERE message_id = %s AND direction = 'in'",
            ("sha-256:" + "ab" * 32, changed),
        )
    with al.connect() as conn:  # a receipt of another hop does not prove this one
        conn.execute(
            "UPDATE hops SET receipt = (SELECT receipt FROM hops WHERE message_id = %s AND direction = 'out') "
            "WHERE message_id = %s AND direction = 'out'",
            (other, swapped),
        )

    report = _reconcile_api(al, "xk", since)
    assert report["ok"] is False
    assert [(m["id"], m["sent_digest"] != m["received_digest"]) for m in report["digest_mismatches"]] == [
        (changed, True)
    ]
    bad = {(b["id"], b["held_by"]) for b in report["bad_receipts"]}
    assert (swapped, "al") in bad
    assert (changed, "xk") in bad  # XK's own receipt names the digest it really received
    assert {(n["id"], n["node"]) for n in report["not_in_log"]} == {(changed, "xk")}  # its log says otherwise
    assert report["sent_not_received"] == report["received_not_sent"] == []


def test_an_unknown_peer_is_refused_and_a_peer_s_ledger_needs_its_transport_signature(region: Region) -> None:
    al = region.nodes["AL"]
    assert httpx.get(f"{al.url}/v1/hop/ledger").status_code == 401
    ran = _spoc(al, "region", "reconcile", "--peer", "zz")
    assert ran.returncode == 1
    assert "not another node" in ran.stderr
