"""The sequencer's bulk insert: what it sends as one text per column must come back as the same values."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.models import AuditLeaf, AuditNode
from broker.audit.service import SYSTEM, record
from broker.audit.tree import _joined, insert_rows


def test_values_are_joined_only_when_they_split_back_the_same() -> None:
    assert _joined([1, 22, 333]) == "1,22,333"
    assert _joined(["ab", "cd"]) == "ab,cd"
    assert _joined([b"\x00,", b"\xff"]) == "\\x002c,\\xff"
    assert _joined(["a,b", "c"]) is None  # a comma inside a value would split it in two
    assert _joined(["", "c"]) is None  # an empty value would vanish
    assert _joined([1, "1"]) is None  # mixed types
    assert _joined([True, False]) is None  # booleans are not integers here


def test_nodes_and_leaves_round_trip_through_both_paths(db: Session) -> None:
    nodes = [{"level": 40, "idx": i, "hash": bytes([i, 44, 0, 255]) * 8} for i in range(3)]
    insert_rows(db, AuditNode, nodes)
    stored = db.execute(select(AuditNode.idx, AuditNode.hash).where(AuditNode.level == 40)).all()
    assert sorted((i, bytes(h)) for i, h in stored) == [(n["idx"], n["hash"]) for n in nodes]

    entries = [
        record(db, actor=SYSTEM, action=AuditAction.MESSAGE_QUEUED, object_type="test", object_id=str(i))
        for i in range(2)
    ]
    db.flush()
    base = 10**12  # far beyond the test log's positions
    leaves = [
        {"seq": base, "entry_id": entries[0].id, "leaf_hash": "plain", "chain_hash": "x"},
        {"seq": base + 1, "entry_id": entries[1].id, "leaf_hash": "with,comma", "chain_hash": "y"},
    ]
    insert_rows(db, AuditLeaf, leaves)  # leaf_hash goes as an array, the other columns as text
    stored_leaves = db.execute(
        select(AuditLeaf.seq, AuditLeaf.entry_id, AuditLeaf.leaf_hash, AuditLeaf.chain_hash).where(
            AuditLeaf.seq >= base
        )
    ).all()
    assert [tuple(r) for r in stored_leaves] == [tuple(leaf.values()) for leaf in leaves]
