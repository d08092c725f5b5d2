"""The audit bundle: entries, signed checkpoints and proofs that verify offline, without the database.

A bundle is one JSON document (``format: spoc-audit-bundle/v1``)::

    origin             the anchor's origin line (a node's "spoc/<node>/audit-log"; "spoc/audit-log" outside a region)
    log_keys           C2SP verifier keys ("vkeys") of the log: <name>+<key ID>+<base64(0x01 || key)>, one per
                       origin the log has had (earlier checkpoints may carry the legacy origin)
    witness_keys       vkeys of the contact points' witness keys (type 0x04, cosignature/v1)
    region_directory   the signed regional directory the node had (optional): it names every peer node's
                       witness key and the countries it serves, so the peers' cosignatures are attributed
                       to countries; its governance signature is checked when the auditor pins the anchor
    checkpoint         the anchor: a C2SP checkpoint note with the log's signature and witness cosignatures
                       (the local contact points' and the peer nodes' witnesses')
    earlier_checkpoints  [{note, consistency_proof: [hex]}]: older checkpoints and RFC 9162 consistency
                       proofs from each to the anchor (evidence that the log only grew between them)
    entries            [{seq, leaf_hash, entry, inclusion_proof: [hex]}]: each entry's document (exactly
                       what was hashed), its position, and its RFC 9162 inclusion proof in the anchor
    uncovered          how many matching entries were too new for the anchor (not in the bundle)
    scope, filters, exported_at, exported_by   what was asked for, by whom (informational)

:func:`verify_bundle` trusts nothing in the file but what signatures and hashes pin down: the anchor's
log signature (with the keys the auditor passes, or else the bundle's own keys, whose IDs the report
prints so they can be compared with the published ones), each cosignature by a known witness key (a peer
node's from the directory: the report says which countries cosigned the anchor), each
earlier checkpoint's signature and consistency proof, and for every entry its leaf hash
``SHA-256(0x00 || RFC 8785 canonical JSON)`` and its inclusion proof against the anchor's root. It stops
at the first bad entry in position order and names it. This module imports no database code.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from broker.audit import merkle
from broker.crypto.canonical import canonical
from broker.crypto.directory import verify_directory
from broker.crypto.keys import PublicKey
from broker.crypto.note import COSIGNATURE_V1, ED25519, NoteKey, open_note, split_note
from broker.errors import InvalidInput, SpocError, VerificationError

FORMAT: Final = "spoc-audit-bundle/v1"


@dataclass(frozen=True)
class BundleReport:
    """The verdict on a bundle. On failure, ``first_bad_seq``/``first_bad_entry`` name the entry if one is to blame."""

    ok: bool
    entries: int = 0
    size: int = 0
    root: str = ""
    log_key: str = ""
    cosigners: tuple[str, ...] = ()
    peer_cosigners: tuple[str, ...] = ()
    directory: str = ""
    earlier: int = 0
    first_bad_seq: int | None = None
    first_bad_entry: int | None = None
    problem: str | None = None

    def line(self) -> str:
        if not self.ok:
            where = ""
            if self.first_bad_seq is not None:
                where = f" at position {self.first_bad_seq} (entry {self.first_bad_entry})"
            return f"bundle FAILED{where}: {self.problem}"
        witnesses = ", ".join(self.cosigners) if self.cosigners else "no witness"
        peers = ""
        if self.directory:
            countries = ", ".join(self.peer_cosigners) if self.peer_cosigners else "no other country"
            peers = f"; peer nodes' witnesses: {countries} ({self.directory})"
        return (
            f"bundle verified: {self.entries} entries included in the checkpoint of size {self.size} "
            f"(root {self.root[:16]}…) signed by {self.log_key}, cosigned by {witnesses}{peers}; "
            f"{self.earlier} earlier checkpoints consistent"
        )


class BundleError(VerificationError):
    """The bundle is malformed or does not verify; ``seq``/``entry`` name the entry when one is to blame."""

    def __init__(self, detail: str, *, seq: int | None = None, entry: int | None = None) -> None:
        super().__init__(detail)
        self.seq = seq
        self.entry = entry


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise BundleError(f"{what} must be a list of hex hashes")
    try:
        out = [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise BundleError(f"{what} holds something that is not a hex hash") from None
    if any(len(h) != 32 for h in out):
        raise BundleError(f"{what} holds a hash that is not 32 bytes")
    return out


def _keys(values: Any, sig_type: int, what: str) -> list[NoteKey]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BundleError(f"{what} must be a list of verifier keys")
    try:
        keys = [NoteKey.from_vkey(v) for v in values]
    except InvalidInput as exc:
        raise BundleError(f"{what}: {exc.detail}") from None
    return [k for k in keys if k.type == sig_type]


def _checkpoint(note: Any, log_keys: Sequence[NoteKey], origin: str | None) -> tuple[int, bytes]:
    """Size and root of a checkpoint signed by one of ``log_keys`` whose name is its origin line (and, when
    ``origin`` is given, that very origin: the anchor's must be the bundle's)."""
    # Parsed here rather than with broker.audit.checkpoints, which needs the database models.
    if not isinstance(note, str):
        raise BundleError("a checkpoint must be a signed note (text)")
    try:
        verified = open_note(note, verifiers=log_keys)
    except VerificationError:
        raise BundleError("a checkpoint is not signed by the log key") from None
    lines = verified.text.split("\n")
    names = {k.name for k in verified.signers}
    if (
        len(lines) < 4
        or lines[0] not in names
        or (origin is not None and lines[0] != origin)
        or not lines[1].isdigit()
    ):
        raise BundleError("a checkpoint's text is not a checkpoint of this log")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise BundleError("a checkpoint's root is not base64") from None
    if len(root) != 32:
        raise BundleError("a checkpoint's root is not a SHA-256 hash")
    return int(lines[1]), root


def _cosigners(note: str, witness_keys: Sequence[NoteKey]) -> tuple[str, ...]:
    text, signatures = split_note(note)
    known = {(k.name, k.key_id): k for k in witness_keys}
    names = []
    for sig in signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        try:
            key.verify(text, sig.blob)
        except VerificationError:
            raise BundleError(f"the cosignature of {sig.name} does not verify") from None
        names.append(sig.name)
    return tuple(sorted(set(names)))


@dataclass(frozen=True)
class _Peers:
    """The peer nodes' witness keys from the bundle's directory, and who they stand for."""

    keys: list[NoteKey]
    countries: dict[tuple[str, bytes], str]  # (key name, key ID) -> "XK" (or "BA+HR" for a hub)
    description: str


def _peers(raw: Any, origin: str, anchor: Sequence[PublicKey] | None) -> _Peers | None:
    """Read the bundle's regional directory: every node's witness key, except the node whose log this is."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("directory"), Mapping):
        raise BundleError("region_directory must be a signed regional directory")
    document = raw["directory"]
    if anchor is not None:
        try:
            kid = verify_directory(document, str(raw.get("signature", "")), anchor=anchor)
        except SpocError:
            raise BundleError("the regional directory is not signed by the pinned governance key") from None
        description = f"directory version {document.get('version')} signed by governance key {kid}"
    else:
        description = f"directory version {document.get('version')}, governance signature not pinned"
    nodes = document.get("nodes")
    if not isinstance(nodes, list):
        raise BundleError("the regional directory lists no nodes")
    keys: list[NoteKey] = []
    countries: dict[tuple[str, bytes], str] = {}
    for node in nodes:
        if not isinstance(node, Mapping):
            raise BundleError("a node of the regional directory is not an object")
        try:
            log_key = NoteKey.from_vkey(str(node.get("log_key", "")))
            witness = NoteKey.from_vkey(str(node.get("witness_key", "")))
        except InvalidInput as exc:
            raise BundleError(f"the regional directory: {exc.detail}") from None
        if log_key.name == origin or witness.type != COSIGNATURE_V1:
            continue  # the log's own node does not witness itself
        served = sorted(
            str(cp.get("country"))
            for cp in node.get("contact_points", [])
            if isinstance(cp, Mapping) and cp.get("country")
        )
        keys.append(witness)
        countries[(witness.name, witness.key_id)] = "+".join(served) or str(node.get("node_id"))
    return _Peers(keys, countries, description)


