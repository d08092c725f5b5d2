"""What an auditor may see of the log, and how they search it.

Scope (DESIGN §5): a national auditor sees only entries touching their country (the country is in the
entry's ``countries``); a regional auditor and an admin see every entry. Nobody sees content here,
because entries never hold any. Every query on entries for an auditor goes through :func:`_scoped`, so
a filter cannot widen the scope: filters only ever narrow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql import func

from broker.accounts.models import User
from broker.audit.actions import AuditAction
from broker.audit.models import AuditEntry, AuditLeaf
from broker.errors import InvalidInput, NotFound, NotPermitted
from broker.messages.models import Message

MAX_PAGE = 1000


@dataclass(frozen=True)
class Scope:
    """Whose entries an auditor may see: one country's, or (``country is None``) all."""

    country: str | None

    @classmethod
    def of(cls, user: User) -> Scope:
        if user.role == "admin" or (user.role == "auditor" and user.country is None):
            return cls(None)
        if user.role == "auditor":
            return cls(user.country)
        raise NotPermitted("only auditors read the audit log")

    @property
    def label(self) -> str:
        return "all countries (regional)" if self.country is None else f"entries touching {self.country}"


@dataclass(frozen=True)
class EntryFilter:
    """Search criteria; each one narrows. ``message`` matches the entry's object id (a message id)."""

    since: datetime | None = None
    until: datetime | None = None
    country: str | None = None
    agency: str | None = None
    action: str | None = None
    message: str | None = None
    actor: str | None = None
    request_id: str | None = None  # the server's id of the request (its log lines carry it: broker.ops.logs)

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))
        if self.country is not None and (len(self.country) != 2 or not self.country.isalpha()):
            raise InvalidInput("country is a two-letter code, e.g. AL")

    def as_query(self) -> dict[str, str]:
        """The non-empty criteria as query-string values (for links and the export record)."""
        return {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in asdict(self).items() if v}


def touches(session: Session, country: str) -> ColumnElement[bool]:
    """``country`` is among the entry's countries (JSONB containment on PostgreSQL, json_each on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(AuditEntry.countries, JSONB).contains([country])
    each = func.json_each(AuditEntry.countries).table_valued("value")
    return select(each.c.value).where(each.c.value == country).exists()


def _scoped(session: Session, scope: Scope, criteria: EntryFilter) -> Select[AuditEntry, int]:
    stmt = select(AuditEntry, AuditLeaf.seq).outerjoin(AuditLeaf, AuditLeaf.entry_id == AuditEntry.id)
    if scope.country is not None:
        stmt = stmt.where(touches(session, scope.country))
    if criteria.country:
        stmt = stmt.where(touches(session, criteria.country.upper()))
    if criteria.since is not None:
        stmt = stmt.where(AuditEntry.at >= criteria.since)
    if criteria.until is not None:
        stmt = stmt.where(AuditEntry.at < criteria.until)
    if criteria.action:
        stmt = stmt.where(AuditEntry.action == criteria.action)
    if criteria.actor:
        stmt = stmt.where(AuditEntry.actor == criteria.actor)
    if criteria.message:
        stmt = stmt.where(AuditEntry.object_id == criteria.message)
    if criteria.request_id:
        stmt = stmt.where(AuditEntry.request_id == criteria.request_id)
    if criteria.agency:
        theirs = select(Message.id).where(
            or_(Message.sender_agency == criteria.agency, Message.destination_agency == criteria.agency)
        )
        stmt = stmt.where(or_(AuditEntry.actor == criteria.agency, AuditEntry.object_id.in_(theirs)))
    return stmt


@dataclass(frozen=True)
class Found:
    """One entry as an auditor sees it, with its log position (None while it waits for the sequencer)."""

    entry: AuditEntry
    seq: int | None

    def view(self) -> dict[str, Any]:
        e = self.entry
        return {
            "id": e.id,
            "seq": self.seq,
            "at": e.at.astimezone(UTC).isoformat(),
            "actor": e.actor,
            "role": e.role,
            "action": e.action,
            "object_type": e.object_type,
            "object_id": e.object_id,
            "countries": list(e.countries),
            "outcome": e.outcome,
            "request_id": e.request_id,
            "details": e.details,
        }


def search(
    session: Session, scope: Scope, criteria: EntryFilter, *, limit: int = 100, before: int | None = None
) -> list[Found]:
    """Entries in scope matching ``criteria``, newest first; page on with ``before`` = the last id seen."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit is between 1 and {MAX_PAGE}")
    stmt = _scoped(session, scope, criteria)
    if before is not None:
        stmt = stmt.where(AuditEntry.id < before)
    rows = session.execute(stmt.order_by(AuditEntry.id.desc()).limit(limit)).all()
    return [Found(entry, seq) for entry, seq in rows]


def in_scope(session: Session, scope: Scope, criteria: EntryFilter, *, chunk: int = 5000) -> list[Found]:
    """Every entry in scope matching ``criteria``, oldest first (for exports)."""
    found: list[Found] = []
    after = 0
    while True:
        stmt = _scoped(session, scope, criteria).where(AuditEntry.id > after)
        rows = session.execute(stmt.order_by(AuditEntry.id).limit(chunk)).all()
        found.extend(Found(entry, seq) for entry, seq in rows)
        if len(rows) < chunk:
            return found
        after = rows[-1][0].id


def entry(session: Session, scope: Scope, entry_id: int) -> Found:
    """One entry, if it exists and is in scope (NotFound otherwise: out of scope looks like absent)."""
    stmt = _scoped(session, scope, EntryFilter()).where(AuditEntry.id == entry_id)
    row = session.execute(stmt).first()
    if row is None:
        raise NotFound("no such audit entry in your scope")
    return Found(row[0], row[1])


def exchange_ids(session: Session, message_id: str) -> list[str]:
    """The message ids of one exchange: the message's conversation (request, answers, clarifications).

    A message refused at intake was never stored; its entries still carry its id, so it is its own exchange.
    """
    conversation = session.scalar(select(Message.conversation_id).where(Message.id == message_id))
    if conversation is None:
        return [message_id]
    ids: Sequence[str] = session.scalars(
        select(Message.id).where(Message.conversation_id == conversation)
    ).all()
    return sorted({message_id, *ids})


def timeline(session: Session, scope: Scope, message_id: str) -> list[Found]:
    """Every entry in scope about the exchange ``message_id`` belongs to, in log order."""
    ids = exchange_ids(session, message_id)
    stmt = _scoped(session, scope, EntryFilter()).where(AuditEntry.object_id.in_(ids))
    rows = session.execute(stmt.order_by(AuditEntry.id)).all()
    # A denied call is filed under the caller's country with the id the caller *tried*: an auditor sees its own
    # country's probes, but they do not make another country's exchange (or an id that never existed) its own.
    if not any(entry.action != AuditAction.ACCESS_DENIED for entry, _ in rows):
        raise NotFound("no audit entries about this message in your scope")
    return [Found(entry, seq) for entry, seq in rows]
