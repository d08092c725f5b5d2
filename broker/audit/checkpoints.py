"""Signed checkpoints: the log's tree head (origin, size, root, time) as a C2SP tlog-checkpoint note.

The note text is::

    spoc/al/audit-log         origin: names this log; also the log key's note key name
    1234                      tree size, decimal
    q1J2...base64...=         RFC 9162 root hash of the first 1234 entries, standard base64
    time 1764000000           extension line: when the log signed it (POSIX seconds)

The origin is per node (:func:`log_origin`): the name under which the installed regional directory lists
this node's log key (``spoc region node-entry`` puts ``spoc/<node id>/audit-log`` there), so two nodes'
logs can never be confused by a witness, a verifier or an auditor holding both. A node with no directory
(one deployment hosting every contact point, as before the region) keeps the legacy origin
``spoc/audit-log``; a node that joins a region switches at its next checkpoint, and its checkpoints signed
under the old origin still verify (:func:`accepted_origins`): the tree is the same, only its name changed.

signed by the log key (party ``spoc-log``, held by the broker under the master key) with a plain Ed25519
note signature (type 0x01). The first three lines are exactly the C2SP checkpoint, so Go's
``sumdb/note`` + ``transparency-dev/formats/log`` and other tooling parse it; the ``time`` extension line
carries the issue time the exchange's rules ask for, and tools that do not know it ignore it (the spec
allows extension lines; witnesses' ``cosignature/v1`` signatures cover them as part of the text).

The log never signs a tree that is not an extension of the last one it signed: before signing, the
consistency proof from the previous checkpoint to the new tree is built from the stored nodes and
verified against the previous *signed* root. If it fails, the stored log was rewritten; nothing is
signed and an alert is raised instead (``broker.audit.alerts``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import merkle
from broker.audit.alerts import raise_alert
from broker.audit.models import AuditCheckpoint, AuditCosignature, AuditPeerCosignature
from broker.audit.tree import StoredTree, lock_log
from broker.crypto import KeyPair, PublicKey
from broker.crypto.note import ED25519, NoteKey, NoteSigner, add_signatures, open_note, sign_note
from broker.db import utcnow
from broker.errors import InvalidInput, VerificationError
from broker.keys.models import PartyKey
from broker.region.models import InstalledDirectory

ORIGIN: Final = "spoc/audit-log"
"""The legacy origin: the log of a deployment outside any region (and its checkpoints from before it joined)."""
LOG_PARTY: Final = "spoc-log"
"""The key registry's party holding the log key (``broker.directory.seed.LOG_SIGNER``)."""

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_TIME = re.compile(r"time (0|[1-9][0-9]{0,18})")


class HeldKeys(Protocol):
    """What issuing needs of the key store: the held private key of a party (``KeyStore`` satisfies it)."""

    def signing_key(self, party_id: str) -> KeyPair: ...


@dataclass(frozen=True)
class CheckpointBody:
    """The four lines of a spoc checkpoint's note text."""

    origin: str
    size: int
    root: bytes
    time: int

    def text(self) -> str:
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntime {self.time}\n"

    @classmethod
    def parse(cls, text: str) -> CheckpointBody:
        """Parse strictly (one spelling per checkpoint); VerificationError if it is not a spoc checkpoint."""
        lines = text.split("\n")
        try:
            if len(lines) != 5 or lines[-1] != "":
                raise ValueError("four lines expected")
            origin, size, root_b64, time_line = lines[:4]
            time = _TIME.fullmatch(time_line)
            if not origin or not _SIZE.fullmatch(size) or time is None:
                raise ValueError("bad size or time line")
            root = base64.b64decode(root_b64, validate=True)
            if len(root) != 32 or base64.b64encode(root).decode() != root_b64:
                raise ValueError("bad root")
        except (ValueError, binascii.Error) as exc:
            raise VerificationError("not a spoc checkpoint") from exc
        return cls(origin, int(size), root, int(time.group(1)))


def node_origin(node_id: str) -> str:
    """The origin ``spoc region node-entry`` gives the log of node ``node_id``: ``spoc/<node id>/audit-log``."""
    return f"spoc/{node_id}/audit-log"


def log_public_keys(session: Session) -> dict[str, bytes]:
    """Every log key that may have signed a checkpoint (active and retired; not revoked): kid -> raw Ed25519."""
    rows = session.scalars(
        select(PartyKey).where(
            PartyKey.party_id == LOG_PARTY, PartyKey.use == "sig", PartyKey.status.in_(("active", "retired"))
        )
    ).all()
    return {r.kid: NoteKey.from_public_key(ORIGIN, PublicKey.from_jwk(r.public_jwk)).public for r in rows}


def _listed_origins(session: Session, ours: set[bytes]) -> list[str]:
    """The names under which installed directories list one of ``ours`` as a node's log key, newest first.

    Read from the stored signed documents (validated when installed), not through ``broker.region``, which
    sits above the audit log; a directory row is small and this runs once per checkpoint."""
    names: list[str] = []
    for signed in session.scalars(
        select(InstalledDirectory.signed).order_by(InstalledDirectory.version.desc())
    ):
        nodes = signed.get("directory", {}).get("nodes", []) if isinstance(signed, dict) else []
        for node in nodes:
            try:
                key = NoteKey.from_vkey(str(node.get("log_key", "")))
            except InvalidInput:
                continue
            if key.public in ours and key.name not in names:
                names.append(key.name)
    return names


def log_origin(session: Session) -> str:
    """This log's origin now: its log key's name in the newest directory that lists it, else :data:`ORIGIN`."""
    listed = _listed_origins(session, set(log_public_keys(session).values()))
    return listed[0] if listed else ORIGIN