def _peer_cosigners(note: str, peers: _Peers) -> tuple[str, ...]:
    """The countries whose nodes' witnesses cosigned ``note`` (each cosignature verified)."""
    text, signatures = split_note(note)
    known = {(k.name, k.key_id): k for k in peers.keys}
    found = set()
    for sig in signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        try:
            key.verify(text, sig.blob)
        except VerificationError:
            raise BundleError(f"the cosignature of peer witness {sig.name} does not verify") from None
        found.add(peers.countries[(key.name, key.key_id)])
    return tuple(sorted(found))


def verify_bundle(
    bundle: Mapping[str, Any],
    *,
    log_keys: Sequence[NoteKey] | None = None,
    witness_keys: Sequence[NoteKey] | None = None,
    region_anchor: Sequence[PublicKey] | None = None,
) -> BundleReport:
    """Verify a bundle offline; see the module docstring. Never raises for a bad bundle: it reports.

    ``region_anchor``: the governance public keys; when given, the bundle's regional directory must be
    signed by one of them, else the peers' witness keys are taken from the directory as it stands (and the
    report says the governance signature was not pinned)."""
    try:
        return _verify(bundle, log_keys, witness_keys, region_anchor)
    except BundleError as exc:
        return BundleReport(False, first_bad_seq=exc.seq, first_bad_entry=exc.entry, problem=exc.detail)
    except SpocError as exc:
        return BundleReport(False, problem=exc.detail)


