"""Installing and reading the regional directory on a node.

A node trusts exactly one thing out of band: its *anchor*, the governance public key(s) it was configured
with (``SPOC_REGION_ANCHOR``, a JWKS file). Everything else about the region — which nodes exist, their
URLs and keys, the agreements — it learns from a directory signed by an anchor key, and it refuses:

* a directory whose signature does not verify under the anchor (``directory-signature``);
* one not yet valid or already expired (``directory-not-yet-valid``, ``directory-expired``);
* one of another region than the one installed (``directory-region``);
* one older than what it has (``directory-stale``): a replayed old directory could resurrect a removed
  node or a withdrawn key;
* a *different* document under a version it already has (``directory-fork``): the governance key signed
  two histories, which every operator must hear about.

Installing the same document again is a no-op, so nodes can refresh from each other as often as they like.
Functions flush, never commit; refusals are raised (the edge audits them after rolling back).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.service import Actor, record
from broker.crypto import NoteKey, PublicKey, digest
from broker.crypto.directory import verify_directory
from broker.errors import InvalidInput, PolicyRefused, SpocError, VerificationError
from broker.region.models import InstalledDirectory
from broker.region.sync import apply_directory
from schemas.region import RegionDirectory, SignedDirectory

__all__ = [
    "CLOCK_SKEW",
    "Current",
    "current",
    "install",
    "load_anchor",
    "parse_signed",
    "record_refusal",
    "verify_signed",
]

CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the future ``issued_at`` may be: the governance's and the node's clocks differ a little."""


@dataclass(frozen=True)
class Current:
    """The node's installed directory: the parsed document, and the signed form exactly as received."""

    directory: RegionDirectory
    signed: dict[str, Any]
    digest: str
    signed_by: str


