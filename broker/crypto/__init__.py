"""spoc's cryptography, as recipes: the only package that touches ``cryptography.hazmat`` or jwcrypto.

* :mod:`~broker.crypto.keys` — Ed25519 (sig) / X25519 (enc) keys named by RFC 7638 thumbprints.
* :mod:`~broker.crypto.canonical` — RFC 8785 canonical JSON and ``sha-256:`` digests.
* :mod:`~broker.crypto.envelope` — the payload JWE (seal / open / add a reader) and the originator's
  detached JWS over header + ciphertext.
* :mod:`~broker.crypto.countersign` — contact points' custody countersignatures.
* :mod:`~broker.crypto.atrest` — private keys encrypted at rest under a master key (the KMS/HSM seam).
* :mod:`~broker.crypto.note` — C2SP signed notes: the audit log's checkpoints and witness cosignatures.

Conventions, everywhere: keyword-only key arguments; no boolean "verify" — a function returns the verified
value or raises :class:`broker.errors.VerificationError` with a fixed, uninformative message (the cause is
chained for logs, never shown); malformed *key input* is :class:`broker.errors.InvalidInput`.
"""

from broker.crypto.atrest import AtRestCipher, MasterKey
from broker.crypto.canonical import canonical, digest
from broker.crypto.countersign import (
    CUSTODY_TYP,
    RECEIPT_TYP,
    countersign,
    sign_receipt,
    statement_of,
    verify_countersignature,
    verify_receipt,
)
from broker.crypto.envelope import (
    ENVELOPE_TYP,
    add_reader,
    open_sealed,
    open_with_any,
    opening_key,
    seal,
    sign_envelope,
    signing_input,
    unverified_kid,
    verify_envelope,
)
from broker.crypto.keys import KeyPair, KeyUse, PublicKey, thumbprint
from broker.crypto.note import NoteKey, NoteSigner, open_note, sign_note

__all__ = [
    "CUSTODY_TYP",
    "ENVELOPE_TYP",
    "RECEIPT_TYP",
    "AtRestCipher",
    "KeyPair",
    "KeyUse",
    "MasterKey",
    "NoteKey",
    "NoteSigner",
    "PublicKey",
    "add_reader",
    "canonical",
    "countersign",
    "digest",
    "open_note",
    "open_sealed",
    "open_with_any",
    "opening_key",
    "seal",
    "sign_envelope",
    "sign_note",
    "sign_receipt",
    "signing_input",
    "statement_of",
    "thumbprint",
    "unverified_kid",
    "verify_countersignature",
    "verify_envelope",
    "verify_receipt",
]
