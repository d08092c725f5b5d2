"""Builders shared by the message, policy, account and contact-point tests.

Two ways to drive a message, as in the rest of the suite:

* service level, inside the rolled-back ``db`` session: :func:`build_envelope` signs and encrypts with the
  seeded agency keys and the key store, :func:`submit_as` / :func:`decide_as` call the services directly;
* over HTTP with the in-process app (commits for real): :func:`drain` runs the outbox in-process and
  :func:`committed` opens a fresh session to look at what the requests committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.accounts.models import User
from broker.audit.models import AuditEntry
from broker.audit.service import Actor
from broker.client.agency import SignedRequests
from broker.crypto import KeyPair, seal, sign_envelope
from broker.crypto.countersign import sign_receipt
from broker.db import unit_of_work
from broker.directory.service import get_agency
from broker.keys.service import DatabaseKeyStore
from broker.messages.models import Message
from broker.messages.service import deliver, forward, submit
from broker.messages.work import drain as drain_outbox
from contact_points.review.service import decide
from schemas.api import Decision
from schemas.envelope import RoutingHeader
from tests.factories import Region

URGENT_DIRECT: dict[str, Any] = {
    "level": "urgent",
    "urgency_reason": "threat-to-life-or-physical-integrity",
    "urgency_explanation": "a kidnapped person is held at an unknown address",
    "information_access": "direct",
}
URGENT_INDIRECT: dict[str, Any] = {**URGENT_DIRECT, "information_access": "indirect"}


def build_envelope(
    keys: DatabaseKeyStore,
    region: Region,
    agency_id: str,
    *,
    destination_country: str,
    category: str = "drug-trafficking",
    classification: str = "RESTRICTED",
    message_type: str = "request",
    destination_agency: str | None = None,
    priority: dict[str, Any] | None = None,
    readers: Sequence[str] | None = None,
    conversation_id: str | None = None,
    in_reply_to: str | None = None,
    payload: bytes = b'{"q": "who owns the van"}',
    created_at: datetime | None = None,
    handling_codes: Sequence[str] = ("H0",),
) -> dict[str, Any]:
    """A signed envelope from ``agency_id``, encrypted to ``readers`` (default: both contact points and
    the destination agency, as the agency client does)."""
    origin = agency_id.split("-", 1)[0]
    header = RoutingHeader.model_validate(
        {
            "message_id": str(uuid.uuid4()),
            "conversation_id": conversation_id or str(uuid.uuid4()),
            "in_reply_to": in_reply_to,
            "type": message_type,
            "sender_agency": agency_id,
            "origin_country": origin,
            "destination_country": destination_country,
            "destination_agency": destination_agency,
            "category": category,
            "legal_basis": "bilateral police-cooperation agreement",
            "classification": classification,
            "handling_codes": list(handling_codes),
            "evaluation": {"source_reliability": "B", "information_accuracy": "2"},
            "priority": priority or {"level": "normal", "information_access": "indirect"},
            "created_at": created_at or datetime.now(UTC),
        }
    )
    if readers is None:
        readers = [f"{origin}-SPOC", f"{destination_country}-SPOC"]
        if destination_agency:
            readers = [*readers, destination_agency]
    jwe = seal(payload, readers=[keys.public_encryption_key(party) for party in readers])
    header_json = header.model_dump(mode="json", exclude_none=True)
    signer = KeyPair.from_private_jwk(region.seed.agencies[agency_id].signing_key)
    return {
        "spoc": "1",
        "header": header_json,
        "payload": jwe,
        "signature": sign_envelope(header_json, jwe, key=signer),
    }


def agency_actor(agency_id: str) -> Actor:
    return Actor(agency_id, "agency")


def submit_as(
    session: Session, keys: DatabaseKeyStore, region: Region, agency_id: str, **envelope: Any
) -> Message:
    """Build an envelope from ``agency_id`` and submit it through the service (no HTTP)."""
    raw = build_envelope(keys, region, agency_id, **envelope)
    return submit(
        session, keys, agency=get_agency(session, agency_id), raw=raw, actor=agency_actor(agency_id)
    )


def user(session: Session, username: str) -> User:
    found = session.scalar(select(User).where(User.username == username))
    assert found is not None, username
    return found


def decide_as(
    session: Session,
    keys: DatabaseKeyStore,
    username: str,
    message_id: str,
    action: str,
    **fields: Any,
) -> Message:
    officer = user(session, username)
    decision = Decision.model_validate({"action": action, **fields})
    return decide(session, keys, officer, message_id, decision, actor=Actor(officer.username, officer.role))


def routed_message(
    session: Session,
    keys: DatabaseKeyStore,
    region: Region,
    *,
    sender: str = "XK-KP",
    destination_country: str = "AL",
    agency: str = "AL-ASP",
) -> Message:
    """A RESTRICTED request walked through origin review, forwarding and destination routing."""
    origin = sender.split("-", 1)[0].lower()
    message = submit_as(session, keys, region, sender, destination_country=destination_country)
    decide_as(session, keys, f"{origin}-officer", message.id, "approve")
    forward(session, keys, message.id)
    decide_as(
        session, keys, f"{destination_country.lower()}-officer", message.id, "route", route_to_agency=agency
    )
    return message


def delivered_message(session: Session, keys: DatabaseKeyStore, region: Region, **kw: Any) -> Message:
    message = routed_message(session, keys, region, **kw)
    deliver(session, message.id)
    return message


def receipt_for(region: Region, agency_id: str, message: Message, *, digest: str | None = None) -> str:
    """The agency's signed receipt for ``message`` (as ``AgencyClient.ack`` makes it)."""
    statement = {
        "type": "receipt",
        "message_id": message.id,
        "digest": digest or message.digest,
        "agency": agency_id,
        "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return sign_receipt(statement, key=KeyPair.from_private_jwk(region.seed.agencies[agency_id].signing_key))


def audit_entries(session: Session, *, object_id: str, action: str | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.object_id == object_id).order_by(AuditEntry.id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query).all())


