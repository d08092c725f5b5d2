"""RFC 9162 Merkle trees (RFC 6962 hashing): roots, inclusion and consistency proofs, and their verification.

Pure functions over hashes; no database. ``broker.audit.tree`` stores the tree and answers proofs from it,
``broker.audit.bundle`` verifies them offline, and both use exactly these definitions.

Hashing (RFC 9162 §2.1.1, identical to RFC 6962): ``leaf = SHA-256(0x00 || entry bytes)``,
``node = SHA-256(0x01 || left || right)``, the empty tree's root is ``SHA-256("")``. The tree over
``n`` leaves splits at ``k``, the largest power of two *smaller* than ``n``: left ``[0, k)``, right
``[k, n)``. Every left subtree is therefore complete, and every node range ``[start, end)`` of any tree
starts at a multiple of the size of its largest complete part.

Nodes are named ``(level, index)``: the complete subtree over leaves ``[index << level, (index + 1) << level)``
(level 0 = the leaf hashes). The hash of any node range is the right-to-left fold of the complete subtrees
it decomposes into (:func:`decompose`), so a store that keeps every complete subtree answers any root or
proof with O(log n) reads, which is how ``audit_nodes`` is laid out.

Proof *shapes* (:func:`inclusion_ranges`, :func:`consistency_ranges`) are the node ranges of RFC 9162's
PATH and SUBPROOF definitions (§2.1.3.1, §2.1.4.1), in the order the RFC lists them; verification
(:func:`verify_inclusion`, :func:`verify_consistency`) is the RFC's §2.1.3.2 and §2.1.4.2 algorithms, step
for step. Failures raise :class:`ProofError` with a precise message: unlike a signature check, nothing in
a Merkle proof is secret, so there is no oracle to avoid and the auditor deserves to know what failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from broker.errors import VerificationError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "Node",
    "ProofError",
    "consistency_ranges",
    "decompose",
    "fold",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_hashes",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

Node = tuple[int, int]
"""``(level, index)``: the complete subtree over leaves ``[index << level, (index + 1) << level)``."""

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


class ProofError(VerificationError):
    """A Merkle proof, root or tree did not verify. The message says which check failed."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def decompose(start: int, end: int) -> list[Node]:
    """The complete subtrees, left to right, whose fold is the hash of node range ``[start, end)``.

    Greedy: at each step the largest aligned power of two that fits. For a node range of an RFC 6962 tree
    that is exactly the RFC's recursive split (left part complete, recurse on the right); a range that is
    not a node range (a misaligned start) is refused rather than silently hashed differently.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start % (1 << level):
            raise ValueError(f"[{start}, {end}) is not a node range of a Merkle tree")
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of a range's complete subtrees (left to right) into the range's hash."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The node ranges of RFC 9162 ``PATH(index, D[0:size])``, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            path.append((start + k, end))
            end = start + k
        else:  # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append((start, start + k))
            start += k
    return path[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The node ranges of RFC 9162 ``PROOF(old, D[0:new]) = SUBPROOF(old, D[0:new], true)``.

    Empty when ``old`` is 0 or equal to ``new``: every tree is consistent with the empty tree and itself.
    """
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    proof: list[tuple[int, int]] = []
    start, end, m, complete = 0, new, old, True
    while True:
        n = end - start
        if m == n:  # SUBPROOF(m, D[m], true) = {} ; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not complete:
                proof.append((start, end))
            break
        k = _split(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append((start, start + k))
            start, m, complete = start + k, m - k, False
    return proof[::-1]


def range_hashes(
    ranges: Sequence[tuple[int, int]], fetch: Callable[[Iterable[Node]], Mapping[Node, bytes]]
) -> list[bytes]:
    """The hashes of node ranges, reading every complete subtree they need in *one* ``fetch`` call.

    ``fetch`` returns the stored hash of each requested node; a missing one is a broken store.
    """
    parts = [decompose(start, end) for start, end in ranges]
    wanted = {node for nodes in parts for node in nodes}
    found = fetch(wanted) if wanted else {}
    missing = wanted - found.keys()
    if missing:
        raise ProofError(f"the tree store lacks {len(missing)} node(s), e.g. {min(missing)}")
    return [fold([found[node] for node in nodes]) for nodes in parts]


class Frontier:
    """The compact range ``[0, size)``: one hash per set bit of ``size``, the largest subtree first.

    Appending a leaf merges equal-sized neighbours, which yields every complete subtree exactly once, at
    the moment it completes: the sequencer stores those, and the verifier recomputes them to compare.
    """

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        nodes = decompose(0, size) if size else []
        if len(nodes) != len(hashes):
            raise ValueError(f"a frontier of size {size} has {len(nodes)} hashes, not {len(hashes)}")
        self.size = size
        self._stack: list[tuple[int, int, bytes]] = [
            (lv, ix, h) for (lv, ix), h in zip(nodes, hashes, strict=True)
        ]

    @staticmethod
    def nodes_of(size: int) -> list[Node]:
        """Which complete subtrees make up the frontier at ``size`` (what to load to resume appending)."""
        return decompose(0, size) if size else []

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add one leaf hash; return the interior nodes (level >= 1) it completed, lowest first."""
        completed: list[tuple[Node, bytes]] = []
        level, index, value = 0, self.size, leaf
        while self._stack and self._stack[-1][0] == level:
            _, left_index, left = self._stack.pop()
            level, index, value = level + 1, left_index >> 1, node_hash(left, value)
            completed.append(((level, index), value))
        self._stack.append((level, index, value))
        self.size += 1
        return completed

    def extend(self, leaves: Sequence[bytes]) -> list[tuple[int, list[bytes]]]:
        """Add many leaf hashes at once; return every node they complete, level by level.

        Element ``L`` of the result is ``(first, hashes)``: the new nodes ``(L, first)``, ``(L, first + 1)``,
        ... of level ``L``, element 0 being the leaves themselves. The nodes are the ones ``append`` yields
        leaf by leaf, computed a level at a time (one SHA-256 call per node over a list of the level below,
        no tuple per node): the full verification's Merkle work at a third of the Python."""
        sha256 = hashlib.sha256
        stack = self._stack
        levels: list[tuple[int, list[bytes]]] = []
        low: list[tuple[int, int, bytes]] = []  # the new frontier's lower subtrees, lowest level first
        level, first, run = 0, self.size, list(leaves)
        while run:
            levels.append((first, run))
            if first & 1:  # the first node's left sibling is the frontier's lowest subtree, of this level
                run = [stack.pop()[2], *run]
                first -= 1
            if len(run) & 1:
                low.append((level, first + len(run) - 1, run[-1]))
            pairs = iter(run)
            run = [sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
            level, first = level + 1, first >> 1
        stack.extend(reversed(low))
        self.size += len(leaves)
        return levels

    def copy(self) -> Frontier:
        """An independent frontier of the same size and hashes."""
        twin = Frontier()
        twin.size, twin._stack = self.size, list(self._stack)
        return twin

    def subtrees(self) -> dict[Node, bytes]:
        """The frontier's complete subtrees by name: ``decompose(0, size)`` with their hashes."""
        return {(level, index): value for level, index, value in self._stack}

    def root(self) -> bytes:
        """RFC 9162 ``MTH(D[0:size])``."""
        return fold([h for _, _, h in self._stack])


def root_of(leaves: Iterable[bytes]) -> bytes:
    """The root over a sequence of leaf hashes, in O(n) time and O(log n) memory."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _lsb(x: int) -> bool:
    return bool(x & 1)


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: check that ``leaf`` is at ``index`` in the tree of ``size`` with ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError(f"leaf {index} is not included in the tree of size {size} with that root")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: check that the tree (``new``, ``new_root``) extends (``old``, ``old_root``).

    The RFC's algorithm covers ``0 < old < new``; the two edge cases are decided directly: every tree
    extends the empty tree (whose root must be ``SHA-256("")``), and a tree extends only itself at its own
    size (equal roots, empty proof).
    """
    if not 0 <= old <= new:
        raise ProofError(f"a tree of size {new} cannot extend one of size {old}")
    if old == 0:
        if proof or old_root != EMPTY_ROOT:
            raise ProofError("a consistency proof from the empty tree is empty, with the empty root")
        return
    if old == new:
        if proof or old_root != new_root:
            raise ProofError(f"two trees of size {old} with different roots: the log forked")
        return
    if not proof:
        raise ProofError("an empty consistency proof between different sizes")
    path = list(proof)
    if old & (old - 1) == 0:  # old is an exact power of two: its root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while _lsb(fn):
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if _lsb(fn) or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError(f"the tree of size {new} does not contain the tree of size {old} with that root")
    if sr != new_root:
        raise ProofError(f"the consistency proof does not lead to the root of the tree of size {new}")


def inclusion_proof_for_bench(session: Session, index: int, size: int) -> list[bytes]:
    """Hook the benchmark runner (``broker.bench.runner``) looks up by name: a stored inclusion proof.

    The one function here that reads the database (imported late): the runner predates
    ``broker.audit.bench.measure``, which is the better entry point.
    """
    from broker.audit.tree import StoredTree

    return StoredTree(session).inclusion_proof(index, size)
