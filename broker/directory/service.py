"""Directory look-ups and agency credentials.

The directory (contact points, agencies, agreements) is read on every submission and changes a few times a
year, so look-ups go through a process-wide *snapshot* instead of a query each. A request pays one small
aggregate query, the directory's *stamp* (row count and latest ``updated_at`` of each table); any change,
in any process, changes the stamp and the next request reloads, so deactivating an agency or ending an
agreement takes effect at once. Within a session, a flush that touches a directory row makes the next
look-up read the stamp again (the same rules as the key registry's snapshot in ``broker.keys.service``).

Snapshot rows are detached ORM objects shared between threads and never handed out: a look-up attaches a
copy to the caller's session (``merge(load=False)``, no SQL), or returns the session's own instance if it
already holds that row, so a caller's pending change is never overwritten by the cached one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from broker.db import read_stamp, register_stamp
from broker.directory.models import Agency, Agreement, ContactPoint
from broker.errors import NotFound

_Row = TypeVar("_Row", Agency, Agreement, ContactPoint)
_TABLES = (ContactPoint, Agency, Agreement)
_STAMP = select(
    *(
        column
        for table in _TABLES
        for column in (
            select(func.count()).select_from(table).scalar_subquery(),
            select(func.max(table.updated_at)).scalar_subquery(),
        )
    )
)
register_stamp("directory", _STAMP)


@dataclass(frozen=True)
class _Snapshot:
    contact_points: dict[str, ContactPoint]  # by country
    agencies: dict[str, Agency]
    agreements: dict[tuple[str, str], list[Agreement]]  # by (country_a, country_b), a < b


_snapshots: dict[tuple[object, ...], _Snapshot] = {}
_lock = threading.Lock()


def _changed_directory(session: Session, _flush_context: object) -> None:
    if any(isinstance(o, _TABLES) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info["directory_changes"] = session.info.get("directory_changes", 0) + 1


event.listen(Session, "after_flush", _changed_directory)


def _load(session: Session) -> _Snapshot:
    # A throw-away session on the caller's connection: it sees the caller's transaction (flushed rows
    # included), and its objects are detached when it closes, so none of the caller's are touched.
    with Session(bind=session.connection(), expire_on_commit=False, autoflush=False) as loader:
        cps = {cp.country: cp for cp in loader.scalars(select(ContactPoint))}
        agencies = {a.id: a for a in loader.scalars(select(Agency))}
        agreements: dict[tuple[str, str], list[Agreement]] = {}
        for ag in loader.scalars(select(Agreement).order_by(Agreement.id)):
            agreements.setdefault((ag.country_a, ag.country_b), []).append(ag)
        loader.expunge_all()
    return _Snapshot(cps, agencies, agreements)


def _snapshot(session: Session) -> _Snapshot:
    changes = session.info.get("directory_changes", 0)
    memo = session.info.get("directory_snapshot")
    if memo is not None and memo[0] == changes:
        snapshot: _Snapshot = memo[1]
        return snapshot
    stamp = read_stamp(session, "directory")
    with _lock:
        found = _snapshots.get(stamp)
    if found is None:
        found = _load(session)
        with _lock:
            if len(_snapshots) >= 8:
                _snapshots.clear()
            _snapshots[stamp] = found
    session.info["directory_snapshot"] = (session.info.get("directory_changes", 0), found)
    return found


def _attach(session: Session, row: _Row) -> _Row:
    """The session's own copy of a snapshot row. The identity map holds objects weakly, so the copies are
    also kept in ``session.info`` for the session's life: a batch asks for the same few contact points and
    agencies hundreds of times and should merge each once."""
    key = inspect(row).identity_key
    own = session.identity_map.get(key) if key is not None else None
    if own is not None:
        return own
    merged = session.merge(row, load=False)
    session.info.setdefault("directory_rows", {})[key] = merged
    return merged


def contact_point_for(session: Session, country: str) -> ContactPoint:
    cp = _snapshot(session).contact_points.get(country)
    if cp is None:
        raise NotFound(f"no contact point for country {country}")
    return _attach(session, cp)


def get_agency(session: Session, agency_id: str) -> Agency:
    """An active agency (attached to ``session``); NotFound for an unknown or deactivated one."""
    agency = find_agency(session, agency_id)
    if agency is None or not agency.active:
        raise NotFound(f"no agency {agency_id}")
    return agency


def find_agency(session: Session, agency_id: str) -> Agency | None:
    """The agency ``agency_id`` whatever its status, attached to ``session``; None if there is none."""
    agency = _snapshot(session).agencies.get(agency_id)
    return _attach(session, agency) if agency is not None else None


def agreements_between(session: Session, a: str, b: str, *, at: datetime) -> list[Agreement]:
    """The active agreements between two countries in force at ``at``."""
    lo, hi = sorted((a, b))
    return [
        _attach(session, ag)
        for ag in _snapshot(session).agreements.get((lo, hi), [])
        if ag.active
        and ag.valid_from is not None
        and ag.valid_from <= at
        and (ag.valid_until is None or ag.valid_until > at)
    ]
