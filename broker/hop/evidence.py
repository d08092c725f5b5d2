"""What crosses a border with a message, and what the receiving node checks before it stores anything.

A message reaches another country's node with its evidence: the envelope exactly as the agency signed it,
the origin contact point's custody countersignatures, and a statement by that contact point naming the
agency's signing key. The receiving node holds none of the origin country's keys and trusts none of its
databases; it trusts the regional directory (``broker.region``) and checks, in this order, each with its own
``reason``:

1. ``wrong-country``: the sending node serves the origin country (a node cannot speak for a country it does
   not serve); ``not-served-here``: this node holds the destination contact point.
2. ``sender-key``: the origin contact point (its keys from the directory) vouches for the agency's key:
   a countersigned ``sender-key`` statement naming the message, the agency and the key's thumbprint. The
   origin country is the authority on its own agencies; the statement is kept as evidence.
3. ``originator-signature``: the envelope verifies under that key (RFC 8785 signing input, as at intake).
4. ``custody``: every origin custody step verifies under the origin contact point's directory keys and names
   this message and its digest, in sequence from 1; the last is ``approved`` into ``forwarded``; from
   CONFIDENTIAL on, an ``approved-first`` by a different officer precedes it (four eyes, as judged at origin).

Failures are :class:`broker.errors.PolicyRefused` (422) with the reason; the causes of cryptographic
failures are chained for logs, never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from broker.crypto import PublicKey, digest, verify_countersignature, verify_envelope
from broker.errors import InvalidInput, NotFound, PolicyRefused, SpocError
from schemas.codelists import classification_rank
from schemas.envelope import Envelope, RoutingHeader
from schemas.region import DirectoryContactPoint, DirectoryNode, RegionDirectory

__all__ = ["SENDER_KEY", "Evidence", "envelope_digest", "sender_key_statement", "verify_evidence"]

SENDER_KEY: Final = "sender-key"
"""The ``decision`` of the origin contact point's statement vouching for the sender agency's key."""
FOUR_EYES_FROM: Final = classification_rank("CONFIDENTIAL")
_SIGNED_PAYLOAD: Final = ("protected", "iv", "ciphertext", "tag", "aad")


def envelope_digest(envelope: Mapping[str, Any]) -> str:
    """The digest every custody step names: header and ciphertext, the bytes the originator signed."""
    payload = envelope["payload"]
    return digest(
        {"header": envelope["header"], "payload": {k: payload[k] for k in _SIGNED_PAYLOAD if k in payload}}
    )


def sender_key_statement(
    *, message_id: str, agency: str, key: PublicKey, encryption_key: PublicKey | None = None
) -> dict[str, Any]:
    """What the origin contact point countersigns about the sender's keys (``broker.crypto.countersign``): the
    signing key the envelope verifies under and, when known, the encryption key an answer is sealed to."""
    statement: dict[str, Any] = {
        "message_id": message_id,
        "decision": SENDER_KEY,
        "party": agency,
        "kid": key.kid,
        "jwk": dict(key.jwk),
    }
    if encryption_key is not None:
        statement["enc_jwk"] = dict(encryption_key.jwk)
    return statement


@dataclass(frozen=True)
class Evidence:
    """A hop's evidence, verified: the routing header, the digest, the sender's key and the custody statements."""

    header: RoutingHeader
    digest: str
    sender_key: PublicKey
    custody: tuple[dict[str, Any], ...]
    origin: DirectoryContactPoint
    destination: DirectoryContactPoint
    sender_encryption_key: PublicKey | None = None


def _refuse(reason: str, detail: str) -> PolicyRefused:
    return PolicyRefused(detail, reason=reason)


def _contact_point(directory: RegionDirectory, country: str) -> DirectoryContactPoint:
    node = directory.node_for_country(country)
    if node is None:
        raise _refuse("unknown-country", f"the regional directory has no contact point for {country}")
    return next(cp for cp in node.contact_points if cp.country == country)


def _resolver(cp: DirectoryContactPoint) -> Any:
    keys = {k.kid: k for k in (PublicKey.from_jwk(j) for j in cp.signing_keys)}

    def resolve(kid: str) -> PublicKey:
        if kid not in keys:
            raise NotFound("not a key of this contact point")
        return keys[kid]

    return resolve


def verify_evidence(
    *,
    directory: RegionDirectory,
    sender: DirectoryNode,
    served_here: set[str],
    envelope: Mapping[str, Any],
    custody: Sequence[str],
    sender_key_token: str,
) -> Evidence:
    """Check a hop's evidence against the directory (see the module docstring); the verified evidence."""
    try:
        header = Envelope.model_validate(envelope).header
    except ValidationError:
        raise InvalidInput("the hop's envelope does not match the schema") from None
    if header.origin_country not in sender.countries:
        raise _refuse(
            "wrong-country",
            f"node {sender.node_id} does not serve {header.origin_country}, the message's origin",
        )
    origin = _contact_point(directory, header.origin_country)
    destination = _contact_point(directory, header.destination_country)
    if destination.id not in served_here:
        raise _refuse("not-served-here", f"this node does not host {destination.id}")
    message_id, fingerprint = str(header.message_id), envelope_digest(envelope)
    resolve = _resolver(origin)

    try:
        vouched = verify_countersignature(sender_key_token, resolve=resolve)
        key = PublicKey.from_jwk(vouched["jwk"])
        if (vouched.get("decision"), vouched.get("message_id"), vouched.get("party"), vouched.get("kid")) != (
            SENDER_KEY,
            message_id,
            header.sender_agency,
            key.kid,
        ) or key.use != "sig":
            raise ValueError("the statement is not about this message's sender key")
        enc = PublicKey.from_jwk(vouched["enc_jwk"]) if "enc_jwk" in vouched else None
        if enc is not None and enc.use != "enc":
            raise ValueError("enc_jwk is not an encryption key")
    except (SpocError, ValueError, KeyError, TypeError) as exc:
        raise _refuse("sender-key", f"{origin.id} does not vouch for {header.sender_agency}'s key") from exc

    try:
        verify_envelope(
            envelope["header"],
            envelope["payload"],
            envelope["signature"],
            resolve=lambda kid: key if kid == key.kid else _unknown(kid),
        )
    except SpocError as exc:
        raise _refuse("originator-signature", "the envelope does not verify under the sender's key") from exc

    statements = _custody(
        custody, resolve=resolve, origin=origin, message_id=message_id, fingerprint=fingerprint
    )
    _check_approval(statements, classification=header.classification, origin=origin)
    return Evidence(header, fingerprint, key, statements, origin, destination, enc)


