"""Witnesses: each national contact point cosigns checkpoints it has checked, and forks become alerts.

A witness keeps one piece of state, the largest tree it has cosigned (``audit_witness_state``). Given
a checkpoint, it

1. verifies the log's signature on the note (log keys from the key registry) and that the row says what
   the note says;
2. checks the new tree against its state: same size → same root, or it is a **fork**; larger → the
   RFC 9162 consistency proof from its tree to the new one must verify against the two roots, or the
   checkpoint is **inconsistent**; smaller → it must be consistent with what it saw, and it is not
   cosigned (a cosignature says "the largest tree I have seen");
3. signs a ``cosignature/v1`` (https://c2sp.org/tlog-cosignature) over the note text with the contact
   point's held Ed25519 key, under the key name ``spoc/witness/<contact point>``, and moves its state on.

Why ``cosignature/v1`` and not a plain Ed25519 note signature by the contact point: it is the standard
witness format (transparency-dev witnesses, sigsum, litewitness), it is domain-separated from plain note
signatures (signature type 0x04 in the key ID and a ``cosignature/v1`` header in the signed message), so
a contact point's cosignature can never pass for a log signature or for any other note it signs, and it
carries the time at which the witness vouched for the tree.

The witnesses run inside the broker because the broker holds the contact points' keys; the state, the
proof checks and the keys are per contact point all the same, and an auditor verifying a bundle checks
the cosignatures against the contact points' published keys without trusting the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.audit import merkle
from broker.audit.alerts import raise_alert
from broker.audit.checkpoints import HeldKeys, latest, log_verifiers, open_checkpoint
from broker.audit.models import AuditAlert, AuditCheckpoint, AuditCosignature, AuditWitnessState
from broker.audit.tree import StoredTree
from broker.crypto import PublicKey
from broker.crypto.note import COSIGNATURE_V1, NoteKey, NoteSigner
from broker.db import utcnow
from broker.directory.models import ContactPoint
from broker.errors import VerificationError
from broker.keys.models import PartyKey

WITNESS_PREFIX: Final = "spoc/witness/"


def witness_name(witness: str) -> str:
    """The note key name of a contact point's witness key, e.g. ``spoc/witness/AL-SPOC``."""
    return WITNESS_PREFIX + witness


def witnesses(session: Session) -> list[str]:
    """Every contact point this node holds a private key of, as a witness id. A node of a region knows the
    other countries' contact points by their public keys only: they witness this log from their own nodes
    (``broker.witness``), never here."""
    held = select(PartyKey.party_id).where(PartyKey.private_sealed.is_not(None))
    return list(
        session.scalars(
            select(ContactPoint.id).where(ContactPoint.id.in_(held)).order_by(ContactPoint.id)
        ).all()
    )


def witness_keys(session: Session) -> dict[str, NoteKey]:
    """Every witness key that may have cosigned (active and retired, not revoked), by kid."""
    rows = session.scalars(
        select(PartyKey).where(
            PartyKey.party_id.in_(witnesses(session)),
            PartyKey.use == "sig",
            PartyKey.status.in_(("active", "retired")),
        )
    ).all()
    return {
        r.kid: NoteKey.from_public_key(
            witness_name(r.party_id), PublicKey.from_jwk(r.public_jwk), sig_type=COSIGNATURE_V1
        )
        for r in rows
    }


@dataclass(frozen=True)
class Cosigned:
    """What a witness did with a checkpoint: ``cosigned``, ``already``, ``older`` or ``alert``."""

    witness: str
    checkpoint_id: int
    status: str
    detail: str = ""


