"""Regional directories for tests: nodes with fresh keys, drafts, and the governance signature."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.crypto import KeyPair
from broker.crypto.directory import sign_directory
from broker.crypto.note import COSIGNATURE_V1, NoteSigner


def _z(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class NodeKeys:
    """The private keys one node would hold (here only to build its public entry)."""

    node_id: str
    country: str
    cp_id: str
    url: str
    signing: KeyPair = field(default_factory=lambda: KeyPair.generate("sig"))
    encryption: KeyPair = field(default_factory=lambda: KeyPair.generate("enc"))
    transport: KeyPair = field(default_factory=lambda: KeyPair.generate("sig"))
    log: KeyPair = field(default_factory=lambda: KeyPair.generate("sig"))
    witness: KeyPair = field(default_factory=lambda: KeyPair.generate("sig"))

    def entry(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "base_url": self.url,
            "contact_points": [
                {
                    "id": self.cp_id,
                    "country": self.country,
                    "name": f"{self.country} contact point",
                    "signing_keys": [self.signing.public.jwk],
                    "encryption_keys": [self.encryption.public.jwk],
                }
            ],
            "transport_keys": [self.transport.public.jwk],
            "log_key": NoteSigner.from_keypair(f"spoc.{self.node_id}/log", key=self.log).verifier.vkey,
            "witness_key": NoteSigner.from_keypair(
                f"spoc/witness/{self.cp_id}", key=self.witness, sig_type=COSIGNATURE_V1
            ).verifier.vkey,
        }


def nodes(*countries: str) -> list[NodeKeys]:
    return [
        NodeKeys(c.lower(), c, f"{c}-SPOC", f"http://127.0.0.1:{8100 + i}") for i, c in enumerate(countries)
    ]


def draft(
    members: Sequence[NodeKeys | dict[str, Any]],
    *,
    version: int = 1,
    region: str = "western-balkans",
    issued_at: datetime | None = None,
    valid_for: timedelta = timedelta(days=30),
    agreements: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    issued = issued_at or datetime.now(UTC) - timedelta(minutes=1)
    return {
        "region": region,
        "version": version,
        "issued_at": _z(issued),
        "valid_until": _z(issued + valid_for),
        "nodes": [m.entry() if isinstance(m, NodeKeys) else m for m in members],
        "agreements": agreements
        if agreements is not None
        else [
            {
                "reference": "AL-XK police cooperation 2024",
                "countries": ["AL", "XK"],
                "categories": ["drug-trafficking", "migrant-smuggling"],
                "max_classification": "CONFIDENTIAL",
                "valid_from": "2024-01-01T00:00:00Z",
            }
        ],
    }


def signed(document: dict[str, Any], governance: KeyPair) -> dict[str, Any]:
    return {"directory": document, "signature": sign_directory(document, key=governance)}