def _unknown(kid: str) -> PublicKey:
    raise NotFound(f"no key {kid}")


def _custody(
    tokens: Sequence[str],
    *,
    resolve: Any,
    origin: DirectoryContactPoint,
    message_id: str,
    fingerprint: str,
) -> tuple[dict[str, Any], ...]:
    statements = []
    for position, token in enumerate(tokens, start=1):
        try:
            statement = verify_countersignature(token, resolve=resolve)
        except SpocError as exc:
            raise _refuse("custody", f"custody step {position} is not signed by {origin.id}") from exc
        named = (
            statement.get("message_id"),
            statement.get("digest"),
            statement.get("party"),
            statement.get("seq"),
        )
        if named != (message_id, fingerprint, origin.id, position):
            raise _refuse(
                "custody", f"custody step {position} is not {origin.id}'s step {position} of this message"
            )
        statements.append(statement)
    return tuple(statements)


def _check_approval(
    statements: Sequence[Mapping[str, Any]], *, classification: str, origin: DirectoryContactPoint
) -> None:
    if not statements or (statements[-1].get("decision"), statements[-1].get("to")) != (
        "approved",
        "forwarded",
    ):
        raise _refuse("custody", f"the custody chain does not end with {origin.id}'s approval")
    if classification_rank(classification) >= FOUR_EYES_FROM:
        approver = statements[-1].get("actor")
        first = [s for s in statements[:-1] if s.get("decision") == "approved-first"]
        if not any(s.get("actor") != approver for s in first):
            raise _refuse(
                "custody",
                f"a {classification} message needs two different officers of {origin.id} to approve it",
            )