def cosign(
    session: Session,
    keys: HeldKeys,
    witness: str,
    checkpoint: AuditCheckpoint,
    *,
    now: datetime | None = None,
) -> Cosigned:
    """Check ``checkpoint`` as ``witness`` and cosign it, or raise an alert. The caller commits either way."""

    def alert(kind: str, detail: str, other: int | None = None) -> Cosigned:
        raise_alert(
            session,
            kind=kind,
            reporter=witness,
            detail=detail,
            checkpoint_id=checkpoint.id,
            other_checkpoint_id=other,
        )
        return Cosigned(witness, checkpoint.id, "alert", detail)

    try:
        body = open_checkpoint(checkpoint.note, log_verifiers(session))
    except VerificationError:
        return alert("bad-signature", f"checkpoint {checkpoint.id} does not carry a valid log signature")
    if (body.size, body.root) != (checkpoint.size, checkpoint.root):
        return alert("bad-signature", f"checkpoint {checkpoint.id}'s row differs from its signed note")
    state = session.get(AuditWitnessState, witness)
    stored = StoredTree(session)
    if state is not None:
        try:
            if body.size == state.size and body.root != state.root:
                return alert(
                    "fork",
                    f"two trees of size {body.size}: checkpoint {state.checkpoint_id} and {checkpoint.id}",
                    state.checkpoint_id,
                )
            if body.size > state.size:
                proof = stored.consistency_proof(state.size, body.size)
                merkle.verify_consistency(state.size, body.size, state.root, body.root, proof)
            elif body.size < state.size:
                proof = stored.consistency_proof(body.size, state.size)
                merkle.verify_consistency(body.size, state.size, body.root, state.root, proof)
                return Cosigned(witness, checkpoint.id, "older")
        except merkle.ProofError as exc:
            return alert(
                "inconsistent",
                f"checkpoint {checkpoint.id} (size {body.size}) is not consistent with checkpoint "
                f"{state.checkpoint_id} (size {state.size}) this witness cosigned: {exc}",
                state.checkpoint_id,
            )
    done = session.scalar(
        select(AuditCosignature.id).where(
            AuditCosignature.checkpoint_id == checkpoint.id, AuditCosignature.witness == witness
        )
    )
    if done is not None:
        return Cosigned(witness, checkpoint.id, "already")
    when = now or utcnow()
    pair = keys.signing_key(witness)
    signer = NoteSigner.from_keypair(witness_name(witness), key=pair, sig_type=COSIGNATURE_V1)
    line = signer.signature_line(body.text(), timestamp=int(when.timestamp()))
    session.add(
        AuditCosignature(
            checkpoint_id=checkpoint.id, witness=witness, kid=pair.kid, signed_at=when, line=line
        )
    )
    if state is None:
        session.add(
            AuditWitnessState(
                witness=witness, checkpoint_id=checkpoint.id, size=body.size, root=body.root, updated_at=when
            )
        )
    else:
        state.checkpoint_id, state.size, state.root, state.updated_at = (
            checkpoint.id,
            body.size,
            body.root,
            when,
        )
    session.flush()
    return Cosigned(witness, checkpoint.id, "cosigned")


def cosign_latest(session: Session, keys: HeldKeys, witness: str) -> Cosigned | None:
    """Have ``witness`` check and cosign the latest checkpoint (None if there is none yet)."""
    checkpoint = latest(session)
    return None if checkpoint is None else cosign(session, keys, witness, checkpoint)


def detect_forks(session: Session) -> list[AuditAlert]:
    """Alert on every size the log has signed two different roots for (a fork, whoever sees it)."""
    sizes = session.scalars(
        select(AuditCheckpoint.size)
        .group_by(AuditCheckpoint.size)
        .having(func.count(func.distinct(AuditCheckpoint.root)) > 1)
    ).all()
    found = []
    for size in sizes:
        rows = session.scalars(
            select(AuditCheckpoint).where(AuditCheckpoint.size == size).order_by(AuditCheckpoint.id)
        ).all()
        first = rows[0]
        other = next(r for r in rows if r.root != first.root)
        found.append(
            raise_alert(
                session,
                kind="fork",
                reporter="log-monitor",
                detail=f"two signed trees of size {size}: checkpoints {first.id} and {other.id}",
                checkpoint_id=other.id,
                other_checkpoint_id=first.id,
            )
        )
    return found
