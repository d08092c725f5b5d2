"""Two countries ask North Macedonia about one person, each in its own script; MK's case file links them.

Driven through the doors users use: the agencies' client (HTTP, signed), the officers' API for the review,
then what the workers do (the outbox drain and the cross-check batch), each in its own unit of work. Works
against the in-process app (a TestClient's transport) and against a live server alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from broker.client.agency import AgencyClient
from broker.client.officer import OfficerClient
from broker.crosscheck.service import run_batch
from broker.crypto import MasterKey
from broker.db import unit_of_work
from broker.keys.service import DatabaseKeyStore
from broker.messages.work import drain
from schemas.content import Content


@dataclass(frozen=True)
class Linked:
    earlier: str
    """AL's RESTRICTED request (Latin script)."""
    incoming: str
    """ME's CONFIDENTIAL request (Cyrillic script), cross-checked after AL's."""


def work(factory: sessionmaker[Session], master: MasterKey) -> None:
    """What the workers do between two steps: forward what was approved, then cross-check."""
    with unit_of_work(factory) as session:
        drain(session, DatabaseKeyStore(session, master))
    while True:
        with unit_of_work(factory) as session:
            if not run_batch(session, DatabaseKeyStore(session, master), master).scanned:
                break


def two_countries_ask(
    agency: Callable[[str], AgencyClient],
    officer: Callable[[str], OfficerClient],
    factory: sessionmaker[Session],
    master: MasterKey,
    *,
    latin: tuple[str, str],
    cyrillic: tuple[str, str],
    year: int,
    secret_detail: str,
) -> Linked:
    """``latin`` and ``cyrillic`` are (given, family) names of one person; ``secret_detail`` is a phrase only
    ME's CONFIDENTIAL request contains (what an uncleared officer must not see)."""
    al = agency("AL-ASP")
    first = Content.model_validate(
        {
            "format": "spoc-content/1",
            "text": "Border crossings and known addresses of this person in the last 12 months.",
            "persons": [
                {
                    "given_name": latin[0],
                    "family_name": latin[1],
                    "year_of_birth": year,
                    "nationalities": ["RS"],
                    "role": "suspect",
                }
            ],
            "vehicles": [{"registration_number": "BG 123-AB", "registration_country": "RS", "make": "Škoda"}],
            "case_references": [{"reference": "AL/ASP/2026/0412", "issued_by": "AL-ASP"}],
        }
    )
    envelope = al.build(payload=first, destination_country="MK", category="migrant-smuggling")
    earlier: str = al.submit(envelope)["message_id"]
    officer("al-officer").decide(earlier, "approve")
    work(factory, master)

    me = agency("ME-UP")
    second = Content.model_validate(
        {
            "format": "spoc-content/1",
            "text": f"Criminal record and phone subscriptions. {secret_detail}",
            "persons": [
                {
                    "given_name": cyrillic[0],
                    "family_name": cyrillic[1],
                    "year_of_birth": year,
                    "documents": [{"document_type": "passport", "document_number": "012345678"}],
                }
            ],
            "phone_numbers": [{"number": "+382 67 123 456"}],
        }
    )
    envelope = me.build(
        payload=second, destination_country="MK", category="migrant-smuggling", classification="CONFIDENTIAL"
    )
    incoming: str = me.submit(envelope)["message_id"]
    officer("me-officer2").decide(incoming, "approve")
    officer("me-supervisor").decide(incoming, "approve")
    work(factory, master)
    return Linked(earlier, incoming)
