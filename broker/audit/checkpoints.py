"""Signed checkpoints: the log's tree head (origin, size, root, time) as a C2SP tlog-checkpoint note.

The note text is::

    spoc/audit-log            origin: names this log; also the log key's note key name
    1234                      tree size, decimal
    q1J2...base64...=         RFC 9162 root hash of the first 1234 entries, standard base64
    time 1764000000           extension line: when the log signed it (POSIX seconds)

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
from broker.audit.models import AuditCheckpoint, AuditCosignature
from broker.audit.tree import StoredTree, lock_log
from broker.crypto import KeyPair, PublicKey
from broker.crypto.note import NoteKey, NoteSigner, add_signatures, open_note, sign_note
from broker.db import utcnow
from broker.errors import VerificationError
from broker.keys.models import PartyKey

ORIGIN: Final = "spoc/audit-log"
"""The log's origin line and note key name. One exchange, one log; a second deployment should differ."""
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


def log_signer(keys: HeldKeys) -> tuple[NoteSigner, str]:
    """The current log key as a note signer, with its kid."""
    pair = keys.signing_key(LOG_PARTY)
    return NoteSigner.from_keypair(ORIGIN, key=pair), pair.kid


def log_keys(session: Session) -> dict[str, NoteKey]:
    """Every log key that may have signed a checkpoint (active and retired; not revoked), by kid."""
    rows = session.scalars(
        select(PartyKey).where(
            PartyKey.party_id == LOG_PARTY, PartyKey.use == "sig", PartyKey.status.in_(("active", "retired"))
        )
    ).all()
    return {r.kid: NoteKey.from_public_key(ORIGIN, PublicKey.from_jwk(r.public_jwk)) for r in rows}


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
    signer, kid = log_signer(keys)
    body = CheckpointBody(ORIGIN, size, root, int(when.timestamp()))
    row = AuditCheckpoint(
        origin=ORIGIN, size=size, root=root, issued_at=when, kid=kid, note=sign_note(body.text(), signer)
    )
    session.add(row)
    session.flush()
    return Issued(row, new=True)


def open_checkpoint(note: str, verifiers: list[NoteKey]) -> CheckpointBody:
    """Verify a checkpoint note's log signature and parse it; VerificationError on any failure."""
    body = CheckpointBody.parse(open_note(note, verifiers=verifiers).text)
    if body.origin != ORIGIN:
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


def full_note(session: Session, checkpoint: AuditCheckpoint) -> str:
    """The checkpoint note with every witness cosignature line appended (what tooling consumes)."""
    return add_signatures(checkpoint.note, [c.line for c in cosignatures(session, checkpoint.id)])


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
    }
