"""What a node learns from an installed directory: the other countries' contact points, their public keys,
and the agreements — written into the node's own directory tables so that intake, policy and review use
them exactly as they use local rows (``contact_point_for``, ``public_encryption_key``, ``legal_basis``).

Rules, in the order they are applied:

* A contact point whose private keys this node holds is *ours*: the directory must list our current
  signing and encryption keys for it (else ``directory-own-keys``: the governance would be telling peers
  to trust keys we do not hold, or no longer trust ours), and it never changes our rows.
* Every other contact point is *theirs*: its row is created or renamed, and its public keys are registered
  as the directory lists them. A key that the directory no longer lists is retired, not deleted: it keeps
  verifying what it signed while it was listed, and it is never used for new content again.
* Agreements are the directory's: created or updated by reference; an agreement this node has that the
  directory does not list is made inactive (a withdrawn legal basis stops new exchanges at once).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit.actions import AuditAction
from broker.audit.checkpoints import LOG_PARTY, node_origin
from broker.audit.service import Actor, record
from broker.crypto import MasterKey, NoteKey, PublicKey
from broker.crypto.note import COSIGNATURE_V1
from broker.db import utcnow
from broker.directory.models import Agreement, ContactPoint, Country
from broker.errors import InvalidInput, PolicyRefused
from broker.keys.models import PartyKey
from broker.keys.service import DatabaseKeyStore, create_held_key
from schemas.codelists import entries
from schemas.region import DirectoryContactPoint, DirectoryNode, RegionDirectory

__all__ = ["TRANSPORT_PARTY", "WITNESS_PARTY", "apply_directory", "held_parties", "node_entry"]


TRANSPORT_PARTY = "spoc-node"
"""The key registry's party of the node's transport key: it signs hops and transport receipts (RFC 9421)."""
WITNESS_PARTY = "spoc-witness"
"""The key registry's party of the node's witness key: it cosigns peers' checkpoints (cosignature/v1)."""


def held_parties(session: Session) -> set[str]:
    """The parties whose private keys this node holds (its own contact points, its log)."""
    return set(session.scalars(select(PartyKey.party_id).where(PartyKey.private_sealed.is_not(None))))


def apply_directory(session: Session, directory: RegionDirectory, *, actor: Actor) -> dict[str, int]:
    """Bring the node's directory tables in line with ``directory``; counts of what changed (for the audit)."""
    held = held_parties(session)
    changed = {"contact_points": 0, "keys_added": 0, "keys_retired": 0, "agreements": 0}
    names = {e["code"]: e["label"] for e in entries("countries")}
    for node in directory.nodes:
        for cp in node.contact_points:
            if cp.id in held:
                _check_ours(session, cp, node)
                continue
            changed["contact_points"] += _upsert_contact_point(session, cp, names)
            added, retired = _sync_keys(session, cp.id, [*cp.signing_keys, *cp.encryption_keys])
            changed["keys_added"] += added
            changed["keys_retired"] += retired
    changed["agreements"] = _sync_agreements(session, directory)
    session.flush()
    if any(changed.values()):
        record(
            session,
            actor=actor,
            action=AuditAction.REGION_DIRECTORY_APPLIED,
            object_type="region-directory",
            object_id=str(directory.version),
            countries=sorted({cp.country for n in directory.nodes for cp in n.contact_points}),
            details=changed,
        )
    return changed


def _check_ours(session: Session, cp: DirectoryContactPoint, node: DirectoryNode) -> None:
    """The directory lists exactly keys we hold for our contact point (our current ones among them), and our
    node's transport key: else peers would be told to trust keys we do not hold, or not to trust ours."""
    listed = {PublicKey.from_jwk(k).kid for k in [*cp.signing_keys, *cp.encryption_keys]}
    ours = dict(
        session.execute(
            select(PartyKey.kid, PartyKey.status).where(
                PartyKey.party_id == cp.id, PartyKey.private_sealed.is_not(None)
            )
        ).all()
    )
    current = {kid for kid, status in ours.items() if status == "active"}
    foreign = {kid for kid in listed if ours.get(kid) in (None, "revoked")}
    if foreign:
        raise PolicyRefused(
            f"the directory lists keys for {cp.id} that this node does not hold ({', '.join(sorted(foreign))})",
            reason="directory-own-keys",
        )
    transport = {PublicKey.from_jwk(k).kid for k in node.transport_keys}
    held_transport = set(
        session.scalars(
            select(PartyKey.kid).where(
                PartyKey.party_id == TRANSPORT_PARTY,
                PartyKey.private_sealed.is_not(None),
                PartyKey.status != "revoked",
            )
        )
    )
    if held_transport and not transport <= held_transport:
        raise PolicyRefused(
            f"the directory lists transport keys for node {node.node_id} that this node does not hold",
            reason="directory-own-keys",
        )
    missing = current - listed
    if missing:
        raise PolicyRefused(
            f"the directory does not list this node's current keys for {cp.id} ({', '.join(sorted(missing))}); "
            "send the node's entry (spoc region node-entry) to the region's governance",
            reason="directory-own-keys",
        )


