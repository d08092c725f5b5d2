"""Access rules (DESIGN §5): clearance order, accreditation and the legal basis between two countries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.db import utcnow
from broker.directory.models import Agreement
from broker.directory.service import get_agency
from broker.errors import PolicyRefused
from broker.keys.service import DatabaseKeyStore
from broker.policy.service import check_accreditation, cleared, legal_basis
from tests.broker.messages.spoc_builders import submit_as
from tests.factories import Region

LEVELS = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"]


@pytest.mark.parametrize(("clearance", "classification"), list(itertools.product(LEVELS, repeat=2)))
def test_cleared_is_at_or_above(clearance: str, classification: str) -> None:
    assert cleared(clearance, classification) is (LEVELS.index(clearance) >= LEVELS.index(classification))


def test_an_unknown_level_never_counts_as_cleared() -> None:
    with pytest.raises(ValueError, match="TOP-SECRET"):
        cleared("TOP-SECRET", "RESTRICTED")
    with pytest.raises(ValueError, match="secret"):
        cleared("SECRET", "secret")


@pytest.mark.parametrize(
    ("agency_id", "ceiling"),
    [
        ("AL-ASP", "CONFIDENTIAL"),  # police
        ("AL-BMP", "RESTRICTED"),  # border police
        ("AL-CUS", "RESTRICTED"),  # customs
        ("AL-PRO", "SECRET"),  # prosecutor
        ("AL-FIU", "CONFIDENTIAL"),  # financial intelligence
    ],
)
@pytest.mark.parametrize("role", ["send", "receive"])
def test_accreditation_caps_what_an_agency_sends_and_receives(
    db: Session, agency_id: str, ceiling: str, role: str
) -> None:
    agency = get_agency(db, agency_id)
    for level in LEVELS:
        if LEVELS.index(level) <= LEVELS.index(ceiling):
            check_accreditation(agency, level, role=role)
        else:
            with pytest.raises(PolicyRefused) as refused:
                check_accreditation(agency, level, role=role)
            assert refused.value.extra["reason"] == "accreditation"
            assert agency_id in refused.value.detail
            assert ceiling in refused.value.detail


def _basis(
    db: Session, origin: str, destination: str, classification: str, at: datetime | None = None
) -> str:
    agreement = legal_basis(
        db,
        origin=origin,
        destination=destination,
        category="drug-trafficking",
        classification=classification,
        at=at or utcnow(),
    )
    return agreement.reference


@pytest.mark.parametrize(("origin", "destination"), [("XK", "BA"), ("BA", "XK"), ("XK", "RS"), ("RS", "XK")])
def test_pairs_without_agreement_are_refused_both_ways(db: Session, origin: str, destination: str) -> None:
    with pytest.raises(PolicyRefused) as refused:
        _basis(db, origin, destination, "UNCLASSIFIED")
    assert refused.value.extra["reason"] == "no-agreement"
    assert origin in refused.value.detail
    assert destination in refused.value.detail


@pytest.mark.parametrize(("origin", "destination"), [("AL", "RS"), ("RS", "AL")])
def test_al_rs_stops_at_restricted(db: Session, origin: str, destination: str) -> None:
    assert _basis(db, origin, destination, "RESTRICTED") == "DEMO/AL-RS/police-cooperation"
    for level in ("CONFIDENTIAL", "SECRET"):
        with pytest.raises(PolicyRefused) as refused:
            _basis(db, origin, destination, level)
        assert refused.value.extra["reason"] == "classification-not-covered"
        assert "RESTRICTED" in refused.value.detail


def test_regional_agreements_stop_at_confidential_and_eu_members_reach_secret(db: Session) -> None:
    assert _basis(db, "AL", "MK", "CONFIDENTIAL") == "DEMO/AL-MK/police-cooperation"
    with pytest.raises(PolicyRefused) as refused:
        _basis(db, "AL", "MK", "SECRET")
    assert refused.value.extra["reason"] == "classification-not-covered"
    assert _basis(db, "HR", "SI", "SECRET") == "DEMO/HR-SI/police-cooperation"
    assert _basis(db, "SI", "HR", "SECRET") == "DEMO/HR-SI/police-cooperation"


def _agreement(db: Session, reference: str) -> Agreement:
    found = db.scalar(select(Agreement).where(Agreement.reference == reference))
    assert found is not None
    return found


def test_an_inactive_agreement_is_no_legal_basis(db: Session) -> None:
    _agreement(db, "DEMO/AL-MK/police-cooperation").active = False
    db.flush()
    with pytest.raises(PolicyRefused) as refused:
        _basis(db, "AL", "MK", "RESTRICTED")
    assert refused.value.extra["reason"] == "no-agreement"


def test_an_agreement_counts_only_within_its_validity(db: Session) -> None:
    now = utcnow()
    agreement = _agreement(db, "DEMO/AL-MK/police-cooperation")
    agreement.valid_from = now - timedelta(days=30)
    agreement.valid_until = now - timedelta(days=1)
    db.flush()
    with pytest.raises(PolicyRefused):
        _basis(db, "AL", "MK", "RESTRICTED", at=now)
    with pytest.raises(PolicyRefused):
        _basis(db, "AL", "MK", "RESTRICTED", at=now - timedelta(days=31))
    assert _basis(db, "AL", "MK", "RESTRICTED", at=now - timedelta(days=2)) == agreement.reference


def test_a_category_outside_the_agreement_is_refused(db: Session) -> None:
    _agreement(db, "DEMO/AL-MK/police-cooperation").categories = ["fraud"]
    db.flush()
    with pytest.raises(PolicyRefused) as refused:
        _basis(db, "AL", "MK", "RESTRICTED")
    assert refused.value.extra["reason"] == "category-not-covered"
    assert "drug-trafficking" in refused.value.detail


def test_the_legal_basis_is_judged_when_the_message_arrives_not_when_the_sender_says(
    db: Session, keys: DatabaseKeyStore, region: Region
) -> None:
    """``header.created_at`` is the sender's own clock: judged by it, an agency could backdate a request
    into the validity of an agreement that has expired."""
    now = datetime.now(UTC)
    agreement = _agreement(db, "DEMO/AL-MK/police-cooperation")
    agreement.valid_from = now - timedelta(days=365)
    agreement.valid_until = now - timedelta(hours=1)
    db.flush()
    with pytest.raises(PolicyRefused) as refused:  # dated while the agreement was valid, within the window
        submit_as(db, keys, region, "AL-ASP", destination_country="MK", created_at=now - timedelta(hours=2))
    assert refused.value.extra["reason"] == "no-agreement"
