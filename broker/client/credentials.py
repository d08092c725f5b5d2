"""What an agency system holds: its id and its two private keys (JWK JSON). No shared secret with the broker."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from broker.files import private_dir, write_private


@dataclass
class AgencyCredentials:
    agency_id: str
    signing_key: str
    encryption_key: str

    def __repr__(self) -> str:
        return f"AgencyCredentials(agency_id={self.agency_id!r}, <secrets hidden>)"

    def save(self, directory: Path) -> Path:
        private_dir(directory)
        return write_private(directory / f"{self.agency_id}.json", json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> AgencyCredentials:
        return cls(**json.loads(path.read_text()))
