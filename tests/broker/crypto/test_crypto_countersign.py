"""Custody countersignatures: round trip, tampering, and one statement ↔ one token."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from broker.crypto import (
    KeyPair,
    PublicKey,
    _jws,
    canonical,
    countersign,
    digest,
    unverified_kid,
    verify_countersignature,
)
from broker.errors import InvalidInput, VerificationError

Resolver = Callable[[str], PublicKey]

STATEMENT: dict[str, Any] = {
    "message_id": "0192c1d0-7e3a-7b7e-9a61-2f1d3c4b5a69",
    "envelope": digest({"header": {"sender": "AL-ASP"}}),
    "decision": "approved",
    "contact_point": "AL-SPOC",
    "officer": "officer-17",
    "at": "2025-01-31T10:00:00Z",
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip(signer: KeyPair, resolve: Resolver) -> None:
    token = countersign(STATEMENT, key=signer)
    protected, payload, _ = token.split(".")
    assert json.loads(unb64(protected)) == {"alg": "EdDSA", "kid": signer.kid, "typ": "spoc-custody+jws"}
    assert unb64(payload) == canonical(STATEMENT)
    assert verify_countersignature(token, resolve=resolve) == STATEMENT
    assert unverified_kid(token) == signer.kid


def test_tampered_statement_is_refused(signer: KeyPair, resolve: Resolver) -> None:
    protected, _, sig = countersign(STATEMENT, key=signer).split(".")
    forged = b64(canonical({**STATEMENT, "decision": "rejected"}))
    with pytest.raises(VerificationError, match=r"^signature did not verify$"):
        verify_countersignature(f"{protected}.{forged}.{sig}", resolve=resolve)


def test_tampered_signature_is_refused(signer: KeyPair, resolve: Resolver) -> None:
    protected, payload, sig = countersign(STATEMENT, key=signer).split(".")
    raw = bytearray(unb64(sig))
    raw[0] ^= 0x80
    with pytest.raises(VerificationError):
        verify_countersignature(f"{protected}.{payload}.{b64(bytes(raw))}", resolve=resolve)


def test_unknown_signer_is_refused(resolve: Resolver) -> None:
    with pytest.raises(VerificationError):
        verify_countersignature(countersign(STATEMENT, key=KeyPair.generate("sig")), resolve=resolve)


def test_alg_none_is_refused(signer: KeyPair, resolve: Resolver) -> None:
    header = b64(json.dumps({"alg": "none", "kid": signer.kid, "typ": "spoc-custody+jws"}).encode())
    with pytest.raises(VerificationError):
        verify_countersignature(f"{header}.{b64(canonical(STATEMENT))}.", resolve=resolve)


def test_envelope_signature_is_not_a_custody_token(signer: KeyPair, resolve: Resolver) -> None:
    # Same key, same bytes, but typed as an envelope signature: explicit typing keeps the two apart.
    token = _jws.sign_compact(canonical(STATEMENT), key=signer, typ="spoc-envelope+jws", detached=False)
    with pytest.raises(VerificationError):
        verify_countersignature(token, resolve=resolve)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(json.dumps(STATEMENT, indent=1).encode(), id="not-canonical"),
        pytest.param(b'{"decision":"approved","decision":"rejected"}', id="duplicate-names"),
        pytest.param(b"[1,2]", id="not-an-object"),
        pytest.param(b'{"x":NaN}', id="nan"),
        pytest.param(b"\xff", id="not-utf8"),
    ],
)
def test_signed_but_ambiguous_payload_is_refused(signer: KeyPair, resolve: Resolver, payload: bytes) -> None:
    token = _jws.sign_compact(payload, key=signer, typ="spoc-custody+jws", detached=False)
    with pytest.raises(VerificationError):
        verify_countersignature(token, resolve=resolve)


def test_detached_custody_token_is_refused(signer: KeyPair, resolve: Resolver) -> None:
    protected, _, sig = countersign(STATEMENT, key=signer).split(".")
    with pytest.raises(VerificationError):
        verify_countersignature(f"{protected}..{sig}", resolve=resolve)


def test_statement_must_be_i_json(signer: KeyPair) -> None:
    with pytest.raises(InvalidInput):
        countersign({"at": float("inf")}, key=signer)