# --- over HTTP ---------------------------------------------------------------------------------------


def _sessionmaker(client: TestClient) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = client.app.state.sessionmaker  # type: ignore[attr-defined]
    return maker


@contextmanager
def committed(client: TestClient) -> Iterator[Session]:
    """A fresh unit of work on the app's database, to inspect what HTTP requests committed."""
    with unit_of_work(_sessionmaker(client)) as session:
        yield session


def drain(client: TestClient) -> int:
    """Run the outbox in-process (forward and deliver), as the worker would."""
    master = client.app.state.master_key  # type: ignore[attr-defined]
    with committed(client) as session:
        return drain_outbox(session, DatabaseKeyStore(session, master))


_Signed = SignedRequests  # the agency client's own RFC 9421 signer


def agency_http(client: TestClient, region: Region, agency_id: str) -> httpx.Client:
    """A raw HTTP client authenticated as ``agency_id``, for requests the agency client does not make."""
    key = KeyPair.from_private_jwk(region.seed.agencies[agency_id].signing_key)
    return httpx.Client(base_url="http://testserver", transport=client._transport, auth=_Signed(key))


def officer_headers(client: TestClient, region: Region, username: str) -> dict[str, str]:
    response = client.post(
        "/v1/auth/login", json={"username": username, "password": region.password(username)}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


ACCOUNT_PASSWORD = "correct horse battery staple"


def new_officer_account(client: TestClient, prefix: str) -> str:
    """A fresh ME officer (RESTRICTED) with :data:`ACCOUNT_PASSWORD`, committed; its username."""
    from broker.accounts.service import create_user
    from broker.audit.service import SYSTEM

    username = f"{prefix}-{uuid.uuid4().hex[:12]}"
    with committed(client) as session:
        create_user(
            session,
            username=username,
            password=ACCOUNT_PASSWORD,
            role="officer",
            contact_point_id="ME-SPOC",
            country="ME",
            clearance="RESTRICTED",
            actor=SYSTEM,
        )
    return username
