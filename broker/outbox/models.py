"""The transactional outbox: work to do after a commit, written in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, UTCDateTime, utcnow


class OutboxItem(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(36), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The relay sets dispatched_at when it hands the row to Celery; a row dispatched long ago and
    # still not done is handed over again (its task was lost), which is why every task is idempotent.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
