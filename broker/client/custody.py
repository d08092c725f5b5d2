"""Checking a delivered message's chain of custody, hop by hop, the way the receiving agency must.

A request reaches an agency only after three contact-point hops: the origin contact point approved it,
the destination contact point received it, and routed it to this agency. Each hop is a countersignature
(``broker.crypto.countersign``) over a statement naming the message id and the digest of the envelope
the originator signed. ``check_chain`` verifies each expected hop and reports, for each, ``ok``,
``missing`` or ``bad`` with the reason, so an integrator sees *which* hop failed, not just "invalid".

Keys come from the parties' key registry: a retired key still verifies what it signed; a revoked key
verifies only statements dated before its revocation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.crypto import PublicKey, digest, verify_countersignature
from broker.errors import VerificationError

Registry = Callable[[str], Sequence[Mapping[str, Any]]]


class CustodyError(VerificationError):
    """The chain of custody of a delivered message is missing a hop or has a bad one."""


@dataclass(frozen=True)
class Hop:
    name: str
    party: str
    status: str  # ok | missing | bad
    detail: str = ""
    statement: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CustodyReport:
    hops: tuple[Hop, ...]

    @property
    def ok(self) -> bool:
        return all(h.status == "ok" for h in self.hops)

    def problem(self) -> str | None:
        for hop in self.hops:
            if hop.status != "ok":
                return f"chain of custody broken at '{hop.name}' by {hop.party}: {hop.status} ({hop.detail})"
        return None


def envelope_digest(envelope: Mapping[str, Any]) -> str:
    """The digest contact points countersign: header + ciphertext, the same bytes the originator signed."""
    payload = envelope["payload"]
    core = {k: payload[k] for k in ("protected", "iv", "ciphertext", "tag", "aad") if k in payload}
    return digest({"header": envelope["header"], "payload": core})


def expected_hops(header: Mapping[str, Any]) -> list[tuple[str, str]]:
    origin_cp = f"{header['origin_country']}-SPOC"
    destination_cp = f"{header['destination_country']}-SPOC"
    return [("approved", origin_cp), ("received", destination_cp), ("routed", destination_cp)]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _check_step(
    step: Mapping[str, Any], *, party: str, message_id: str, digest_: str, registry: Registry
) -> tuple[str, str, Mapping[str, Any] | None]:
    entries = {e["kid"]: e for e in registry(party)}
    used: dict[str, Mapping[str, Any]] = {}

    def resolve(kid: str) -> PublicKey:
        entry = entries.get(kid)
        if entry is None or entry.get("use") != "sig":
            raise VerificationError("unknown key")
        used["entry"] = entry
        return PublicKey.from_jwk(entry["jwk"])

    try:
        statement = verify_countersignature(step["signature"], resolve=resolve)
    except VerificationError:
        return "bad", "countersignature does not verify with a key of this party", None
    entry = used["entry"]
    at = _parse_time(statement.get("at"))
    revoked = _parse_time(entry.get("revoked_at"))
    if revoked is not None and (at is None or at >= revoked):
        return "bad", f"signed with key {entry['kid']} after its revocation", statement
    if statement.get("message_id") != message_id:
        return "bad", "the countersignature is about another message", statement
    if statement.get("digest") != digest_:
        return "bad", "the countersignature covers other bytes (digest differs)", statement
    if statement.get("party") != party:
        return "bad", f"the statement names {statement.get('party')}, not {party}", statement
    return "ok", "", statement


def check_chain(item: Mapping[str, Any], *, registry: Registry) -> CustodyReport:
    """Verify every expected contact-point hop of an inbox item; never raises, reports each hop."""
    envelope = item["envelope"]
    header = envelope["header"]
    digest_ = envelope_digest(envelope)
    steps = [s for s in item.get("custody", ()) if s.get("decision") != "submitted"]
    hops = []
    for name, party in expected_hops(header):
        candidates = [s for s in steps if s.get("decision") == name and s.get("party") == party]
        if not candidates:
            hops.append(Hop(name, party, "missing", "no countersignature for this hop"))
            continue
        status, detail, statement = _check_step(
            candidates[-1], party=party, message_id=item["message_id"], digest_=digest_, registry=registry
        )
        hops.append(Hop(name, party, status, detail, statement))
    return CustodyReport(tuple(hops))
