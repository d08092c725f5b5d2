"""Nodes witness each other over HTTP (C2SP tlog-witness), each on its own PostgreSQL database.

AL's, XK's and MK's nodes, joined by one signed directory (with an external log whose node is down): each
node's checkpoints carry its own origin, are sent to every peer's witness and come back cosigned by the other
countries' nodes; the auditor's bundle carries those cosignatures and the directory naming their keys, and
``spoc audit verify`` says which countries cosigned, offline. A node that forks its log — a hostile operator
writing a second signed checkpoint of one size into its own database and showing each witness a different
one — is caught: by the witness that is shown both, and by gossip between the witnesses that each saw one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import checkpoints as cps
from broker.audit import merkle
from broker.audit.actions import AuditAction
from broker.audit.export import export_bundle
from broker.audit.models import AuditAlert, AuditCheckpoint, AuditEntry, AuditLeaf
from broker.audit.search import EntryFilter, Scope
from broker.audit.service import SYSTEM, Actor, record, sequence_all
from broker.audit.tree import StoredTree
from broker.audit.witness import witnesses as local_witnesses
from broker.crypto.note import NoteKey, NoteSigner, open_note, sign_note
from broker.messages.models import ReviewNotification
from broker.witness.gossip import gossip_all
from broker.witness.models import WitnessSubmission
from broker.witness.protocol import ADD_CHECKPOINT, request_body
from broker.witness.report import peer_report
from broker.witness.submit import submit_all
from tests.broker.witness.nodes import Node, Region

SPOC = Path(sys.executable).parent / "spoc"


def grow(node: Node, n: int = 3) -> None:
    with node.session() as session:
        for i in range(n):
            record(
                session,
                actor=SYSTEM,
                action=AuditAction.MESSAGE_QUEUED,
                object_type="message",
                object_id=f"w{i}",
            )
    with node.session() as session:
        sequence_all(session)


def checkpoint(node: Node) -> AuditCheckpoint:
    grow(node)
    with node.session() as session:
        issued = cps.issue(session, node.keys(session)).checkpoint
        assert issued is not None
        session.expunge(issued)
        return issued


def directory_key(region: Region, node_id: str, member: str) -> NoteKey:
    node = next(n for n in region.directory["directory"]["nodes"] if n["node_id"] == node_id)
    return NoteKey.from_vkey(node[member])


def test_each_node_s_checkpoints_are_cosigned_by_the_other_countries_nodes(
    witness_region: Region, tmp_path: Path
) -> None:
    al = witness_region.nodes["AL"]
    first = checkpoint(al)
    assert first.origin == "spoc/al/audit-log"  # the name the directory gives AL's log key
    # The in-node witnesses are the contact points this node holds: the other countries' contact points,
    # known here by public keys only, witness from their own nodes (the beat's local round must not try them).
    with al.session() as session:
        assert local_witnesses(session) == ["AL-SPOC"]
    with witness_region.network() as network:
        done = {s.node_id: s.status for s in submit_all(al.sessions, network)}
        assert done == {"xk": "cosigned", "mk": "cosigned", "ext": "unreachable"}
        assert {s.node_id: s.status for s in submit_all(al.sessions, network)}["xk"] == "already"
        later = checkpoint(al)  # larger: sent with the consistency proof from the size each witness has
        assert {s.node_id: s.status for s in submit_all(al.sessions, network)}["mk"] == "cosigned"
    with al.session() as session:
        note = cps.full_note(session, session.get(AuditCheckpoint, later.id))  # type: ignore[arg-type]
        described = cps.describe(session, session.get(AuditCheckpoint, later.id))  # type: ignore[arg-type]
        state = session.get(WitnessSubmission, ("xk", later.origin))
        assert state is not None
        assert state.size == later.size
        report = peer_report(session)
    witnesses = [directory_key(witness_region, n, "witness_key") for n in ("xk", "mk")]
    assert {k.name for k in open_note(note, verifiers=witnesses).signers} == {
        "spoc/witness/xk",
        "spoc/witness/mk",
    }
    assert [(c["node"], c["countries"]) for c in described["peer_cosignatures"]] == [
        ("mk", ["MK"]),
        ("xk", ["XK"]),
    ]
    assert (report.cosigned, report.missing) == ({"mk": ["MK"], "xk": ["XK"]}, {"ext": ["ME"]})

    # The operator's check, through the installed command on AL's node: MK and XK cosigned, ext (down) did not.
    settings = al.settings
    assert settings.master_key is not None
    node_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")} | {
        "SPOC_ENVIRONMENT": "test",
        "SPOC_DATABASE_URL": settings.database_url,
        "SPOC_MASTER_KEY": settings.master_key.get_secret_value(),
        "SPOC_DATA_DIR": str(settings.data_dir),
        "SPOC_REGION_ANCHOR": str(witness_region.anchor),
    }
    checked = subprocess.run(
        [str(SPOC), "audit", "peers", "--no-submit", "--no-gossip"],
        env=node_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "cosigned by mk (MK), xk (XK); not cosigned by ext (ME)" in checked.stdout

    # The auditor's bundle: the peers' cosignatures and the signed directory, verified offline by the command.
    with al.session() as session:
        bundle = export_bundle(session, Scope(None), EntryFilter(), actor=Actor("auditor", "auditor"))
    assert bundle["region_directory"] == witness_region.directory
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    anchor = str(witness_region.anchor)
    verified = subprocess.run(
        [str(SPOC), "audit", "verify", str(path), "--region-anchor", anchor],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "peer nodes' witnesses: MK, XK (directory version 1 signed by governance key" in verified.stdout
    # A cosignature altered by one character is caught, and named.
    line = next(x for x in bundle["checkpoint"].splitlines() if x.startswith("\u2014 spoc/witness/xk "))
    name, blob = line.rsplit(" ", 1)
    forged = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    bundle["checkpoint"] = bundle["checkpoint"].replace(line, f"{name} {forged}")
    path.write_text(json.dumps(bundle))
    refused = subprocess.run(
        [str(SPOC), "audit", "verify", str(path), "--region-anchor", anchor],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "the cosignature of peer witness spoc/witness/xk does not verify" in refused.stdout


def _hostile_checkpoint(session: Session, node: Node, size: int, root: bytes) -> AuditCheckpoint:
    """What a hostile operator of a node can do: sign any tree head with its own log key, and store it."""
    pair = node.keys(session).signing_key(cps.LOG_PARTY)
    origin = cps.log_origin(session)
    text = cps.CheckpointBody(origin, size, root, 1_800_000_000).text()
    row = AuditCheckpoint(
        origin=origin,
        size=size,
        root=root,
        kid=pair.kid,
        note=sign_note(text, NoteSigner.from_keypair(origin, key=pair)),
    )
    session.add(row)
    session.flush()
    session.expunge(row)
    return row


def _submit_to(region: Region, witness: Node, origin: str, old: int, proof: list[bytes], note: str) -> int:
    """The hostile log chooses which witness sees what: one add-checkpoint to one witness, by HTTP."""
    with region.network() as network:
        answer = network.post(witness.url + ADD_CHECKPOINT, content=request_body(old, proof, note))
    return answer.status_code


def test_a_node_that_forks_its_log_is_caught_by_its_peers(witness_region: Region) -> None:
    al, xk, mk = (witness_region.nodes[c] for c in ("AL", "XK", "MK"))
    honest = checkpoint(al)
    with witness_region.network() as network:
        submit_all(al.sessions, network)  # both witnesses hold AL's tree of size n1
    n1 = honest.size
    grow(al, 4)
    with al.session() as session:
        n2 = StoredTree(session).size()
        real = cps.issue(session, al.keys(session)).checkpoint
        assert real is not None
        assert real.size == n2
        real_note, real_proof = real.note, StoredTree(session).consistency_proof(n1, n2)
        leaves = [
            bytes.fromhex(h) for h in session.scalars(select(AuditLeaf.leaf_hash).order_by(AuditLeaf.seq))
        ]
    # XK is shown the real tree of size n2 ...
    assert _submit_to(witness_region, xk, honest.origin, n1, real_proof, real_note) == 200
    # ... MK another tree of the same size: the same first n1 entries, then others (a valid proof from n1).
    other = leaves[:n1] + [merkle.leaf_hash(f"rewritten {i}".encode()) for i in range(n2 - n1)]
    fake_root = merkle.root_of(other)
    with al.session() as session:
        fork = _hostile_checkpoint(session, al, n2, fake_root)
    fake_proof = [merkle.root_of(other[a:b]) for a, b in merkle.consistency_ranges(n1, n2)]
    assert _submit_to(witness_region, mk, fork.origin, n1, fake_proof, fork.note) == 200

    # Gossip: XK compares MK's view of AL's log with its own: two signed trees of one size.
    with witness_region.network() as network:
        found = [f for f in gossip_all(xk.sessions, network) if f.origin == honest.origin]
    assert [(f.peer, f.status) for f in found] == [("mk", "fork")]
    with xk.session() as session:
        alert = session.scalar(select(AuditAlert).where(AuditAlert.reporter == "witness:al"))
        assert alert is not None
        assert alert.kind == "peer-fork"
        entry = session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "log:fork-detected", AuditEntry.actor == "witness:al"
            )
        )
        assert entry is not None
        assert set(entry.countries) >= {"AL", "XK", "MK"}
        assert {entry.details["evidence"]["ours"], entry.details["evidence"]["theirs"]} == {
            real_note,
            fork.note,
        }
        told = session.scalars(
            select(ReviewNotification.text).where(ReviewNotification.contact_point_id == "XK-SPOC")
        )
        assert any("peer-fork" in t for t in told)

    # The forking node's own beat sends its latest (the forged) checkpoint to XK too: refused with 409 there.
    with witness_region.network() as network:
        assert {s.node_id: s.status for s in submit_all(al.sessions, network)}["xk"] == "refused"

    # Different sizes: XK moves on with AL's real log; MK asks AL's node for the proof between the two sizes
    # and it cannot join MK's tree to the real one.
    grow(al, 2)
    with al.session() as session:
        n3 = StoredTree(session).size()
        real3 = _hostile_checkpoint(session, al, n3, StoredTree(session).root(n3))  # the real root, signed
        proof3 = StoredTree(session).consistency_proof(n2, n3)
    assert _submit_to(witness_region, xk, real3.origin, n2, proof3, real3.note) == 200
    with witness_region.network() as network:
        seen = [f for f in gossip_all(mk.sessions, network) if f.origin == honest.origin]
    assert [(f.peer, f.status) for f in seen] == [("xk", "inconsistent")]
    with mk.session() as session:
        kinds = set(session.scalars(select(AuditAlert.kind).where(AuditAlert.reporter == "witness:al")))
        assert kinds == {"peer-inconsistent"}
        assert peer_report(session).alerts  # what `spoc audit peers` fails on
