"""Full verification of the stored log: the one place the whole tree is recomputed from the entries.

In one pass over the log, in position order, batch by batch:

* each entry's RFC 6962 leaf hash is recomputed from its canonical document and compared with the stored
  leaf (an altered entry), and each chain link with the stored link (a rewritten leaf);
* the Merkle frontier is extended with the recomputed leaves; every complete subtree it produces is
  compared with the stored ``audit_nodes`` row that proofs are served from (a doctored proof source);
* whenever the recomputed tree reaches the size of a signed checkpoint, its root must equal the signed
  root (a consistent rewrite of entries, leaves, links and nodes together: only signatures catch that).

Every checkpoint's log signature is checked first, against the log keys in the key registry, under the
origin the row names, which must be one this log has had (the legacy one, or a name a regional directory
gave its key: ``checkpoints.accepted_origins``). The report
names the first bad position: exactly for the first three kinds; for a consistent rewrite, the first
position after the last checkpoint that still matches, which is as precise as signed data allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from broker.audit.checkpoints import accepted_origins, log_public_keys, open_checkpoint
from broker.audit.merkle import EMPTY_ROOT, Frontier, Node
from broker.audit.models import AuditCheckpoint, AuditEntry, AuditLeaf, AuditNode, AuditPending
from broker.audit.service import GENESIS, LogReport, chain_hash, entry_document, leaf_hash
from broker.audit.tree import among
from broker.crypto.note import ED25519, NoteKey
from broker.errors import VerificationError


def _check(leaf_row: Any, entry: Any, expected_seq: int, prev: str) -> tuple[bytes | None, str]:
    """One position: in order, its entry hashes to its leaf, and its chain link holds."""
    if leaf_row.seq != expected_seq:
        return None, f"position {expected_seq} is missing"
    leaf = leaf_hash(entry_document(entry))
    if leaf.hex() != leaf_row.leaf_hash:
        return None, f"entry {entry.id} does not match its leaf hash (entry altered)"
    if chain_hash(prev, leaf) != leaf_row.chain_hash:
        return None, f"entry {entry.id}'s chain link is broken (leaf rewritten)"
    return leaf, ""


def _stored_nodes(session: Session, computed: dict[Node, bytes]) -> dict[Node, bytes]:
    """The stored nodes among ``computed``: one range condition per level (they are contiguous)."""
    spans: dict[int, list[int]] = {}
    for level, index in computed:
        low_high = spans.setdefault(level, [index, index])
        low_high[0], low_high[1] = min(low_high[0], index), max(low_high[1], index)
    if not spans:
        return {}
    rows = session.execute(
        select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(
            or_(
                *(
                    and_(AuditNode.level == lv, AuditNode.idx.between(lo, hi))
                    for lv, (lo, hi) in spans.items()
                )
            )
        )
    ).all()
    return {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}


def _signed_checkpoints(session: Session) -> tuple[list[AuditCheckpoint], str | None]:
    """All checkpoints by size, after checking each one's log signature; or the first bad one's problem."""
    keys = log_public_keys(session)
    origins = accepted_origins(session)
    rows = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size, AuditCheckpoint.id)))
    for row in rows:
        raw = keys.get(row.kid)
        try:
            if raw is None or row.origin not in origins:
                raise VerificationError("unknown or revoked log key, or an origin this log never had")
            body = open_checkpoint(row.note, [NoteKey(row.origin, ED25519, raw)])
        except VerificationError:
            return rows, f"checkpoint {row.id} does not carry a valid signature by a current log key"
        if (body.size, body.root) != (row.size, row.root):
            return rows, f"checkpoint {row.id}'s stored size or root differs from its signed note"
        if row.size == 0 and row.root != EMPTY_ROOT:
            return rows, f"checkpoint {row.id} signs a non-empty root for the empty log"
    return rows, None


def verify_stored_log(session: Session, *, batch: int = 5000) -> LogReport:
    """Recompute the whole log from its entries; see the module docstring for what is compared."""
    pending = session.scalar(select(func.count()).select_from(AuditPending)) or 0
    checkpoints, problem = _signed_checkpoints(session)
    if problem is not None:
        return LogReport(False, 0, GENESIS, pending, None, problem)
    waiting = [c for c in checkpoints if c.size > 0]
    frontier = Frontier()
    expected_seq, prev, matched = 0, GENESIS, 0

    def fail(seq: int, why: str) -> LogReport:
        return LogReport(False, expected_seq, prev, pending, seq, why, checkpoints=len(checkpoints))

    while True:
        # Plain rows, not ORM objects: the walk reads each row once, and identity-mapping a million
        # objects would cost more than hashing them.
        connection = session.connection()
        leaves: Sequence[Any] = connection.execute(
            select(AuditLeaf.__table__)
            .where(AuditLeaf.seq >= expected_seq)
            .order_by(AuditLeaf.seq)
            .limit(batch)
        ).all()
        if not leaves:
            break
        entries = {
            e.id: e
            for e in connection.execute(
                select(AuditEntry.__table__).where(
                    among(AuditEntry.id, [leaf.entry_id for leaf in leaves], connection.dialect.name)
                )
            )
        }
        rows = [(leaf, entries.get(leaf.entry_id)) for leaf in leaves]
        computed: dict[Node, bytes] = {}
        for leaf_row, entry in rows:
            if entry is None:
                return fail(expected_seq, f"the entry of position {leaf_row.seq} is missing (deleted)")
            leaf, why = _check(leaf_row, entry, expected_seq, prev)
            if leaf is None:
                return fail(expected_seq, why)
            computed.update(frontier.append(leaf))
            prev = leaf_row.chain_hash
            expected_seq += 1
            while waiting and waiting[0].size == expected_seq:
                checkpoint = waiting.pop(0)
                if frontier.root() != checkpoint.root:
                    return fail(
                        matched,
                        f"entries {matched}..{expected_seq - 1} do not match signed checkpoint "
                        f"{checkpoint.id} of size {checkpoint.size} (log rewritten)",
                    )
                matched = expected_seq
        stored = _stored_nodes(session, computed)
        bad = sorted(
            (index << level, level, index)
            for (level, index), h in computed.items()
            if stored.get((level, index)) != h
        )
        if bad:
            start, level, index = bad[0]
            return fail(
                start,
                f"stored tree node ({level}, {index}) does not match entries {start}..{start + (1 << level) - 1}",
            )
    if waiting:
        checkpoint = waiting[0]
        return fail(
            expected_seq,
            f"checkpoint {checkpoint.id} signs {checkpoint.size} entries; the log holds {expected_seq}",
        )
    # An entry commits with its queue row and leaves the queue only as a leaf (one transaction each),
    # so an entry with neither was taken out of the queue by hand: it would never reach the tree.
    dropped = session.execute(
        select(func.min(AuditEntry.id), func.count())
        .where(~select(AuditLeaf.seq).where(AuditLeaf.entry_id == AuditEntry.id).exists())
        .where(~select(AuditPending.entry_id).where(AuditPending.entry_id == AuditEntry.id).exists())
    ).one()
    if dropped[1]:
        return fail(
            expected_seq,
            f"{dropped[1]} entries (first: entry {dropped[0]}) were removed from the queue and never "
            "entered the log",
        )
    return LogReport(
        True, expected_seq, prev, pending, root=frontier.root().hex(), checkpoints=len(checkpoints)
    )
