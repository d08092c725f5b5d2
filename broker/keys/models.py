"""Public keys of every party, and the broker-held private keys encrypted under the master key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow


class PartyKey(Base):
    __tablename__ = "party_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)  # RFC 7638 thumbprint
    party_id: Mapped[str] = mapped_column(String(32), index=True)
    use: Mapped[str] = mapped_column(String(3))  # "sig" | "enc"
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Set only for keys the broker holds (contact points, the log signer): MasterKey.encrypt(jwk, context=kid).
    private_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    # active: used for new signatures/encryption; retired: rotated out, still verifies what it signed
    # and still decrypts; revoked: refused for anything dated after revoked_at.
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # None: from created_at
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revocation_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class SeenNonce(Base):
    """Nonces of signed agency requests inside the replay window; a second use of one is a replay."""

    __tablename__ = "seen_nonces"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
