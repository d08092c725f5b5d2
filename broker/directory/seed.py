"""The demo region: eight countries, their contact points and agencies, agreements, keys and accounts.

Agreements are symmetric and deliberately uneven, as in the region: Bosnia and Herzegovina and Serbia
have no police-cooperation agreement with Kosovo* in this demo, Albania–Serbia is limited to RESTRICTED,
and the two EU members agree up to SECRET. Agency private keys are written to
``data_dir/agencies/`` (each agency holds its own); officer passwords are random per seed and written
to ``data_dir/demo-accounts.json``, both 0600 and never in the repository.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts.service import create_user
from broker.audit.actions import AuditAction
from broker.audit.service import SYSTEM, record
from broker.client.credentials import AgencyCredentials
from broker.crypto import KeyPair, MasterKey
from broker.directory.models import Agency, Agreement, ContactPoint, Country
from broker.errors import InvalidInput
from broker.files import private_dir, write_private
from broker.keys.service import create_held_key, register_public
from schemas.codelists import codes, entries

LOG_SIGNER = "spoc-log"

AGENCIES: dict[str, list[tuple[str, str, str]]] = {
    "AL": [
        ("ASP", "police", "Albanian State Police"),
        ("BMP", "border-police", "Border and Migration Police"),
        ("CUS", "customs", "General Directorate of Customs"),
        ("PRO", "prosecutor", "General Prosecutor's Office"),
        ("FIU", "fiu", "General Directorate for the Prevention of Money Laundering"),
    ],
    "BA": [
        ("SIPA", "police", "State Investigation and Protection Agency"),
        ("BP", "border-police", "Border Police of BiH"),
        ("ITA", "customs", "Indirect Taxation Authority"),
        ("PO", "prosecutor", "Prosecutor's Office of BiH"),
        ("FID", "fiu", "Financial Intelligence Department"),
    ],
    "HR": [
        ("POL", "police", "Croatian Police"),
        ("BP", "border-police", "Border Police Directorate"),
        ("CUS", "customs", "Customs Administration"),
        ("DORH", "prosecutor", "State Attorney's Office"),
        ("AMLO", "fiu", "Anti-Money Laundering Office"),
    ],
    "XK": [
        ("KP", "police", "Kosovo Police"),
        ("BP", "border-police", "Border Police"),
        ("CUS", "customs", "Kosovo Customs"),
        ("SPO", "prosecutor", "State Prosecutor"),
        ("FIU", "fiu", "Financial Intelligence Unit"),
    ],
    "ME": [
        ("UP", "police", "Police Directorate"),
        ("BP", "border-police", "Border Police"),
        ("CUS", "customs", "Customs Administration"),
        ("VDT", "prosecutor", "Supreme State Prosecutor's Office"),
        ("FIU", "fiu", "Financial Intelligence Unit"),
    ],
    "MK": [
        ("MOI", "police", "Public Security Bureau"),
        ("BP", "border-police", "Border Police"),
        ("CUS", "customs", "Customs Administration"),
        ("PPO", "prosecutor", "Public Prosecutor's Office"),
        ("FIO", "fiu", "Financial Intelligence Office"),
    ],
    "RS": [
        ("MUP", "police", "Police Directorate"),
        ("BP", "border-police", "Border Police Administration"),
        ("CUS", "customs", "Customs Administration"),
        ("RJT", "prosecutor", "Republic Public Prosecutor's Office"),
        ("APML", "fiu", "Administration for the Prevention of Money Laundering"),
    ],
    "SI": [
        ("POL", "police", "Slovenian Police"),
        ("BP", "border-police", "Border Police"),
        ("FURS", "customs", "Financial Administration"),
        ("DT", "prosecutor", "State Prosecutor's Office"),
        ("UPPD", "fiu", "Office for Money Laundering Prevention"),
    ],
}
ACCREDITATION = {
    "police": "CONFIDENTIAL",
    "border-police": "RESTRICTED",
    "customs": "RESTRICTED",
    "prosecutor": "SECRET",
    "fiu": "CONFIDENTIAL",
}
NO_AGREEMENT = {("BA", "XK"), ("RS", "XK")}
LIMITED = {("AL", "RS"): "RESTRICTED"}
EU_MEMBERS = {"HR", "SI"}


@dataclass
class DemoAccount:
    username: str
    password: str
    role: str
    contact_point: str | None
    clearance: str


@dataclass
class SeedResult:
    agencies: dict[str, AgencyCredentials] = field(default_factory=dict)
    accounts: dict[str, DemoAccount] = field(default_factory=dict)


def is_seeded(session: Session) -> bool:
    return session.scalar(select(Country).limit(1)) is not None


def seed_region(
    session: Session, master: MasterKey, *, data_dir: Path | None, countries: Collection[str] | None = None
) -> SeedResult:
    """Create the demo region, or with ``countries`` only those countries' part of it: one country is one
    node of the region (DESIGN §8), which learns the others from the regional directory (``broker.region``).
    Refuses to run twice on the same database (the caller checks ``is_seeded``)."""
    here = [cc for cc in AGENCIES if countries is None or cc in countries]
    unknown = set(countries or ()) - set(AGENCIES)
    if unknown or not here:
        raise InvalidInput(f"the demo region has no country {', '.join(sorted(unknown)) or 'of those'}")
    result = SeedResult()
    names = {e["code"]: e["label"] for e in entries("countries")}
    session.add_all([Country(code=cc, name=names[cc]) for cc in here])
    session.flush()  # no ORM relationships, so flush parents before children
    for cc in here:
        session.add(ContactPoint(id=f"{cc}-SPOC", country=cc, name=f"{names[cc]} — national contact point"))
    session.flush()
    for cc in here:
        for suffix, kind, name in AGENCIES[cc]:
            creds = _create_agency(session, f"{cc}-{suffix}", cc, kind, name)
            result.agencies[creds.agency_id] = creds
        for use in ("sig", "enc"):
            create_held_key(session, master, party_id=f"{cc}-SPOC", use=use)
    create_held_key(session, master, party_id=LOG_SIGNER, use="sig")
    _create_agreements(session, here)
    _create_accounts(session, result, here)
    record(
        session,
        actor=SYSTEM,
        action=AuditAction.DIRECTORY_SEEDED,
        object_type="directory",
        object_id="demo-region",
        countries=here,
    )
    session.flush()
    if data_dir is not None:
        write_credentials(result, data_dir)
    return result


def write_credentials(result: SeedResult, data_dir: Path) -> None:
    private_dir(data_dir)
    for creds in result.agencies.values():
        creds.save(data_dir / "agencies")
    accounts = json.dumps({u: asdict(a) for u, a in result.accounts.items()}, indent=1)
    write_private(data_dir / "demo-accounts.json", accounts)


def _create_agency(session: Session, agency_id: str, cc: str, kind: str, name: str) -> AgencyCredentials:
    sig, enc = KeyPair.generate("sig"), KeyPair.generate("enc")
    session.add(
        Agency(
            id=agency_id,
            country=cc,
            kind=kind,
            name=name,
            accreditation=ACCREDITATION[kind],
            categories=sorted(codes("categories")),
        )
    )
    session.flush()
    register_public(session, party_id=agency_id, key=sig.public)
    register_public(session, party_id=agency_id, key=enc.public)
    return AgencyCredentials(agency_id, sig.private_jwk_json(), enc.private_jwk_json())


def demo_agreements(countries: Iterable[str] = AGENCIES) -> list[tuple[str, str, str]]:
    """The demo region's agreements among ``countries``: (country a, country b, highest classification)."""
    found = []
    for a, b in itertools.combinations(sorted(countries), 2):
        if (a, b) in NO_AGREEMENT:
            continue
        if (a, b) in LIMITED:
            ceiling = LIMITED[(a, b)]
        elif {a, b} <= EU_MEMBERS:
            ceiling = "SECRET"
        else:
            ceiling = "CONFIDENTIAL"
        found.append((a, b, ceiling))
    return found


