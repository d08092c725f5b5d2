"""The directory snapshot: look-ups cost no query of their own, yet every change is seen at once.

Each test tries to make the snapshot serve a stale row: a change in the same session (flushed, not
committed), a change committed by another connection, a new row, and a caller's own pending change that
a cached copy must not overwrite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.crypto import MasterKey
from broker.db import utcnow
from broker.directory.models import Agency, Agreement
from broker.directory.service import agreements_between, contact_point_for, find_agency, get_agency
from broker.errors import NotFound
from broker.keys.service import DatabaseKeyStore
from tests.factories import Region


@pytest.fixture
def statements_on() -> Iterator[Any]:
    """A function that starts counting the statements an engine sends, and returns the list they go to."""
    listening: list[tuple[Engine, Any]] = []

    def start(engine: Engine) -> list[str]:
        seen: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        listening.append((engine, count))
        return seen

    yield start
    for engine, count in listening:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def statements(db: Session, statements_on: Any) -> list[str]:
    """The statements the test's session sends."""
    seen: list[str] = statements_on(db.get_bind())
    return seen


def test_lookups_after_the_first_cost_no_query(db: Session, statements: list[str]) -> None:
    get_agency(db, "AL-ASP")
    before = len(statements)
    for _ in range(5):
        assert contact_point_for(db, "AL").id == "AL-SPOC"
        assert get_agency(db, "MK-BP").country == "MK"
        assert agreements_between(db, "AL", "MK", at=utcnow())
    assert len(statements) == before


def test_an_agency_deactivated_in_the_same_session_is_refused_at_once(db: Session) -> None:
    agency = get_agency(db, "ME-BP")
    agency.active = False
    db.flush()
    with pytest.raises(NotFound):
        get_agency(db, "ME-BP")
    found = find_agency(db, "ME-BP")
    assert found is not None
    assert not found.active


def test_a_change_committed_elsewhere_is_seen_by_the_next_lookup(engine: Engine, region: Region) -> None:
    with Session(engine) as reader:
        assert get_agency(reader, "SI-BP").name != "renamed by another process"
    with _renamed_elsewhere(engine, "SI-BP", "renamed by another process"), Session(engine) as reader:
        assert get_agency(reader, "SI-BP").name == "renamed by another process"


@contextlib.contextmanager
def _renamed_elsewhere(engine: Engine, agency_id: str, name: str) -> Iterator[None]:
    """``agency_id`` renamed and committed by another session, as another process would; restored after."""
    with Session(engine) as writer:
        row = writer.get(Agency, agency_id)
        assert row is not None
        original, row.name = row.name, name
        writer.commit()
    try:
        yield
    finally:
        with Session(engine) as writer:
            row = writer.get(Agency, agency_id)
            assert row is not None
            row.name = original
            writer.commit()


def test_an_ended_agreement_is_no_legal_basis_from_its_end(db: Session) -> None:
    now = utcnow()
    current = agreements_between(db, "HR", "SI", at=now)
    assert current
    row = db.scalar(select(Agreement).where(Agreement.reference == current[0].reference))
    assert row is not None
    row.valid_until = now
    db.flush()
    assert current[0].reference not in {a.reference for a in agreements_between(db, "HR", "SI", at=now)}
    just_before = now - timedelta(microseconds=1)
    assert current[0].reference in {a.reference for a in agreements_between(db, "SI", "HR", at=just_before)}


def test_a_new_agency_is_found(db: Session) -> None:
    with pytest.raises(NotFound):
        get_agency(db, "AL-NEW")
    db.add(Agency(id="AL-NEW", country="AL", kind="police", name="New unit", accreditation="RESTRICTED"))
    db.flush()
    assert get_agency(db, "AL-NEW").name == "New unit"


def test_a_pending_change_of_the_caller_is_not_overwritten_by_the_cached_row(db: Session) -> None:
    agency = db.get(Agency, "RS-BP")
    assert agency is not None
    agency.push_url = "https://changed.invalid/hook"  # pending, not flushed
    assert get_agency(db, "RS-BP") is agency
    assert agency.push_url == "https://changed.invalid/hook"


def test_lookups_hand_out_the_sessions_own_objects_not_the_shared_ones(
    engine: Engine, region: Region
) -> None:
    with Session(engine) as first, Session(engine) as second:
        a, b = get_agency(first, "BA-SIPA"), get_agency(second, "BA-SIPA")
        assert a is not b
        a.name = "changed in the first session only"
        assert b.name != a.name
        first.rollback()


def test_the_key_and_directory_stamps_share_one_statement_within_a_transaction(
    engine: Engine, region: Region, settings: Settings, statements_on: Any
) -> None:
    """The signing key's stamp and the agency's come from one round trip in one transaction; a stamp left
    over is never served in the next transaction, where a change committed meanwhile must be seen."""
    master = MasterKey.from_secret(settings.master_key_secret())

    def shared(seen: list[str]) -> int:
        return sum("party_keys" in s and "agencies" in s for s in seen)

    with Session(engine) as reader:
        seen = statements_on(engine)
        DatabaseKeyStore(reader, master).registered("no-such-kid")
        assert find_agency(reader, "SI-BP") is not None
        assert shared(seen) == 1  # the agency's stamp came with the key's
        reader.commit()
        reader.info.pop("directory_snapshot", None)  # the session's memo; the stamp is the question here
        DatabaseKeyStore(reader, master).registered("no-such-kid")  # leaves the directory's stamp over
        assert shared(seen) == 2
        reader.commit()
        with _renamed_elsewhere(engine, "SI-BP", "renamed between two transactions"):
            found = find_agency(reader, "SI-BP")
            assert found is not None
            assert found.name == "renamed between two transactions"
            assert shared(seen) == 3
