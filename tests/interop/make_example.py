"""Generate the worked example of docs/envelope.md into ``schemas/examples/`` with spoc's own crypto recipes.

Run once from the repository root and commit the output::

    .venv/bin/python -m tests.interop.make_example            # refuses to overwrite existing files
    .venv/bin/python -m tests.interop.make_example --force    # new keys, new envelope: every file changes

Why here and not in ``schemas/examples/``: ``schemas`` imports only the standard library and pydantic
(``tests/schemas/test_schemas_independence.py``), and this generator needs ``broker.crypto``. So
``schemas/examples/`` holds data only, and the files are random (fresh keys, fresh IVs and ephemeral keys):
regenerating changes every byte, which is why it is not part of any build step.

Written files:

* ``envelope.example.json`` — a signed envelope, AL-ASP → RS, readable by AL-SPOC and RS-SPOC;
* ``plaintext.example.json`` — the exact bytes that were encrypted (pretty JSON, trailing newline);
* ``keys.example.jwks.json`` — the public keys used, as an RFC 7517 JWK Set, plus which party holds each;
* ``keys.example.private.jwks.json`` — the matching private keys, labelled as throwaway example keys.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from broker.crypto import KeyPair, seal, sign_envelope
from schemas.envelope import Envelope, RoutingHeader

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "schemas" / "examples"

WARNING: Final = (
    "THROWAWAY EXAMPLE KEYS. They were generated once for the worked example in docs/envelope.md and are "
    "published on purpose, so that anyone can reproduce the decryption of envelope.example.json. They "
    "protect nothing, belong to no real party and must never be registered with, or trusted by, any "
    "exchange."
)

PLAINTEXT: Final[dict[str, Any]] = {
    "request": "Identify the registered keeper of the vehicle and report its crossings of the AL/RS route "
    "during the last 30 days.",
    "subject": {
        "vehicle": {"registration": "EX 000 AM", "make": "Iveco", "model": "Daily", "colour": "white"},
    },
    "context": "Fictitious example. A van with this registration was used on 2026-11-20 to move eleven "
    "migrants across two borders; the driver escaped.",
    "reference": "EXAMPLE/AL-ASP/2026/0001",
}


def _header() -> dict[str, Any]:
    header = RoutingHeader.model_validate(
        {
            "message_id": str(uuid.uuid4()),
            "conversation_id": str(uuid.uuid4()),
            "type": "request",
            "sender_agency": "AL-ASP",
            "origin_country": "AL",
            "destination_country": "RS",
            "category": "migrant-smuggling",
            "legal_basis": "Agreement on police cooperation between Albania and Serbia, Art. 5 (example)",
            "classification": "RESTRICTED",
            "handling_codes": ["H0", "H2"],
            "evaluation": {"source_reliability": "B", "information_accuracy": "2"},
            "priority": {
                "level": "urgent",
                "urgency_reason": "risk-information-loses-relevance",
                "urgency_explanation": "The same van is expected to make the next crossing within 48 hours; "
                "the keeper must be identified before then.",
                "information_access": "direct",
            },
            "created_at": "2026-11-23T10:00:00Z",
        }
    )
    # The same dump AgencyClient.build uses: the header on the wire is the header that is signed.
    dumped: dict[str, Any] = header.model_dump(mode="json", exclude_none=True)
    return dumped


def _write(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(directory: Path) -> list[Path]:
    """Create fresh example keys and a signed envelope under ``directory``; the paths written."""
    sender = KeyPair.generate("sig")
    readers = {"AL-SPOC": KeyPair.generate("enc"), "RS-SPOC": KeyPair.generate("enc")}
    holders = {"AL-ASP": sender, **readers}

    plaintext = (json.dumps(PLAINTEXT, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    header = _header()
    payload = seal(plaintext, readers=[k.public for k in readers.values()])
    envelope = {
        "spoc": "1",
        "header": header,
        "payload": payload,
        "signature": sign_envelope(header, payload, key=sender),
    }
    Envelope.model_validate(envelope)

    parties = {party: key.kid for party, key in holders.items()}
    public = {
        "description": "Public keys of the worked example in docs/envelope.md (RFC 7517 JWK Set). "
        "'parties' says which party each kid stands for; in the exchange that mapping comes from "
        "GET /v1/directory/parties/{party}/jwks.",
        "parties": parties,
        "keys": [key.public.jwk for key in holders.values()],
    }
    private = {
        "warning": WARNING,
        "parties": parties,
        "keys": [json.loads(key.private_jwk_json()) for key in holders.values()],
    }

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, value in (
        ("envelope.example.json", envelope),
        ("keys.example.jwks.json", public),
        ("keys.example.private.jwks.json", private),
    ):
        _write(directory / name, value)
        written.append(directory / name)
    (directory / "plaintext.example.json").write_bytes(plaintext)
    written.append(directory / "plaintext.example.json")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.interop.make_example", description=__doc__)
    parser.add_argument("--force", action="store_true", help="replace existing example files")
    parser.add_argument("--directory", type=Path, default=EXAMPLES, help=f"output directory ({EXAMPLES})")
    args = parser.parse_args(argv)
    existing = sorted(args.directory.glob("*.example*.json")) if args.directory.is_dir() else []
    if existing and not args.force:
        sys.stderr.write(
            f"{args.directory} already holds example files; the committed ones are the reference "
            "(pass --force to replace them all)\n"
        )
        return 2
    for path in generate(args.directory):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
