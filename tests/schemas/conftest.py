"""Known-good wire values for the schema tests; each fixture returns a fresh, freely mutable copy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

_HEADER: dict[str, Any] = {
    "message_id": "6f1c2a7e-3b5d-4c8e-9f10-2a3b4c5d6e7f",
    "conversation_id": "0b7d9e21-5c4a-4f3b-8e2d-1a2b3c4d5e6f",
    "type": "request",
    "sender_agency": "AL-ASP",
    "origin_country": "AL",
    "destination_country": "RS",
    "destination_agency": "RS-MUP",
    "category": "drug-trafficking",
    "legal_basis": "AL-RS Agreement on Police Cooperation (2013), Art. 5",
    "classification": "RESTRICTED",
    "handling_codes": ["H0", "H2"],
    "evaluation": {"source_reliability": "B", "information_accuracy": "2"},
    "priority": {"level": "normal", "information_access": "indirect"},
    "created_at": "2025-01-31T09:30:00Z",
}

_JWE: dict[str, Any] = {
    "protected": "eyJlbmMiOiJBMjU2R0NNIn0",
    "iv": "AAECAwQFBgcICQoL",
    "ciphertext": "c2VjcmV0IHBheWxvYWQ",
    "tag": "AAECAwQFBgcICQoLDA0ODw",
    "recipients": [
        {
            "header": {
                "alg": "ECDH-ES+A256KW",
                "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                "epk": {"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
            },
            "encrypted_key": "6KB707dM9YTIgHtLvtgWQ8mKwboJW3of9locizkDTHzBC2IlrT1oOQ",
        },
        {
            "header": {
                "alg": "ECDH-ES+A256KW",
                "kid": "3LwfRa7LDOmKXr7dGxl7r1T9hMG8gqG1mWyCbQoyRZM",
                "epk": {"kty": "OKP", "crv": "X25519", "x": "8pPv1Z6Fh0VYXvQ4aV9w2n0fIrKxGqQ6lJ1aC3Yk3xY"},
            },
            "encrypted_key": "pEkQ5XcBn3bB0d3sJgq3KzYx1f2G6wq7nQeS9mYk8ZcYx2Kf1oPq2A",
        },
    ],
}

_SIGNATURE = "eyJhbGciOiJFZERTQSIsImtpZCI6ImFiYyJ9..c2lnbmF0dXJlLWJ5dGVzLWhlcmU"


@pytest.fixture
def header_data() -> dict[str, Any]:
    """A valid routing header as it arrives on the wire (plain JSON values)."""
    return copy.deepcopy(_HEADER)


@pytest.fixture
def jwe_data() -> dict[str, Any]:
    """A structurally valid JWE General JSON Serialization (the bytes are not real ciphertext)."""
    return copy.deepcopy(_JWE)


@pytest.fixture
def envelope_data(header_data: dict[str, Any], jwe_data: dict[str, Any]) -> dict[str, Any]:
    """A complete, valid envelope in wire form."""
    return {"spoc": "1", "header": header_data, "payload": jwe_data, "signature": _SIGNATURE}
