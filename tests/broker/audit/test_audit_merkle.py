"""RFC 9162 Merkle trees: known answers, and proofs checked against the RFC's own definitions for many sizes.

The reference functions below are the RFC 9162 §2.1 definitions transcribed literally (recursive MTH, PATH
and SUBPROOF over a list of leaves); ``broker.audit.merkle`` computes the same things iteratively from
stored subtrees. Hypothesis compares the two over many tree sizes and checks that the RFC verification
algorithms accept every proof and refuse every altered one.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.audit import merkle
from broker.audit.merkle import Frontier, ProofError

# RFC 6962 test vectors (certificate-transparency's merkle_tree_test; shared by Go's internal/tlog).
LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
h = bytes.fromhex


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# --- RFC 9162 §2.1, literally -------------------------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return merkle.node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True) if 0 < m < len(d) else []


def store(d: list[bytes]) -> dict[merkle.Node, bytes]:
    """Every complete subtree of ``d``, as ``audit_nodes`` (plus level 0) holds them."""
    nodes = {(0, i): leaf for i, leaf in enumerate(d)}
    frontier = Frontier()
    for leaf in d:
        nodes.update(frontier.append(leaf))
    return nodes


def fetch_from(nodes: dict[merkle.Node, bytes]):  # type: ignore[no-untyped-def]  # a local test seam
    return lambda keys: {k: nodes[k] for k in keys if k in nodes}


# --- known answers -------------------------------------------------------------------------------------


def test_roots_match_the_rfc6962_vectors() -> None:
    hashed = [merkle.leaf_hash(h(x)) for x in LEAVES]
    for n in range(1, 9):
        assert merkle.root_of(hashed[:n]).hex() == ROOTS[n - 1]
        assert mth(hashed[:n]).hex() == ROOTS[n - 1]
    assert merkle.root_of([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT


def test_inclusion_and_consistency_vectors_verify() -> None:
    hashed = [merkle.leaf_hash(h(x)) for x in LEAVES]
    audit_path = [
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]
    assert path(5, hashed) == audit_path
    assert merkle.range_hashes(merkle.inclusion_ranges(5, 8), fetch_from(store(hashed))) == audit_path
    merkle.verify_inclusion(5, 8, hashed[5], audit_path, h(ROOTS[7]))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(4, 8, hashed[5], audit_path, h(ROOTS[7]))
    merkle.verify_inclusion(2, 3, hashed[2], [h(ROOTS[1])], h(ROOTS[2]))

    six_to_eight = [
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]
    assert merkle.range_hashes(merkle.consistency_ranges(6, 8), fetch_from(store(hashed))) == six_to_eight
    merkle.verify_consistency(6, 8, h(ROOTS[5]), h(ROOTS[7]), six_to_eight)
    with pytest.raises(ProofError):
        merkle.verify_consistency(6, 8, h(ROOTS[4]), h(ROOTS[7]), six_to_eight)
    two_to_five = [
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ]
    merkle.verify_consistency(2, 5, h(ROOTS[1]), h(ROOTS[4]), two_to_five)


# --- properties over many sizes ------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=600)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=sizes)
def test_inclusion_proofs_from_stored_subtrees_are_the_rfc_path(data: st.DataObject, n: int) -> None:
    d = leaves(n)
    index = data.draw(st.integers(0, n - 1))
    got = merkle.range_hashes(merkle.inclusion_ranges(index, n), fetch_from(store(d)))
    assert got == path(index, d)
    root = mth(d)
    assert merkle.range_hashes([(0, n)], fetch_from(store(d))) == [root]
    merkle.verify_inclusion(index, n, d[index], got, root)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=sizes)
def test_altered_inclusion_proofs_are_refused(data: st.DataObject, n: int) -> None:
    d = leaves(n)
    index = data.draw(st.integers(0, n - 1))
    good = path(index, d)
    root = mth(d)
    if good:  # flip one bit of one proof hash
        at = data.draw(st.integers(0, len(good) - 1))
        bad = [*good]
        bad[at] = bytes([bad[at][0] ^ 1]) + bad[at][1:]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, n, d[index], bad, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, n, d[index], good[:-1], root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, n, d[index], [*good, root], root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, n, merkle.leaf_hash(b"forged"), good, root)
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index)) if n > 1 else None
    if other is not None and d[other] != d[index]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(other, n, d[index], good, root)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), new=sizes)
def test_consistency_proofs_from_stored_subtrees_are_the_rfc_proof(data: st.DataObject, new: int) -> None:
    d = leaves(new)
    old = data.draw(st.integers(0, new))
    got = merkle.range_hashes(merkle.consistency_ranges(old, new), fetch_from(store(d)))
    assert got == proof(old, d)
    merkle.verify_consistency(old, new, mth(d[:old]), mth(d), got)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), new=st.integers(min_value=2, max_value=600))
def test_forks_and_altered_consistency_proofs_are_refused(data: st.DataObject, new: int) -> None:
    d = leaves(new)
    old = data.draw(st.integers(1, new - 1))
    good = proof(old, d)
    forked = [*d]
    forked[data.draw(st.integers(0, old - 1))] = merkle.leaf_hash(b"rewritten")
    with pytest.raises(ProofError):  # the new tree does not contain the old one as it was
        merkle.verify_consistency(old, new, mth(d[:old]), mth(forked), proof(old, forked))
    at = data.draw(st.integers(0, len(good) - 1))
    bad = [*good]
    bad[at] = bytes([bad[at][0] ^ 0x80]) + bad[at][1:]
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, mth(d[:old]), mth(d), bad)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, new, mth(d[:old]), mth(d), good[1:])
    with pytest.raises(ProofError):  # same size, two roots: a fork
        merkle.verify_consistency(new, new, mth(d), mth(forked), [])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=0, max_value=2000))
def test_the_frontier_root_is_mth_and_resumes_from_its_nodes(n: int) -> None:
    d = leaves(n + 3)
    frontier = Frontier()
    for leaf in d[:n]:
        frontier.append(leaf)
    assert frontier.root() == mth(d[:n])
    nodes = store(d[:n])
    resumed = Frontier(n, [nodes[k] for k in Frontier.nodes_of(n)])
    for leaf in d[n:]:
        resumed.append(leaf)
    assert resumed.root() == mth(d)


def test_large_trees_agree_at_their_edges() -> None:
    n = 1 << 12
    d = leaves(n + 1)
    nodes = store(d)
    fetch = fetch_from(nodes)
    for size in (n - 1, n, n + 1):
        for index in (0, size // 2, size - 1):
            merkle.verify_inclusion(
                index,
                size,
                d[index],
                merkle.range_hashes(merkle.inclusion_ranges(index, size), fetch),
                mth(d[:size]),
            )


def test_only_node_ranges_are_hashed() -> None:
    assert merkle.decompose(0, 13) == [(3, 0), (2, 2), (0, 12)]
    with pytest.raises(ValueError, match="not a node range"):
        merkle.decompose(3, 7)
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(ProofError, match="lacks"):
        merkle.range_hashes([(0, 4)], lambda keys: {})
