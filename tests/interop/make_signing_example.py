"""Generate the worked example of docs/agency-signing.md into ``schemas/examples/agency-signing.example.json``
with spoc's own request signer (``broker.crypto.httpsig.sign_request``).

Everything is fixed (the published throwaway key below, the requests, ``created`` and ``nonce``) and Ed25519
signatures are deterministic, so running it again gives the same bytes; ``tests/interop/test_signing_example.py``
does exactly that, recomputes every signature base by hand from RFC 9421 and verifies every signature::

    .venv/bin/python -m tests.interop.make_signing_example          # rewrites the file (same bytes)
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Final

import httpx

from broker.crypto import KeyPair
from broker.crypto.httpsig import sign_request

OUT: Final = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "agency-signing.example.json"

WARNING: Final = (
    "THROWAWAY EXAMPLE KEY, published on purpose so that anyone can reproduce the signatures of "
    "docs/agency-signing.md. It protects nothing, belongs to no agency and must never be registered with, "
    "or trusted by, any exchange."
)
PRIVATE_JWK: Final = {
    "alg": "EdDSA",
    "crv": "Ed25519",
    "d": "pDHhKpGUfak2olBx-7_CMyvW0w3h9HmpAxwyvTgoA1s",
    "kid": "902KM7ToAXrHUesVkFKy3VoJ9_ULQufbJGWg0D0aaPk",
    "kty": "OKP",
    "use": "sig",
    "x": "2qb-DzhhtEOPRH782_GsaT67EoFTQXxx7ER0cCPT3Qw",
}
CREATED: Final = 1795428000  # 2026-11-23T10:00:00Z
REQUESTS: Final = (
    {
        "name": "with-body",
        "method": "POST",
        "target": "/v1/inbox/0b7f6a4e-3c1d-4e55-9a1f-2f6c8d9e0a11/ack",
        "body": '{"receipt":"eyJhbGciOiJFZERTQSJ9.e30.c2ln"}',
        "nonce": "mK3v0tXo2Yl9QeJpW1sZ7g",
    },
    {
        "name": "with-query",
        "method": "GET",
        "target": "/v1/inbox?limit=10&visibility_timeout=60",
        "body": "",
        "nonce": "Yb4rR8cN1uPq6TzE0dLx3A",
    },
)


def example() -> dict[str, Any]:
    key = KeyPair.from_private_jwk(PRIVATE_JWK)
    created = datetime.datetime.fromtimestamp(CREATED, datetime.UTC)
    out: dict[str, Any] = {
        "warning": WARNING,
        "private_jwk": PRIVATE_JWK,
        "public_jwk": key.public.jwk,
        "keyid": key.kid,
        "requests": [],
    }
    for request in REQUESTS:
        headers = httpx.Headers()
        body = request["body"].encode()
        url = "https://spoc.example" + request["target"]
        sign_request(request["method"], url, headers, body, key=key, created=created, nonce=request["nonce"])
        out["requests"].append(
            {
                **request,
                "created": CREATED,
                "headers": {
                    name: headers[name]
                    for name in ("content-digest", "signature-input", "signature")
                    if name in headers
                },
            }
        )
    return out


def render() -> str:
    return json.dumps(example(), indent=2, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")  # noqa: T201 - a command-line tool
