"""Full verification of the stored log: the one place the whole tree is recomputed from the entries.

The rows are read by ``broker.audit.scan`` (on PostgreSQL in binary, read ahead on two more connections
on the same snapshot); this module checks them.

In one pass over the log, in position order, batch by batch:

* each leaf's RFC 6962 hash is recomputed from the canonical bytes the sequencer hashed and kept
  (``audit_leaves.document``) and compared with the stored leaf (altered bytes or leaf), and each chain
  link with the stored link (a rewritten leaf);
* each entry's columns are compared with those bytes (an altered entry): the entry's document is rebuilt
  from its columns as the sequencer builds it and must serialise to exactly the stored bytes. The
  serialisation is orjson with sorted keys, which is RFC 8785 for the values spoc writes; when it differs,
  the full RFC 8785 form decides, so no honest entry is refused. Two equal JSON texts are one value
  (``true`` is not ``1``), so this is exactly as strict as hashing the re-canonicalised entry, as the
  verifier did before the bytes were kept; leaves from before then (``document`` NULL) are still verified
  that way. So an edit of any one stored column (an entry's field, the bytes, the leaf hash, the link) is
  caught at its own position, and only a consistent rewrite of all of them (and of the nodes) is left to
  the signed checkpoints, as before;
* the Merkle frontier is extended with the recomputed leaves; every complete subtree it produces is
  compared with the stored ``audit_nodes`` row that proofs are served from (a doctored proof source);
* whenever the recomputed tree reaches the size of a signed checkpoint, its root must equal the signed
  root (a consistent rewrite of entries, leaves, links and nodes together: only signatures catch that).

Every checkpoint's log signature is checked first, against the log keys in the key registry, under the
origin the row names, which must be one this log has had (the legacy one, or a name a regional directory
gave its key: ``checkpoints.accepted_origins``). The report
names the first bad position: exactly for the first three kinds; for a consistent rewrite, the first
position after the last checkpoint that still matches, which is as precise as signed data allows.

Two ways to run those checks, one verdict. :meth:`_Verifier.slow` is the row-by-row loop: it checks any
batch, on any database, and it alone writes failure reports. On PostgreSQL most ranges come in the
column-wise form of ``scan.Range`` and :meth:`_Verifier.fast` checks them a list at a time, because the
row-by-row loop's Python (a dict per entry, a frontier push per leaf, a tuple per node) cost more than
PostgreSQL reading the rows: each entry's expected bytes are PostgreSQL's concatenation of its flat fields
around the orjson form of its two nested values, compared with the kept bytes; leaf hashes, links and
the tree (``Frontier.extend``, level by level) are lists compared with lists. The fast check only ever
says "every check passed"; on any difference it leaves the state as it was and the same rows go through
the row-by-row loop, which then finds (or clears: a float's RFC 8785 form) what differed and reports it
as it always did. So its reports are the loop's, edit by edit (``tests/.../test_audit_verify_fast.py``).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any, cast

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.audit.checkpoints import accepted_origins, log_public_keys, open_checkpoint
from broker.audit.document import GENESIS
from broker.audit.merkle import EMPTY_ROOT, Frontier, Node, decompose, fold
from broker.audit.models import AuditCheckpoint, AuditEntry, AuditLeaf, AuditPending
from broker.audit.rows import no_cyclic_gc, uses_psycopg
from broker.audit.scan import DETAILS_KEY, Nodes, PostgresScan, Range, Row, generic_batches, stored_nodes
from broker.audit.service import LogReport
from broker.crypto.canonical import canonical
from broker.crypto.note import ED25519, NoteKey
from broker.errors import InvalidInput, VerificationError


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


def _matches(entry: dict[str, Any], document: bytes) -> bool:
    """Whether ``entry`` (rebuilt from the columns) is the JSON value the stored canonical bytes encode.

    orjson with sorted keys first: equal texts parse to equal values (``true`` is not ``1``), and for the
    values spoc writes it is RFC 8785 already, so an honest entry costs one serialisation. Otherwise the
    full RFC 8785 form decides (floats, say), so an honest entry is never refused."""
    if orjson.dumps(entry, option=orjson.OPT_SORT_KEYS) == document:
        return True
    try:
        return canonical(entry) == document
    except InvalidInput:
        return False


def verify_stored_log(session: Session, *, batch: int = 16384, fast: bool = True) -> LogReport:
    """Recompute the whole log from its stored bytes and entries; see the module docstring.

    ``fast=False`` checks PostgreSQL's ranges with the generic loop only (the tests compare the two)."""
    with no_cyclic_gc():
        pending = session.scalar(select(func.count()).select_from(AuditPending)) or 0
        checkpoints, problem = _signed_checkpoints(session)
        if problem is not None:
            return LogReport(False, 0, GENESIS, pending, None, problem)
        return _Verifier(session, pending, checkpoints, fast=fast).run(batch)


