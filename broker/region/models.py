"""Every regional directory this node has installed, newest last; rows are only ever added."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow


class InstalledDirectory(Base):
    """One version of the signed directory, exactly as received (document and signature).

    Kept whole, not parsed into tables: it is evidence (an auditor can re-check the governance signature
    on what the node acted on), and it is small. The newest row is the node's current directory."""

    __tablename__ = "region_directories"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    region: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(80))
    signed: Mapped[dict[str, Any]] = mapped_column(JSONType)
    signed_by: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
