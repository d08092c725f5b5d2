"""The world the access tests are checked against, built once over the real HTTP API (see conftest).

For each classification (HR and SI agree on exchanges up to SECRET; HR-DORH and SI-DT, prosecutors, are
accredited up to SECRET) there is:

* ``outbound``: HR-DORH → SI-DT, awaiting HR's outbound review (HR officers decide on it);
* ``returned``: HR-DORH → SI-DT, returned by HR for clarification (HR-DORH may resubmit it);
* ``inbound``: SI-DT → HR-DORH, H2, reviewed by SI and routed by HR, waiting in HR-DORH's pull inbox;
* an audit entry about ``outbound``, sequenced into a signed checkpoint (for proofs).

Besides: dead letters (SI-DT → HR-DORH, push given up) for the cells that retry or re-route one, one
RS-MUP → MK-MOI message delivered to MK (cross-country reads), a notification per officer and
route (dismissing one consumes it), a retired throwaway key (the admin revokes it) and a throwaway account
(the admin operates on it). Every payload carries a marker so a test can tell whether content leaked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.accounts.models import User
from broker.accounts.service import create_user
from broker.audit.models import AuditEntry
from broker.audit.service import SYSTEM
from broker.client.agency import AgencyClient, SignedRequests
from broker.crypto import KeyPair
from broker.db import unit_of_work, utcnow
from broker.delivery.models import Channel
from broker.delivery.push import dead_letter
from broker.delivery.service import start_delivery
from broker.directory.models import Agency
from broker.keys.service import register_public
from broker.messages.models import Message
from broker.messages.notifications import notify
from tests.factories import Region, agency_client, drain

CLASSIFICATIONS = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET")
FOUR_EYES = ("CONFIDENTIAL", "SECRET")
AGENCY = "HR-DORH"
PARTNER = "SI-DT"
BASE = "http://testserver"
CATEGORY = "drug-trafficking"

# The roles of the matrix and who plays them (HR's contact point; auditors national = HR, and regional).
ROLES = ("anonymous", "agency", "officer", "supervisor", "auditor", "regional_auditor", "admin")
USERS = {
    "officer": "hr-officer",  # cleared RESTRICTED
    "supervisor": "hr-supervisor",  # cleared SECRET
    "auditor": "hr-auditor",
    "regional_auditor": "regional-auditor",
    "admin": "admin",
}


Signed = SignedRequests  # the agency client's own RFC 9421 signer


@dataclass(frozen=True)
class Login:
    token: str
    csrf: str


@dataclass
class World:
    client: TestClient
    region: Region
    logins: dict[str, Login] = field(default_factory=dict)
    outbound: dict[str, str] = field(default_factory=dict)
    returned: dict[str, str] = field(default_factory=dict)
    inbound: dict[str, str] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # message id -> marker in its payload
    entries: dict[str, int] = field(default_factory=dict)  # classification -> audit entry about outbound
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)  # unsent envelopes
    resubmissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    receipts: dict[str, str] = field(default_factory=dict)  # inbound id -> HR-DORH's signed receipt
    notes: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, username) -> notification id
    checkpoint_id: int = 0
    tree_size: int = 0
    throwaway_kid: str = ""
    throwaway_user: str = ""
    rs_mk: str = ""
    # Dead letters (SI-DT → HR-DORH, push given up) by (route, username, classification): one for each cell
    # that may act on it, since acting on one (retry, re-route) delivers it.
    dead: dict[tuple[str, str, str], str] = field(default_factory=dict)
    secret_officer: str = ""  # a second SI officer cleared SECRET: the seed has one (the supervisor)
    passwords: dict[str, str] = field(default_factory=dict)  # accounts made here, not by the seed

    def http(self) -> httpx.Client:
        """A client with an empty cookie jar: no cell inherits a cookie set by another."""
        return httpx.Client(base_url=BASE, transport=self.client._transport, follow_redirects=False)

    def agency_auth(self, agency_id: str) -> Signed:
        return Signed(KeyPair.from_private_jwk(self.region.seed.agencies[agency_id].signing_key))

    def login(self, username: str) -> Login:
        """A fresh session (bearer token and its CSRF token)."""
        password = self.passwords.get(username) or self.region.password(username)
        response = self.client.post("/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        body = response.json()
        return Login(body["token"], body["csrf_token"])

    def as_user(self, username: str) -> Login:
        if username not in self.logins:
            self.logins[username] = self.login(username)
        return self.logins[username]

    def decide(self, username: str, message_id: str, action: str, **fields: Any) -> None:
        headers = {"Authorization": f"Bearer {self.as_user(username).token}"}
        response = self.client.post(
            f"/v1/cp/messages/{message_id}/decisions", json={"action": action, **fields}, headers=headers
        )
        assert response.status_code == 200, (username, action, response.text)


def _payload(world: World, classification: str, kind: str) -> tuple[bytes, str]:
    marker = f"matrix-{kind}-{classification}-{uuid.uuid4().hex[:12]}"
    return f'{{"matrix": "{marker}"}}'.encode(), marker


def _send(world: World, sender: AgencyClient, kind: str, classification: str, to: str, **build: Any) -> str:
    payload, marker = _payload(world, classification, kind)
    envelope = sender.build(
        payload=payload,
        destination_country=to.split("-", 1)[0],
        destination_agency=to,
        category=CATEGORY,
        classification=classification,
        **build,
    )
    message_id: str = sender.submit(envelope)["message_id"]
    world.markers[message_id] = marker
    return message_id


def _approve(world: World, country: str, message_id: str, classification: str) -> None:
    """Origin review: one cleared officer; from CONFIDENTIAL two, and for SECRET one of them a supervisor."""
    low = country.lower()
    if classification == "CONFIDENTIAL":
        world.decide(f"{low}-officer2", message_id, "approve")
    elif classification == "SECRET":
        world.decide(world.secret_officer, message_id, "approve")
    world.decide(f"{low}-supervisor", message_id, "approve")


def _build(world: World) -> None:
    region, client = world.region, world.client
    _accounts_and_keys(world)
    hr = agency_client(region, AGENCY, client)
    si = agency_client(region, PARTNER, client)
    for c in CLASSIFICATIONS:
        world.outbound[c] = _send(world, hr, "outbound", c, PARTNER)
        returned = _send(world, hr, "returned", c, PARTNER)
        world.decide("hr-supervisor", returned, "return", reason="name the vessel")
        world.returned[c] = returned
        inbound = _send(world, si, "inbound", c, AGENCY, handling_codes=("H2",))
        _approve(world, "SI", inbound, c)
        drain(client)
        world.decide("hr-supervisor", inbound, "route", route_to_agency=AGENCY)
        drain(client)
        world.inbound[c] = inbound
        payload, _ = _payload(world, c, "submitted")
        world.submissions[c] = hr.build(
            payload=payload,
            destination_country="SI",
            destination_agency=PARTNER,
            category=CATEGORY,
            classification=c,
        )
    _resubmissions(world, hr)
    items = {i["message_id"]: i for i in hr.inbox_all()}
    for message_id in world.inbound.values():
        world.receipts[message_id] = hr.receipt(hr.open(items[message_id]))
    _rs_mk(world)
    _dead_letters(world, si)
    _rows(world)
    _checkpoint(world)


def _resubmissions(world: World, hr: AgencyClient) -> None:
    for c, message_id in world.returned.items():
        status = hr.status(message_id)
        assert status["state"] == "returned", status
        payload, _ = _payload(world, c, "resubmitted")
        world.resubmissions[c] = hr.build(
            payload=payload,
            destination_country="SI",
            destination_agency=PARTNER,
            category=CATEGORY,
            classification=c,
            conversation_id=status["conversation_id"],
        )


DEAD_LETTER_ROUTES = (
    "/v1/cp/deliveries/{message_id}/retry",
    "/v1/cp/deliveries/{message_id}/reroute",
    "/ui/deliveries/{message_id}/retry",
    "/ui/deliveries/{message_id}/reroute",
)


def _dead_letters(world: World, si: AgencyClient) -> None:
    """Routed to HR-DORH, whose push was given up (``push.dead_letter``, what the last failed attempt does)."""
    wanted = [
        (route, username, c)
        for route in DEAD_LETTER_ROUTES
        for username in ("hr-officer", "hr-supervisor")
        for c in CLASSIFICATIONS
        if username == "hr-supervisor" or c in ("UNCLASSIFIED", "RESTRICTED")
    ]
    for key in wanted:
        world.dead[key] = _send(world, si, "dead", key[2], AGENCY)
    for key, message_id in world.dead.items():
        _approve(world, "SI", message_id, key[2])
    drain(world.client)
    for message_id in world.dead.values():
        world.decide("hr-supervisor", message_id, "route", route_to_agency=AGENCY)
    maker = world.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with unit_of_work(maker) as session:
        agency = session.get(Agency, AGENCY)
        assert agency is not None
        for message_id in world.dead.values():
            message = session.get(Message, message_id)
            assert message is not None
            item = start_delivery(session, message, agency, channel=Channel.PUSH)
            dead_letter(session, item, message, now=utcnow())
    drain(world.client)  # the deliver steps find the dead letters and leave them be


def _rs_mk(world: World) -> None:
    rs = agency_client(world.region, "RS-MUP", world.client)
    message_id = _send(world, rs, "rs-mk", "RESTRICTED", "MK-MOI")
    world.decide("rs-officer", message_id, "approve")
    drain(world.client)
    world.decide("mk-officer", message_id, "route", route_to_agency="MK-MOI")
    drain(world.client)
    world.rs_mk = message_id


def _accounts_and_keys(world: World) -> None:
    """A second SECRET-cleared SI officer (four eyes on SECRET), a throwaway account and a retired key."""
    maker = world.client.app.state.sessionmaker  # type: ignore[attr-defined]
    suffix = uuid.uuid4().hex[:10]
    world.secret_officer, world.throwaway_user = f"si-secret-{suffix}", f"matrix-{suffix}"
    world.passwords[world.secret_officer] = uuid.uuid4().hex
    with unit_of_work(maker) as session:
        create_user(
            session,
            username=world.secret_officer,
            password=world.passwords[world.secret_officer],
            role="officer",
            contact_point_id="SI-SPOC",
            country="SI",
            clearance="SECRET",
            actor=SYSTEM,
        )
        create_user(
            session,
            username=world.throwaway_user,
            password=uuid.uuid4().hex,
            role="auditor",
            country="HR",
            actor=SYSTEM,
        )
        throwaway = KeyPair.generate("sig").public
        register_public(session, party_id="XK-FIU", key=throwaway).status = "retired"
        world.throwaway_kid = throwaway.kid


def _rows(world: World) -> None:
    """Rows written through the services: notifications to dismiss, a throwaway key and account."""
    maker = world.client.app.state.sessionmaker  # type: ignore[attr-defined]
    paths = (
        "/v1/cp/notifications/{notification_id}/dismissal",
        "/ui/notifications/{notification_id}/dismiss",
    )
    with unit_of_work(maker) as session:
        for username in ("hr-officer", "hr-supervisor"):
            user = session.scalar(select(User).where(User.username == username))
            assert user is not None
            for path in paths:
                row = notify(
                    session,
                    contact_point_id="HR-SPOC",
                    kind="assigned",
                    text="access matrix",
                    message_id=world.outbound["UNCLASSIFIED"],
                    user_id=user.id,
                )
                session.flush()
                world.notes[(path, username)] = row.id
        for c, message_id in world.outbound.items():
            entry = session.scalar(
                select(AuditEntry.id)
                .where(AuditEntry.object_id == message_id)
                .order_by(AuditEntry.id)
                .limit(1)
            )
            assert entry is not None
            world.entries[c] = entry


def _checkpoint(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.as_user('admin').token}"}
    response = world.client.post("/v1/audit/checkpoints", headers=headers)
    assert response.status_code in (200, 201), response.text
    world.checkpoint_id, world.tree_size = response.json()["id"], response.json()["size"]


def build_world(app: FastAPI, region: Region) -> Iterator[World]:
    with TestClient(app) as client:
        built = World(client, region)
        _build(built)
        yield built