class _Verifier:
    """The position, chain head, Merkle frontier and checkpoints of one pass, carried from batch to batch."""

    def __init__(
        self, session: Session, pending: int, checkpoints: list[AuditCheckpoint], *, fast: bool
    ) -> None:
        self.session, self.pending, self.checkpoints, self.use_fast = session, pending, checkpoints, fast
        self.waiting = [c for c in checkpoints if c.size > 0]
        self.frontier = Frontier()
        self.expected_seq, self.prev, self.matched = 0, GENESIS, 0
        self.head = bytes.fromhex(GENESIS)  # ``prev`` as bytes
        self.increasing, self.last_id = True, -1  # every range fast, its entries' ids above the last one

    def fail(self, seq: int, why: str) -> LogReport:
        return LogReport(
            False, self.expected_seq, self.prev, self.pending, seq, why, checkpoints=len(self.checkpoints)
        )

    def run(self, batch: int) -> LogReport:
        session = self.session
        scan = PostgresScan(session, batch) if uses_psycopg(session) else None
        batches = scan.batches() if scan is not None else generic_batches(session, batch)
        try:
            for found in batches:
                if isinstance(found, Range):
                    if self.use_fast and self.fast(found):
                        continue
                    report = self.slow(found.rows(), found.stored_nodes())
                else:
                    report = self.slow(found.rows, found.nodes)
                if report is not None:
                    return report
            if self.waiting:
                checkpoint = self.waiting[0]
                return self.fail(
                    self.expected_seq,
                    f"checkpoint {checkpoint.id} signs {checkpoint.size} entries; the log holds {self.expected_seq}",
                )
            accounted = scan.accounted() if scan is not None else None
        finally:
            batches.close()  # a failure ends the pass early: stop the readers now
            if scan is not None:
                scan.close()
        # An entry commits with its queue row and leaves the queue only as a leaf (one transaction each),
        # so an entry with neither was taken out of the queue by hand: it would never reach the tree.
        # When every range passed the fast check, the log's entries are distinct (increasing ids, range
        # after range) and exist: if they and the queued ones without a leaf are all the entries, none
        # was dropped. Otherwise the anti-join decides, and names the first.
        dropped: tuple[int | None, int] = (None, 0)
        if not (
            self.increasing and accounted is not None and accounted[0] == self.expected_seq + accounted[1]
        ):
            first, count = session.execute(
                select(func.min(AuditEntry.id), func.count())
                .where(~select(AuditLeaf.seq).where(AuditLeaf.entry_id == AuditEntry.id).exists())
                .where(~select(AuditPending.entry_id).where(AuditPending.entry_id == AuditEntry.id).exists())
            ).one()
            dropped = first, int(count)
        if dropped[1]:
            return self.fail(
                self.expected_seq,
                f"{dropped[1]} entries (first: entry {dropped[0]}) were removed from the queue and never "
                "entered the log",
            )
        return LogReport(
            True,
            self.expected_seq,
            self.prev,
            self.pending,
            root=self.frontier.root().hex(),
            checkpoints=len(self.checkpoints),
        )

    def fast(self, found: Range) -> bool:
        """Check a PostgreSQL range column by column; True if every check passed (the state advanced).

        Strictly the checks of :meth:`slow`, computed a list at a time: the canonical bytes the columns
        make, compared with the kept ones; the leaf hashes; the chain; the tree level by level and the
        checkpoints and stored nodes it reaches. Any difference (an edit, a legacy leaf, a float whose
        RFC 8785 form is not orjson's) returns False with the state untouched, and :meth:`slow` then
        checks the same rows one by one and names what is wrong, as it always did."""
        if not found.seqs:
            return True
        start, n = self.expected_seq, len(found.seqs)
        leaf_hashes, links, countries, tails = found.leaf_hashes, found.links, found.countries, found.tails
        if found.seqs != tuple(range(start, start + n)) or None in found.documents:
            return False
        documents = cast(list[bytes], list(found.documents))  # no None: checked above
        dumps, loads, sort, sha256 = orjson.dumps, orjson.loads, orjson.OPT_SORT_KEYS, hashlib.sha256
        try:  # the entries' canonical bytes; most share their countries
            nested = {value: dumps(loads(value), option=sort) + DETAILS_KEY for value in set(countries)}
            rebuilt = [
                b"".join((head, nested[listed], dumps(loads(more), option=sort), tail))
                for head, listed, more, tail in zip(found.heads, countries, found.details, tails, strict=True)
            ]
        except (TypeError, ValueError):
            return False
        if rebuilt != documents:
            return False
        leaves = [sha256(b"\x00" + document).digest() for document in documents]
        if not _same_hex(leaves, leaf_hashes):
            return False
        link = self.head
        chain = [(link := sha256(link + leaf).digest()) for leaf in leaves]
        if not _same_hex(chain, links):
            return False
        before = self.frontier.copy()
        levels = self.frontier.extend(leaves)
        matched, reached = self.matched, 0
        for checkpoint in self.waiting:
            if checkpoint.size > start + n:
                break
            if _root_at(checkpoint.size, before.subtrees(), levels) != checkpoint.root:
                self.frontier = before
                return False
            matched, reached = checkpoint.size, reached + 1
        if not _same_nodes(levels, found.nodes):
            self.frontier = before
            return False
        self.expected_seq, self.prev, self.head, self.matched = start + n, links[-1], chain[-1], matched
        self.increasing = self.increasing and found.entry_ids[0] > self.last_id
        self.last_id = found.entry_ids[-1]
        del self.waiting[:reached]
        return True

    def slow(self, rows: list[Row], nodes: dict[Node, bytes] | None) -> LogReport | None:
        """Check ``rows`` one by one, then the nodes they complete against the stored ``nodes`` (None: read
        them); the report of the first failure, or None."""
        self.increasing = self.increasing and not rows
        frontier, waiting, sha256 = self.frontier, self.waiting, hashlib.sha256
        computed: dict[Node, bytes] = {}
        for seq, entry_id, stored_leaf, stored_link, kept, entry in rows:
            if seq != self.expected_seq:
                return self.fail(self.expected_seq, f"position {self.expected_seq} is missing")
            if entry is None:
                return self.fail(seq, f"the entry of position {seq} is missing (deleted)")
            if kept is None:  # appended before the bytes were kept: the entry is what was hashed
                try:
                    document = canonical(entry)
                except InvalidInput:
                    return self.fail(
                        seq, f"entry {entry_id} cannot be the entry that was hashed (entry altered)"
                    )
            elif _matches(entry, kept):
                document = kept
            else:
                return self.fail(
                    seq, f"entry {entry_id} does not match the bytes its leaf hashes (entry altered)"
                )
            leaf = sha256(b"\x00" + document).digest()
            if leaf.hex() != stored_leaf:
                return self.fail(
                    seq, f"entry {entry_id} does not match its leaf hash (entry, bytes or leaf altered)"
                )
            if sha256(bytes.fromhex(self.prev) + leaf).hexdigest() != stored_link:
                return self.fail(seq, f"entry {entry_id}'s chain link is broken (leaf rewritten)")
            computed.update(frontier.append(leaf))
            self.prev = stored_link
            self.head = bytes.fromhex(stored_link)
            self.expected_seq += 1
            while waiting and waiting[0].size == self.expected_seq:
                checkpoint = waiting.pop(0)
                if frontier.root() != checkpoint.root:
                    return self.fail(
                        self.matched,
                        f"entries {self.matched}..{self.expected_seq - 1} do not match signed checkpoint "
                        f"{checkpoint.id} of size {checkpoint.size} (log rewritten)",
                    )
                self.matched = self.expected_seq
        stored = nodes if nodes is not None else stored_nodes(self.session, computed)
        bad = sorted(
            (index << level, level, index)
            for (level, index), h in computed.items()
            if stored.get((level, index)) != h
        )
        if bad:
            start, level, index = bad[0]
            return self.fail(
                start,
                f"stored tree node ({level}, {index}) does not match entries {start}..{start + (1 << level) - 1}",
            )
        return None


