"""Several writer processes at once (API processes and workers, each also running the sequencer) never fork or
break the log: afterwards every position is taken exactly once and every hash and the root recompute."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from sqlalchemy import Engine, func, select

from broker.audit import merkle
from broker.audit.models import AuditEntry, AuditLeaf, AuditPending
from broker.audit.service import entry_document, leaf_hash, sequence_all, verify_log
from broker.audit.tree import StoredTree
from broker.config import Settings
from broker.db import make_sessionmaker, unit_of_work
from tests.factories import Region

WRITERS = 4
ENTRIES = 1500

SCRIPT = """
import json, sys, time
from broker.audit.bench import hammer
url, tag, entries, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))
ids = hammer(url, entries, tag=tag, per_txn=1 + entries % 3, sequence_every=15)
sys.stdout.write(json.dumps(ids))
"""


def test_concurrent_writers_and_sequencers_keep_one_gapless_log(
    settings: Settings, engine: Engine, region: Region
) -> None:
    start = time.time() + 2.5  # all writers begin together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, settings.database_url, f"writer-{n}", str(ENTRIES), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    per_writer: list[list[int]] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)  # ~20 s on an idle machine; generous for busy CI
            assert proc.returncode == 0, err[-2000:]
            ids = json.loads(out)
            assert len(ids) == ENTRIES
            per_writer.append(ids)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    written = [i for ids in per_writer for i in ids]
    assert len(set(written)) == WRITERS * ENTRIES

    factory = make_sessionmaker(engine)
    with unit_of_work(factory) as session:
        sequence_all(session)
    with unit_of_work(factory) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(AuditPending).where(AuditPending.entry_id.in_(written))
            )
            == 0
        )
        size, low, high = session.execute(
            select(func.count(), func.min(AuditLeaf.seq), func.max(AuditLeaf.seq))
        ).one()
        assert (low, high) == (0, size - 1)  # positions 0..n-1, no gap, no duplicate (seq is the key)
        placed = dict(
            session.execute(
                select(AuditLeaf.entry_id, AuditLeaf.seq).where(AuditLeaf.entry_id.in_(written))
            ).all()
        )
        assert set(placed) == set(written)  # every entry exactly once (entry_id is unique)
        # Each writer's entries keep its commit order in the log (across writers, ids are not commit order).
        for ids in per_writer:
            assert [placed[e] for e in ids] == sorted(placed[e] for e in ids)
        # Every leaf hash recomputes from its entry, and the stored tree's root is the recomputed root.
        leaves = []
        for leaf_row, entry in session.execute(
            select(AuditLeaf, AuditEntry)
            .join(AuditEntry, AuditEntry.id == AuditLeaf.entry_id)
            .order_by(AuditLeaf.seq)
        ).all():
            leaf = leaf_hash(entry_document(entry))
            assert leaf.hex() == leaf_row.leaf_hash, f"position {leaf_row.seq}"
            leaves.append(leaf)
        assert StoredTree(session).root(size) == merkle.root_of(leaves)
        report = verify_log(session)
        assert report.ok, report.line()
        assert report.size == size