def load_anchor(path: Path) -> list[PublicKey]:
    """The governance public keys in a JWKS file (``{"keys": [...]}``); InvalidInput naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the region anchor {path}: {exc}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidInput(f"the region anchor {path} is not a JWKS with at least one key")
    anchor = [PublicKey.from_jwk(k) for k in keys]
    if any(k.use != "sig" for k in anchor):
        raise InvalidInput(f"the region anchor {path} holds a key that is not an Ed25519 signing key")
    return anchor


def parse_signed(raw: Mapping[str, Any]) -> SignedDirectory:
    """The signed directory, or InvalidInput naming the fields that do not fit the schema."""
    try:
        return SignedDirectory.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)[:50]
        ]
        raise InvalidInput("the regional directory does not match the schema", errors=errors) from None


def verify_signed(
    raw: Mapping[str, Any], *, anchor: Sequence[PublicKey], now: datetime
) -> tuple[SignedDirectory, str]:
    """Schema, governance signature and validity period of a signed directory, without any node state:
    what ``spoc region verify`` checks offline. Returns the parsed document and the kid that signed it."""
    if not anchor:
        raise PolicyRefused(
            "this node has no region anchor; set SPOC_REGION_ANCHOR to the governance JWKS",
            reason="directory-no-anchor",
        )
    signed = parse_signed(raw)
    try:
        kid = verify_directory(raw["directory"], raw["signature"], anchor=anchor)
    except VerificationError:
        raise VerificationError(
            "the directory's signature does not verify under the region anchor", reason="directory-signature"
        ) from None
    document = signed.directory
    _check_keys(document)
    if document.issued_at > now + CLOCK_SKEW:
        raise PolicyRefused(
            f"the directory is issued at {document.issued_at.isoformat()}, in the future",
            reason="directory-not-yet-valid",
        )
    if document.valid_until <= now:
        raise PolicyRefused(
            f"directory version {document.version} expired at {document.valid_until.isoformat()}",
            reason="directory-expired",
        )
    return signed, kid


def _check_keys(document: RegionDirectory) -> None:
    """Every key in the directory is one the exchange accepts, of the use its place says (InvalidInput).

    Checked after the signature: a governance that signed a broken key must hear it named, but nobody else
    can make us parse their keys."""
    for node in document.nodes:
        where = f"node {node.node_id}"
        for jwk in node.transport_keys:
            _public(jwk, use="sig", where=f"{where} transport_keys")
        for name, vkey in (("log_key", node.log_key), ("witness_key", node.witness_key)):
            try:
                NoteKey.from_vkey(vkey)
            except InvalidInput as exc:
                raise InvalidInput(f"{where} {name}: {exc.detail}") from None
        for cp in node.contact_points:
            for jwk in cp.signing_keys:
                _public(jwk, use="sig", where=f"{cp.id} signing_keys")
            for jwk in cp.encryption_keys:
                _public(jwk, use="enc", where=f"{cp.id} encryption_keys")


def _public(jwk: Mapping[str, Any], *, use: str, where: str) -> PublicKey:
    try:
        key = PublicKey.from_jwk(jwk)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.detail}") from None
    if key.use != use:
        raise InvalidInput(f"{where}: a {key.use} key where a {use} key belongs")
    return key


def install(
    session: Session,
    raw: Mapping[str, Any],
    *,
    anchor: Sequence[PublicKey],
    now: datetime,
    actor: Actor,
    require_https: bool = False,
) -> tuple[Current, bool]:
    """Install a signed directory if it is valid and newer; ``(current, changed)``.

    ``raw`` is the signed directory as received (a JSON object); its signature is checked over the canonical
    form of the received document, never a re-serialisation. With ``require_https`` (production) a node whose
    ``base_url`` is plain http is refused: the routing header and every signature would cross a border in the
    clear (the payload stays encrypted either way)."""
    signed, kid = verify_signed(raw, anchor=anchor, now=now)
    document = signed.directory
    plain = sorted(n.node_id for n in document.nodes if not n.base_url.startswith("https://"))
    if require_https and plain:
        raise PolicyRefused(
            f"nodes {', '.join(plain)} are reached over plain http; a production node hops over https only",
            reason="directory-insecure-url",
        )
    fingerprint = digest(raw["directory"])
    newest = _newest(session)
    if newest is not None:
        if document.region != newest.region:
            raise PolicyRefused(
                f"the directory is for region {document.region!r}; this node is in {newest.region!r}",
                reason="directory-region",
            )
        if document.version < newest.version:
            raise PolicyRefused(
                f"directory version {document.version} is older than the installed version {newest.version}",
                reason="directory-stale",
            )
        same_version = session.get(InstalledDirectory, document.version)
        if same_version is not None:
            if same_version.digest != fingerprint:
                raise PolicyRefused(
                    f"a different directory of version {document.version} is already installed: the "
                    "governance key signed two documents of one version",
                    reason="directory-fork",
                )
            return _as_current(same_version), False
    row = InstalledDirectory(
        version=document.version,
        region=document.region,
        digest=fingerprint,
        signed=dict(raw),
        signed_by=kid,
        issued_at=document.issued_at,
        valid_until=document.valid_until,
        installed_at=now,
    )
    session.add(row)
    applied = apply_directory(session, document, actor=actor)
    record(
        session,
        actor=actor,
        action=AuditAction.REGION_DIRECTORY_INSTALLED,
        object_type="region-directory",
        object_id=str(document.version),
        details={
            "region": document.region,
            "digest": fingerprint,
            "signed_by": kid,
            "previous": newest.version if newest is not None else None,
            "nodes": sorted(n.node_id for n in document.nodes),
            "applied": applied,
        },
    )
    session.flush()
    return _as_current(row), True


def current(session: Session) -> Current | None:
    """The newest installed directory (whether or not it has expired: callers that act on it check)."""
    row = _newest(session)
    return _as_current(row) if row is not None else None


def _newest(session: Session) -> InstalledDirectory | None:
    return session.scalar(select(InstalledDirectory).order_by(InstalledDirectory.version.desc()).limit(1))


def _as_current(row: InstalledDirectory) -> Current:
    """The row parsed; remembered per process for the same stored document. Every hop batch, receipt and
    event reads the directory, and validating it costs more than the work it serves; a row whose stored
    document differs in any way from the one parsed (even under the same digest) is parsed anew."""
    cached = _PARSED.get(row.version)
    if cached is not None and (cached.digest, cached.signed_by, cached.signed) == (
        row.digest,
        row.signed_by,
        row.signed,
    ):
        return cached
    parsed = Current(
        directory=SignedDirectory.model_validate(row.signed).directory,
        signed=dict(row.signed),
        digest=row.digest,
        signed_by=row.signed_by,
    )
    if len(_PARSED) >= 8:
        _PARSED.clear()
    _PARSED[row.version] = parsed
    return parsed


#: Parsed directories by version (``_as_current``): a handful at most, the newest in use.
_PARSED: dict[int, Current] = {}


def record_refusal(session: Session, actor: Actor, raw: Any, exc: SpocError) -> None:
    """A refused directory leaves an audit entry with the reason and the version it claimed."""
    claimed = raw.get("directory") if isinstance(raw, dict) else None
    version = claimed.get("version") if isinstance(claimed, dict) else None
    record(
        session,
        actor=actor,
        action=AuditAction.REGION_DIRECTORY_REFUSED,
        object_type="region-directory",
        object_id=str(version)[:20] if isinstance(version, int) else None,
        outcome="refused",
        details={"error": type(exc).__name__, "reason": exc.extra.get("reason")},
    )