def _root_at(size: int, before: dict[Node, bytes], levels: list[tuple[int, list[bytes]]]) -> bytes:
    """The root at ``size`` from the subtrees before a batch and the nodes the batch completed (``extend``)."""
    hashes = []
    for level, index in decompose(0, size):
        value = before.get((level, index))
        if value is None:  # ends inside the batch: one of its nodes
            first, run = levels[level]
            value = run[index - first]
        hashes.append(value)
    return fold(hashes)


def _same_hex(digests: list[bytes], stored: tuple[str, ...]) -> bool:
    """Whether each stored hex string is exactly the hex of its digest: every one 64 characters long, so
    the two concatenations are equal only if each pair is (one string each side, not one per row)."""
    return set(map(len, stored)) <= {64} and b"".join(digests).hex() == "".join(stored)


def _same_nodes(levels: list[tuple[int, list[bytes]]], stored: Nodes) -> bool:
    """Whether the stored nodes are exactly the ones ``Frontier.extend`` completed, level by level in index
    order: the same levels, indexes and hashes, position by position."""
    computed = list(enumerate(levels[1:], start=1))
    concat = itertools.chain.from_iterable
    return (
        stored.hashes == tuple(concat(hashes for _, (_, hashes) in computed))
        and stored.indexes
        == tuple(concat(range(first, first + len(hashes)) for _, (first, hashes) in computed))
        and stored.levels
        == tuple(concat(itertools.repeat(level, len(hashes)) for level, (_, hashes) in computed))
    )