def _upsert_contact_point(session: Session, cp: DirectoryContactPoint, names: dict[str, str]) -> int:
    if session.get(Country, cp.country) is None:
        session.add(Country(code=cp.country, name=names.get(cp.country, cp.country)))
        session.flush()
    row = session.get(ContactPoint, cp.id)
    if row is None:
        other = session.scalar(select(ContactPoint).where(ContactPoint.country == cp.country))
        if other is not None:
            raise PolicyRefused(
                f"the directory names {cp.id} as {cp.country}'s contact point; this node knows {other.id}",
                reason="directory-contact-point",
            )
        session.add(ContactPoint(id=cp.id, country=cp.country, name=cp.name))
        return 1
    if row.country != cp.country:
        raise PolicyRefused(
            f"the directory moves {cp.id} from {row.country} to {cp.country}",
            reason="directory-contact-point",
        )
    if row.name != cp.name:
        row.name = cp.name
        return 1
    return 0


def _sync_keys(session: Session, party_id: str, jwks: Iterable[dict[str, object]]) -> tuple[int, int]:
    listed = {key.kid: key for key in (PublicKey.from_jwk(j) for j in jwks)}
    rows = {r.kid: r for r in session.scalars(select(PartyKey).where(PartyKey.party_id == party_id))}
    added = retired = 0
    for kid, key in listed.items():
        row = rows.get(kid)
        if row is None and session.get(PartyKey, kid) is not None:
            raise PolicyRefused(
                f"the directory lists key {kid} for {party_id}, but it belongs to another party here",
                reason="directory-key-conflict",
            )
        if row is None:
            session.add(PartyKey(kid=kid, party_id=party_id, use=key.use, public_jwk=dict(key.jwk)))
            added += 1
        # A key listed again after it was retired stays retired: a party that wants it back publishes a new
        # key, so that "retired" means the same thing on every node whatever order directories came in.
    for kid, row in rows.items():
        if kid not in listed and row.status == "active":
            row.status, row.retired_at = "retired", utcnow()
            retired += 1
    return added, retired


def _sync_agreements(session: Session, directory: RegionDirectory) -> int:
    changed = 0
    listed = set()
    for entry in directory.agreements:
        a, b = sorted(entry.countries)
        listed.add(entry.reference)
        row = session.scalar(select(Agreement).where(Agreement.reference == entry.reference))
        values = {
            "country_a": a,
            "country_b": b,
            "categories": sorted(entry.categories),
            "max_classification": entry.max_classification,
            "active": True,
            "valid_from": entry.valid_from,
            "valid_until": entry.valid_until,
        }
        if row is None:
            session.add(Agreement(reference=entry.reference, **values))
            changed += 1
            continue
        if any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            changed += 1
    for row in session.scalars(select(Agreement).where(Agreement.active.is_(True))):
        if row.reference not in listed:
            row.active = False
            changed += 1
    return changed


def node_entry(
    session: Session, keys: DatabaseKeyStore, master: MasterKey, *, node_id: str, base_url: str
) -> dict[str, Any]:
    """This node's entry for the regional directory, from its own key store: only public keys leave.

    The contact points are those whose private keys the node holds. The transport and witness keys are made
    on first use (a node seeded before the region existed has none yet)."""
    for party in (TRANSPORT_PARTY, WITNESS_PARTY):
        if not session.scalar(
            select(PartyKey.kid).where(PartyKey.party_id == party, PartyKey.status == "active")
        ):
            create_held_key(session, master, party_id=party, use="sig")
    held = held_parties(session)
    contact_points = []
    for cp in session.scalars(
        select(ContactPoint).where(ContactPoint.id.in_(held)).order_by(ContactPoint.id)
    ):
        contact_points.append(
            {
                "id": cp.id,
                "country": cp.country,
                "name": cp.name,
                "signing_keys": [keys.signing_key(cp.id).public.jwk],
                "encryption_keys": [k.public.jwk for k in keys.encryption_keys(cp.id)[:1]],
            }
        )
    if not contact_points:
        raise InvalidInput("this node holds no contact point's keys; seed it first (spoc seed --country CC)")
    log_key = NoteKey.from_public_key(node_origin(node_id), keys.signing_key(LOG_PARTY).public)
    witness_key = NoteKey.from_public_key(
        f"spoc/witness/{node_id}", keys.signing_key(WITNESS_PARTY).public, sig_type=COSIGNATURE_V1
    )
    return {
        "node_id": node_id,
        "base_url": base_url,
        "contact_points": contact_points,
        "transport_keys": [keys.signing_key(TRANSPORT_PARTY).public.jwk],
        "log_key": log_key.vkey,
        "witness_key": witness_key.vkey,
    }
