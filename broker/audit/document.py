"""An audit entry as the log hashes it: its document, leaf hash and chain link (RFC 6962, RFC 8785).

The shared bottom of ``broker.audit``: the sequencer, the verifier, exports and the hop ledger all hash
and read entries through these definitions.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Protocol

from broker.audit import merkle
from broker.crypto.canonical import canonical

__all__ = ["GENESIS", "EntryFields", "chain_hash", "entry_document", "leaf_hash"]

GENESIS = "00" * 32
"""The chain link before the first leaf."""


class EntryFields(Protocol):
    """An audit entry's fields: an ``AuditEntry`` or a plain row of ``audit_entries`` (the sequencer's)."""

    @property
    def id(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object_type(self) -> str: ...
    @property
    def object_id(self) -> str | None: ...
    @property
    def countries(self) -> list[str]: ...
    @property
    def outcome(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def details(self) -> dict[str, Any]: ...


def entry_document(entry: EntryFields) -> dict[str, Any]:
    """The exact document hashed into the log: every field, times as RFC 3339 UTC with microseconds."""
    return {
        "id": entry.id,
        "at": entry.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "countries": list(entry.countries),
        "outcome": entry.outcome,
        "request_id": entry.request_id,
        "details": entry.details,
    }


def leaf_hash(document: dict[str, Any]) -> bytes:
    """RFC 6962 leaf hash of an entry: ``SHA-256(0x00 || RFC 8785 canonical JSON of its document)``."""
    return merkle.leaf_hash(canonical(document))


def chain_hash(previous_hex: str, leaf: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous_hex) + leaf).hexdigest()