def _verify(
    bundle: Mapping[str, Any],
    pinned_log: Sequence[NoteKey] | None,
    pinned_witness: Sequence[NoteKey] | None,
    region_anchor: Sequence[PublicKey] | None = None,
) -> BundleReport:
    if not isinstance(bundle, Mapping) or bundle.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} bundle")
    origin = bundle.get("origin")
    if not isinstance(origin, str) or not origin:
        raise BundleError("the bundle names no log origin")
    logs = list(pinned_log) if pinned_log else _keys(bundle.get("log_keys"), ED25519, "log_keys")
    if not any(k.name == origin for k in logs):
        raise BundleError(f"no log key named {origin} to verify with")
    witnesses = (
        list(pinned_witness)
        if pinned_witness is not None
        else _keys(bundle.get("witness_keys", []), COSIGNATURE_V1, "witness_keys")
    )
    anchor = bundle.get("checkpoint")
    size, root = _checkpoint(anchor, logs, origin)
    assert isinstance(anchor, str)  # noqa: S101 - _checkpoint refused anything else
    signer = next(
        k for k in logs if (k.name, k.key_id) in {(s.name, s.key_id) for s in split_note(anchor)[1]}
    )
    cosigners = _cosigners(anchor, witnesses)
    peers = _peers(bundle.get("region_directory"), origin, region_anchor)
    peer_cosigners = _peer_cosigners(anchor, peers) if peers is not None else ()

    earlier = bundle.get("earlier_checkpoints", [])
    if not isinstance(earlier, list):
        raise BundleError("earlier_checkpoints must be a list")
    for item in earlier:
        if not isinstance(item, Mapping):
            raise BundleError("an earlier checkpoint must be an object")
        old_size, old_root = _checkpoint(item.get("note"), logs, None)
        proof = _hashes(item.get("consistency_proof"), "a consistency proof")
        try:
            merkle.verify_consistency(old_size, size, old_root, root, proof)
        except merkle.ProofError as exc:
            raise BundleError(
                f"the checkpoint of size {old_size} is not consistent with the anchor: {exc}"
            ) from None

    entries = bundle.get("entries")
    if not isinstance(entries, list):
        raise BundleError("entries must be a list")
    seen: set[int] = set()
    ordered = sorted(entries, key=lambda e: e.get("seq", -1) if isinstance(e, Mapping) else -1)
    for item in ordered:
        _entry(item, size, root, seen)
    return BundleReport(
        True,
        entries=len(entries),
        size=size,
        root=root.hex(),
        log_key=signer.vkey.rsplit("+", 1)[0],
        cosigners=cosigners,
        peer_cosigners=peer_cosigners,
        directory=peers.description if peers is not None else "",
        earlier=len(earlier),
    )


def _entry(item: Any, size: int, root: bytes, seen: set[int]) -> None:
    if not isinstance(item, Mapping) or not isinstance(item.get("entry"), Mapping):
        raise BundleError("an entry must be an object with an 'entry' document")
    document = item["entry"]
    entry_id = document.get("id") if isinstance(document.get("id"), int) else None
    seq = item.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < size:
        raise BundleError(f"entry {entry_id} has no position in the checkpoint's tree", entry=entry_id)
    if seq in seen:
        raise BundleError("two entries claim the same position", seq=seq, entry=entry_id)
    seen.add(seq)
    try:
        leaf = merkle.leaf_hash(canonical(document))
    except InvalidInput:
        raise BundleError("the entry is not canonicalizable JSON", seq=seq, entry=entry_id) from None
    if item.get("leaf_hash") != leaf.hex():
        raise BundleError("the entry does not match its leaf hash (entry altered)", seq=seq, entry=entry_id)
    proof = _hashes(item.get("inclusion_proof"), "an inclusion proof")
    try:
        merkle.verify_inclusion(seq, size, leaf, proof, root)
    except merkle.ProofError as exc:
        raise BundleError(f"the entry is not in the signed log: {exc}", seq=seq, entry=entry_id) from None
