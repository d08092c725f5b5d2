"""What a node keeps as a witness of its peers' logs, and as a log submitting to their witnesses.

Both tables hold one mutable row per log and witness: the protocol only needs the latest state (C2SP
tlog-witness: "the witness is only required to keep track of the latest checkpoint it observed and
verified"). The history that matters as evidence — refusals, forks, inconsistencies — goes into the audit
log, which is append-only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UTCDateTime, utcnow

BigSize = BigInteger().with_variant(Integer(), "sqlite")


class WitnessLogState(Base):
    """The latest checkpoint this node's witness cosigned for a peer's log (one row per origin).

    ``note`` is the checkpoint exactly as the log signed it (what gossip publishes, and the evidence when a
    later checkpoint of the same size has another root); ``cosignature`` is the line this witness returned."""

    __tablename__ = "witness_log_state"

    origin: Mapped[str] = mapped_column(String(255), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigSize)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    cosignature: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WitnessSubmission(Base):
    """The size a peer's witness has cosigned of this node's log under ``origin`` (what ``old`` must say)."""

    __tablename__ = "witness_submissions"

    node_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    origin: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigSize)
    checkpoint_id: Mapped[int | None] = mapped_column(BigSize, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