def _create_agreements(session: Session, countries: Iterable[str]) -> None:
    all_categories = sorted(codes("categories"))
    for a, b, ceiling in demo_agreements(countries):
        session.add(
            Agreement(
                reference=f"DEMO/{a}-{b}/police-cooperation",
                country_a=a,
                country_b=b,
                categories=all_categories,
                max_classification=ceiling,
            )
        )


def _create_accounts(session: Session, result: SeedResult, countries: Iterable[str]) -> None:
    def add(username: str, role: str, cp: str | None, country: str | None, clearance: str) -> None:
        password = secrets.token_urlsafe(12)
        create_user(
            session,
            username=username,
            password=password,
            role=role,
            contact_point_id=cp,
            country=country,
            regional=username == "regional-auditor",
            clearance=clearance,
            actor=SYSTEM,
        )
        result.accounts[username] = DemoAccount(username, password, role, cp, clearance)

    for cc in countries:
        cp, low = f"{cc}-SPOC", cc.lower()
        add(f"{low}-officer", "officer", cp, cc, "RESTRICTED")
        add(f"{low}-officer2", "officer", cp, cc, "CONFIDENTIAL")
        add(f"{low}-supervisor", "supervisor", cp, cc, "SECRET")
        add(f"{low}-auditor", "auditor", None, cc, "UNCLASSIFIED")
    add("regional-auditor", "auditor", None, None, "UNCLASSIFIED")
    add("admin", "admin", None, None, "UNCLASSIFIED")
