"""Chain of custody: a contact point's signed statement about a message (approve, forward, accept, route…).

A countersignature is a compact EdDSA JWS whose (attached) payload is the RFC 8785 canonical form of
the statement, with ``typ`` ``spoc-custody+jws``. The statement is whatever the caller puts in it —
typically the message id, the envelope digest (:func:`broker.crypto.canonical.digest`), the decision,
the officer and the time — so the token alone proves who decided what about which bytes, offline.

Attached rather than detached because the statement is small and is what an auditor wants to read.
On verification the payload must be *exactly* the canonical form of the statement it decodes to; a token
whose payload is valid JSON but not canonical (other key order, whitespace, duplicate names) is refused,
so one statement has one token and no two JSON parsers can disagree about what was signed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from broker.crypto import _jws
from broker.crypto.canonical import canonical
from broker.crypto.keys import KeyPair, PublicKey
from broker.errors import InvalidInput, VerificationError
from schemas.hop import EVENT_TYP

__all__ = [
    "CUSTODY_TYP",
    "EVENT_TYP",
    "RECEIPT_TYP",
    "STATS_TYP",
    "TRANSPORT_RECEIPT_TYP",
    "countersign",
    "sign_event",
    "sign_receipt",
    "sign_stats",
    "sign_transport_receipt",
    "statement_of",
    "verify_countersignature",
    "verify_event",
    "verify_receipt",
    "verify_stats",
    "verify_transport_receipt",
]

CUSTODY_TYP: Final = "spoc-custody+jws"
# A receiving agency's signed acknowledgement of receipt (non-repudiation of receipt). Same shape as a
# custody statement, its own ``typ`` so that neither can be passed off as the other.
RECEIPT_TYP: Final = "spoc-receipt+jws"
# A node's signed statement that it received and stored a message a peer node sent it (the hop, DESIGN §8):
# signed with the node's transport key, its own ``typ`` so it cannot pass for an agency's receipt.
TRANSPORT_RECEIPT_TYP: Final = "spoc-transport-receipt+jws"
# A contact point's signed statement of an event about a message that another node must learn (a refusal and
# its ground, a grant, a deadline extension: ``broker.hop.events``). Signed with the acting contact point's key
# like a custody step, its own ``typ`` so that neither can be replayed as the other: a custody step proves a
# decision inside one node's chain, an event tells a peer node about it. (``schemas.hop.EVENT_TYP``.)
# A node's published aggregate statistics (counts per contact point, no message ids: ``broker.stats.peers``),
# signed with its transport key like a transport receipt, its own ``typ`` so neither passes for the other.
STATS_TYP: Final = "spoc-stats+jws"


def countersign(statement: Mapping[str, Any], *, key: KeyPair) -> str:
    """Sign ``statement`` (an I-JSON object) with a contact point's Ed25519 key; compact JWS, attached."""
    return _jws.sign_compact(canonical(statement), key=key, typ=CUSTODY_TYP, detached=False)


def sign_receipt(statement: Mapping[str, Any], *, key: KeyPair) -> str:
    """An agency's signed receipt for a message (its id, digest, the agency and the time it was received)."""
    return _jws.sign_compact(canonical(statement), key=key, typ=RECEIPT_TYP, detached=False)


def sign_transport_receipt(statement: Mapping[str, Any], *, key: KeyPair) -> str:
    """A node's transport receipt for a message a peer sent it (id, digest, the two nodes, the time)."""
    return _jws.sign_compact(canonical(statement), key=key, typ=TRANSPORT_RECEIPT_TYP, detached=False)


def sign_event(statement: Mapping[str, Any], *, key: KeyPair) -> str:
    """A contact point's event statement for a peer node (``broker.hop.events``); compact JWS, attached."""
    return _jws.sign_compact(canonical(statement), key=key, typ=EVENT_TYP, detached=False)


def sign_stats(statement: Mapping[str, Any], *, key: KeyPair) -> str:
    """A node's aggregate statistics for a peer (``broker.stats.peers``); compact JWS, attached."""
    return _jws.sign_compact(canonical(statement), key=key, typ=STATS_TYP, detached=False)


def verify_stats(token: str, *, resolve: Callable[[str], PublicKey]) -> dict[str, Any]:
    """Verify a node's aggregate statistics and return the statement; VerificationError on any failure."""
    return _verify_statement(token, typ=STATS_TYP, resolve=resolve)


def verify_event(token: str, *, resolve: Callable[[str], PublicKey]) -> dict[str, Any]:
    """Verify an event token and return its statement; VerificationError on any failure."""
    return _verify_statement(token, typ=EVENT_TYP, resolve=resolve)


def verify_transport_receipt(token: str, *, resolve: Callable[[str], PublicKey]) -> dict[str, Any]:
    """Verify a transport receipt and return its statement; VerificationError on any failure."""
    return _verify_statement(token, typ=TRANSPORT_RECEIPT_TYP, resolve=resolve)


def verify_receipt(token: str, *, resolve: Callable[[str], PublicKey]) -> dict[str, Any]:
    """Verify a receipt and return its statement; VerificationError on any failure."""
    return _verify_statement(token, typ=RECEIPT_TYP, resolve=resolve)


def statement_of(token: str) -> dict[str, Any]:
    """The statement a compact JWS carries, decoded and NOT verified: only for a token that was verified
    when it was taken (a stored receipt shown again). VerificationError if it does not decode."""
    try:
        _header, payload, _signature = _jws.split_compact(token)
        statement = _jws.strict_json(payload)
    except (ValueError, RecursionError, InvalidInput) as exc:
        raise VerificationError("the token does not decode") from exc
    if not isinstance(statement, dict):
        raise VerificationError("the token does not decode")
    return statement


def verify_countersignature(token: str, *, resolve: Callable[[str], PublicKey]) -> dict[str, Any]:
    """Verify a custody token and return its statement; VerificationError on any failure.

    The kid that signed is not returned separately: it is in the token (``unverified_kid``) and, once
    this returns, verified. The caller checks that it belongs to the contact point the statement names.
    """
    return _verify_statement(token, typ=CUSTODY_TYP, resolve=resolve)


def _verify_statement(token: str, *, typ: str, resolve: Callable[[str], PublicKey]) -> dict[str, Any]:
    _kid, payload = _jws.verify_compact(token, typ=typ, resolve=resolve, detached_payload=None)
    try:
        statement = _jws.strict_json(payload)
        if not isinstance(statement, dict) or canonical(statement) != payload:
            raise ValueError("payload is not a canonical JSON object")
    except (ValueError, RecursionError, InvalidInput) as exc:
        raise VerificationError("signature did not verify") from exc
    return statement