def accepted_origins(session: Session) -> set[str]:
    """Every origin this log has legitimately signed under: the legacy one and each name a directory gave it."""
    return {ORIGIN, *_listed_origins(session, set(log_public_keys(session).values()))}


def log_signer(keys: HeldKeys, origin: str = ORIGIN) -> tuple[NoteSigner, str]:
    """The current log key as a note signer for ``origin``, with its kid."""
    pair = keys.signing_key(LOG_PARTY)
    return NoteSigner.from_keypair(origin, key=pair), pair.kid


def log_keys(session: Session, origin: str | None = None) -> dict[str, NoteKey]:
    """The log's note keys under ``origin`` (default: the current one), by kid."""
    name = origin or log_origin(session)
    return {kid: NoteKey(name, ED25519, raw) for kid, raw in log_public_keys(session).items()}


def log_verifiers(session: Session) -> list[NoteKey]:
    """Every (origin, key) pair a checkpoint of this log may carry: what its own verifiers accept."""
    keys = log_public_keys(session).values()
    return [NoteKey(name, ED25519, raw) for name in sorted(accepted_origins(session)) for raw in keys]


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))


@dataclass(frozen=True)
class Issued:
    """The result of :func:`issue`: the checkpoint covering the log now, or the alert that prevented it."""

    checkpoint: AuditCheckpoint | None
    new: bool
    alert_id: int | None = None
    problem: str | None = None


def issue(session: Session, keys: HeldKeys, *, now: datetime | None = None) -> Issued:
    """Sign a checkpoint of the log as it is now, unless the latest checkpoint already covers it.

    Takes the log lock, so the size and root are of one tree. Refuses (and raises an alert) when the
    stored tree is not consistent with the previous signed checkpoint. The caller commits, in both cases:
    the alert must survive.
    """
    lock_log(session)
    stored = StoredTree(session)
    size = stored.size()
    root = stored.root(size)
    previous = latest(session)
    if previous is not None:
        if previous.size == size and previous.root == root:
            return Issued(previous, new=False)
        try:
            if size < previous.size:
                raise merkle.ProofError(f"the log shrank from {previous.size} to {size} entries")
            proof = stored.consistency_proof(previous.size, size)
            merkle.verify_consistency(previous.size, size, previous.root, root, proof)
        except merkle.ProofError as exc:
            detail = f"the stored log is not consistent with signed checkpoint {previous.id}: {exc}"
            alert = raise_alert(
                session, kind="inconsistent", reporter="log", detail=detail, checkpoint_id=previous.id
            )
            return Issued(None, new=False, alert_id=alert.id, problem=detail)
    when = now or utcnow()
    origin = log_origin(session)
    signer, kid = log_signer(keys, origin)
    body = CheckpointBody(origin, size, root, int(when.timestamp()))
    row = AuditCheckpoint(
        origin=origin, size=size, root=root, issued_at=when, kid=kid, note=sign_note(body.text(), signer)
    )
    session.add(row)
    session.flush()
    return Issued(row, new=True)


def open_checkpoint(note: str, verifiers: list[NoteKey]) -> CheckpointBody:
    """Verify a checkpoint note's log signature and parse it; VerificationError on any failure.

    The origin line must be the name of a key whose signature verified (C2SP tlog-checkpoint: the log key's
    name is its origin), so a checkpoint of one log never passes for another's even under a shared key."""
    verified = open_note(note, verifiers=verifiers)
    body = CheckpointBody.parse(verified.text)
    if body.origin not in {k.name for k in verified.signers}:
        raise VerificationError("a checkpoint of another log")
    return body


def cosignatures(session: Session, checkpoint_id: int) -> list[AuditCosignature]:
    return list(
        session.scalars(
            select(AuditCosignature)
            .where(AuditCosignature.checkpoint_id == checkpoint_id)
            .order_by(AuditCosignature.witness)
        ).all()
    )


def peer_cosignatures(session: Session, checkpoint_id: int) -> list[AuditPeerCosignature]:
    """The other nodes' witnesses' cosignatures of a checkpoint (``broker.witness.submit`` stores them)."""
    return list(
        session.scalars(
            select(AuditPeerCosignature)
            .where(AuditPeerCosignature.checkpoint_id == checkpoint_id)
            .order_by(AuditPeerCosignature.node_id, AuditPeerCosignature.id)
        ).all()
    )


def full_note(session: Session, checkpoint: AuditCheckpoint) -> str:
    """The checkpoint note with every cosignature line appended (what tooling consumes): the local contact
    points' and the peer nodes' witnesses'."""
    lines = [c.line for c in cosignatures(session, checkpoint.id)]
    lines += [c.line for c in peer_cosignatures(session, checkpoint.id)]
    return add_signatures(checkpoint.note, lines)


def describe(session: Session, checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The JSON view of a checkpoint: the fields, the full note and who cosigned when."""
    return {
        "id": checkpoint.id,
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": checkpoint.root.hex(),
        "issued_at": checkpoint.issued_at.astimezone(UTC).isoformat(),
        "kid": checkpoint.kid,
        "note": full_note(session, checkpoint),
        "cosignatures": [
            {"witness": c.witness, "kid": c.kid, "signed_at": c.signed_at.astimezone(UTC).isoformat()}
            for c in cosignatures(session, checkpoint.id)
        ],
        "peer_cosignatures": [
            {
                "node": c.node_id,
                "countries": list(c.countries),
                "witness": c.witness,
                "signed_at": c.signed_at.astimezone(UTC).isoformat(),
            }
            for c in peer_cosignatures(session, checkpoint.id)
        ],
    }
