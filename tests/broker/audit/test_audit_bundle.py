"""Exported bundles verify offline, with no database; tampering is caught and the first bad entry named."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from broker.audit import checkpoints as cps
from broker.audit.actions import AuditAction
from broker.audit.bundle import verify_bundle
from broker.audit.export import export_bundle
from broker.audit.models import AuditEntry
from broker.audit.search import EntryFilter, Scope
from broker.audit.service import Actor, record, sequence_all
from broker.cli import app
from broker.config import Settings, get_settings
from broker.crypto import KeyPair
from broker.crypto.note import NoteSigner
from broker.db import make_sessionmaker, unit_of_work
from broker.keys.service import DatabaseKeyStore
from tests.factories import Region

runner = CliRunner()


def spoc_offline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``spoc`` in a fresh process with no database configured at all: the offline path must not need one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    env["SPOC_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # any use would fail loudly
    return subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, region: Region) -> Settings:
    monkeypatch.setenv("SPOC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SPOC_MASTER_KEY", settings.master_key_secret())
    monkeypatch.setenv("SPOC_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    return settings


def write_entries(engine: Engine, actor: str) -> None:
    with unit_of_work(make_sessionmaker(engine)) as session:
        for i, countries in enumerate((["AL", "RS"], ["XK"], ["AL", "ME"], ["AL"])):
            record(
                session,
                actor=Actor(actor, "system"),
                action=AuditAction.MESSAGE_ROUTED,
                object_type="message",
                object_id=f"{actor}-{i}",
                countries=countries,
            )


def test_export_then_verify_offline_and_every_tampering_named(
    cli_env: Settings, engine: Engine, tmp_path: Path
) -> None:
    actor = f"bundle-{uuid.uuid4().hex[:8]}"
    write_entries(engine, actor)
    out = tmp_path / "al.json"
    done = runner.invoke(app, ["audit", "export", "--out", str(out), "--country", "AL", "--actor", actor])
    assert done.exit_code == 0, done.output
    assert "wrote" in done.output
    bundle: dict[str, Any] = json.loads(out.read_text())
    assert bundle["scope"] == "AL"
    assert [e["entry"]["object_id"] for e in bundle["entries"]] == [f"{actor}-{i}" for i in (0, 2, 3)]

    ok = spoc_offline("audit", "verify", str(out), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("bundle verified: 3 entries included in the checkpoint of size ")
    assert not list(tmp_path.glob("*.db"))  # nothing was created: no database was touched

    def verify(mutated: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / f"t-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(mutated))
        return spoc_offline("audit", "verify", str(path), *extra, cwd=tmp_path)

    second = bundle["entries"][1]
    where = f"at position {second['seq']} (entry {second['entry']['id']})"

    altered = copy.deepcopy(bundle)
    altered["entries"][1]["entry"]["outcome"] = "denied"
    result = verify(altered)
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == f"bundle FAILED {where}: the entry does not match its leaf hash (entry altered)"
    )

    rehashed = copy.deepcopy(bundle)  # alter the entry and recompute its leaf hash: the proof still fails
    rehashed["entries"][1]["entry"]["actor"] = "someone-else"
    from broker.audit.service import leaf_hash

    rehashed["entries"][1]["leaf_hash"] = leaf_hash(rehashed["entries"][1]["entry"]).hex()
    result = verify(rehashed)
    assert result.returncode == 1
    assert result.stdout.startswith(f"bundle FAILED {where}: the entry is not in the signed log")

    moved = copy.deepcopy(bundle)  # claim another position
    moved["entries"][1]["seq"] = bundle["entries"][0]["seq"]
    assert verify(moved).returncode == 1

    resigned = copy.deepcopy(bundle)  # a checkpoint signed by someone else
    thief = NoteSigner.from_keypair(cps.ORIGIN, key=KeyPair.generate("sig"))
    body = resigned["checkpoint"].split("\n\n")[0] + "\n"
    resigned["checkpoint"] = body + "\n" + thief.signature_line(body)
    result = verify(resigned)
    assert (result.returncode, result.stdout.strip()) == (
        1,
        "bundle FAILED: a checkpoint is not signed by the log key",
    )

    # Pinning the published key: the bundle's own key list cannot be swapped for the thief's.
    resigned["log_keys"] = [thief.verifier.vkey]
    resigned["earlier_checkpoints"] = []  # (signed by the real key: a forger would drop them too)
    assert verify(resigned).returncode == 0  # self-consistent forgery: why auditors pin the key …
    pinned = verify(resigned, "--log-key", bundle["log_keys"][0])
    assert pinned.returncode == 1  # … and with the real key pinned it fails
    assert verify(bundle, "--log-key", bundle["log_keys"][0]).returncode == 0

    assert spoc_offline("audit", "verify", str(tmp_path / "missing.json"), cwd=tmp_path).returncode == 2
    assert verify(bundle, "--log-key", "not-a-key").returncode == 2
    (tmp_path / "junk.json").write_text("{not json")
    assert spoc_offline("audit", "verify", str(tmp_path / "junk.json"), cwd=tmp_path).returncode == 1


def test_the_checkpoint_and_database_verify_commands(cli_env: Settings, engine: Engine) -> None:
    write_entries(engine, f"cli-{uuid.uuid4().hex[:8]}")
    signed = runner.invoke(app, ["audit", "checkpoint"])
    assert signed.exit_code == 0, signed.output
    lines = signed.output.splitlines()
    assert lines[0] == "spoc/audit-log"
    assert sum(line.startswith("— spoc/witness/") for line in lines) == 8
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("audit log verified:")
    assert runner.invoke(app, ["audit", "verify", "--log-key", "x"]).exit_code == 2


def test_tampering_with_a_stored_entry_is_named_by_the_bundle(db: Session, keys: DatabaseKeyStore) -> None:
    entries = [
        record(
            db,
            actor=Actor("tamper", "system"),
            action=AuditAction.CONTENT_READ,
            object_type="message",
            object_id=f"t{i}",
            countries=["SI"],
        )
        for i in range(6)
    ]
    db.flush()  # record() defers its inserts to the next flush
    ids = [e.id for e in entries]
    sequence_all(db)
    assert cps.issue(db, keys).checkpoint is not None
    victim = ids[3]
    db.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only"))
    db.execute(update(AuditEntry).where(AuditEntry.id == victim).values(outcome="denied"))
    db.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only"))
    db.expire_all()
    bundle = export_bundle(db, Scope("SI"), EntryFilter(actor="tamper"), actor=Actor("t", "admin"))
    report = verify_bundle(json.loads(json.dumps(bundle)))
    assert not report.ok
    assert report.first_bad_entry == victim
    assert report.first_bad_seq == next(e["seq"] for e in bundle["entries"] if e["entry"]["id"] == victim)
    assert "entry altered" in (report.problem or "")
