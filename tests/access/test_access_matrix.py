"""The access matrix (issue 6): every role × every route × every classification, the expected answer
written below as a table and each cell checked over the real HTTP API.

How to read a cell: the exact HTTP status. ``cleared(yes, no)`` is ``yes`` for an officer cleared for the
message's classification (officer: RESTRICTED, supervisor: SECRET) and ``no`` otherwise. Denials follow
``broker.errors``: 401 no (or no valid) credentials — a bearer token is not an agency's signature and a
signature is not a session; 403 authenticated but the wrong role or clearance; 404 out of scope (see
``test_scope.py``). The officers' and auditors' HTML pages answer a caller who is not logged in with 303 to
the login page. Where an allowed call would change what other cells rely on, the call is made so that it
changes nothing others need (an officer *assigns the message to itself*; the agency publishes a malformed
key and is refused on the key, past authentication, with 400), or on an object of its own (each cell that may
retry or re-route a dead letter has its own dead letter; the admin revokes a throwaway key).

Rows with ``{message_id}`` (and the routes that take a classification in their body) are checked at each
classification; the others once. ``test_every_route_is_in_the_matrix`` fails when a route is added to the
app without a row here.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy.orm import Session, sessionmaker

from broker.messages.models import Message
from tests.access.world import AGENCY, CLASSIFICATIONS, ROLES, USERS, World

ANON, AGENCY_ROLE, OFFICER, SUPERVISOR, AUDITOR, REGIONAL, ADMIN = ROLES
CLEARANCE = {OFFICER: "RESTRICTED", SUPERVISOR: "SECRET"}
RANK = {c: i for i, c in enumerate(CLASSIFICATIONS)}
STATIC = sorted(p.name for p in (Path(__file__).parents[2] / "contact_points/ui/static").iterdir())[0]


@dataclass(frozen=True)
class cleared:
    yes: int
    no: int


Expect = int | cleared | frozenset[int]
ACK = cleared(204, 403)  # acknowledge H3 conditions: only with clearance for the message
DECIDE = cleared(200, 403)  # decide (here: assign to oneself): only with clearance
PROVIDE = cleared(201, 403)  # send own-initiative information of that classification
UI_ACT = cleared(303, 403)  # the same through the web UI's forms (303: done, back to a page)
CKPT = frozenset({200, 201})  # sign a checkpoint: 201 if the log grew since the last one, else 200

OUT, RETURNED, INBOUND, DEAD = "outbound", "returned", "inbound", "dead"

# fmt: off
#    method  path                                                      anon agency officer  super auditr region admin
MATRIX: list[tuple[str, str, Expect, Expect, Expect, Expect, Expect, Expect, Expect]] = [
    # --- public: documentation, health, directory, login --------------------------------------------------------
    ("GET",  "/openapi.json",                                           200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/docs",                                                   200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/docs/start.js",                                          200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/docs/assets",                                            200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/health",                                                 200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/ready",                                                  200, 200, 200,     200, 200,  200,  200),
    # metrics: by network or metrics token, never by role (the test client's address is no network)
    ("GET",  "/metrics",                                                403, 403, 403,     403, 403,  403,  403),
    ("GET",  "/",                                                       303, 303, 303,     303, 303,  303,  303),
    ("GET",  "/static",                                                 200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/v1/directory/countries",                                 200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/v1/directory/agencies",                                  200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/v1/directory/parties/{party_id}/jwks",                   200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/v1/directory/parties/{party_id}/keys",                   200, 200, 200,     200, 200,  200,  200),
    # --- the region: the signed directory is public (no directory is installed here: 404); only an admin installs,
    # and this node has no region anchor, so an admin's install is refused by policy (422, audited) ---------------
    ("GET",  "/v1/region/directory",                                    404, 404, 404,     404, 404,  404,  404),
    ("POST", "/v1/region/directory",                                    401, 401, 403,     403, 403,  403,  422),
    # --- the hop between nodes: only a node signing with a transport key (label spoc-node) of the directory -------
    ("POST", "/v1/hop/messages",                                        401, 401, 401,     401, 401,  401,  401),
    ("POST", "/v1/hop/messages/batches",                                401, 401, 401,     401, 401,  401,  401),
    ("POST", "/v1/hop/events",                                          401, 401, 401,     401, 401,  401,  401),
    # --- reconciliation: a peer node reads its ledger (node signature only); this node's auditors read any peer's
    # ledger and reconcile (no directory is installed here: 503, retry once one is) ------------------------------
    ("GET",  "/v1/hop/ledger",                                          401, 401, 401,     401, 401,  401,  401),
    ("GET",  "/v1/hop/ledger/{peer_node}",                              401, 401, 403,     403, 503,  503,  503),
    ("POST", "/v1/hop/reconcile",                                       401, 401, 403,     403, 503,  503,  503),
    # --- the witness (C2SP tlog-witness): open to all, the log's signature is the credential; with no directory
    # installed this node witnesses no log (404; an empty list); its own log's consistency proofs are public -----
    ("POST", "/v1/witness/add-checkpoint",                              404, 404, 404,     404, 404,  404,  404),
    ("GET",  "/v1/witness/checkpoints",                                 200, 200, 200,     200, 200,  200,  200),
    ("GET",  "/v1/witness/consistency",                                 200, 200, 200,     200, 200,  200,  200),
    ("POST", "/v1/auth/login",                                          200, 200, 200,     200, 200,  200,  200),
    ("POST", "/v1/auth/logout",                                         401, 401, 204,     204, 204,  204,  204),
    ("GET",  "/ui",                                                     303, 303, 303,     303, 303,  303,  303),
    ("GET",  "/ui/",                                                    303, 303, 303,     303, 303,  303,  303),
    ("GET",  "/ui/login",                                               200, 200, 200,     200, 200,  200,  200),
    ("POST", "/ui/login",                                               303, 303, 303,     303, 303,  303,  303),
    ("POST", "/ui/logout",                                              303, 303, 303,     303, 303,  303,  303),
    ("GET",  "/ui/audit/static/audit.css",                              200, 200, 200,     200, 200,  200,  200),
    # --- agencies (RFC 9421 signed) -----------------------------------------------------------------------------
    ("POST", "/v1/messages",                                            401, 202, 401,     401, 401,  401,  401),
    ("POST", "/v1/messages/batches",                                    401, 200, 401,     401, 401,  401,  401),
    ("POST", "/v1/messages/{message_id}/resubmissions",                 401, 202, 401,     401, 401,  401,  401),
    ("GET",  "/v1/messages/{message_id}",                               401, 200, 401,     401, 401,  401,  401),
    ("POST", "/v1/messages/{message_id}/dissemination-requests",        401, 201, 401,     401, 401,  401,  401),
    ("GET",  "/v1/messages/{message_id}/dissemination-requests",        401, 200, 401,     401, 401,  401,  401),
    ("GET",  "/v1/inbox",                                               401, 200, 401,     401, 401,  401,  401),
    ("POST", "/v1/inbox/{message_id}/ack",                              401, 204, 401,     401, 401,  401,  401),
    ("GET",  "/v1/inbox/push-endpoint",                                 401, 200, 401,     401, 401,  401,  401),
    ("PUT",  "/v1/inbox/push-endpoint",                                 401, 200, 401,     401, 401,  401,  401),
    ("POST", "/v1/keys",                                                401, 400, 401,     401, 401,  401,  401),
    # --- contact-point officers (API) ---------------------------------------------------------------------------
    ("GET",  "/v1/cp/queues/{direction}",                               401, 401, 200,     200, 403,  403,  403),
    ("GET",  "/v1/cp/queues/{direction}/counts",                        401, 401, 200,     200, 403,  403,  403),
    ("GET",  "/v1/cp/messages/{message_id}",                            401, 401, 200,     200, 403,  403,  403),
    ("GET",  "/v1/cp/messages/{message_id}/content",                    401, 401, 200,     200, 403,  403,  403),
    ("GET",  "/v1/cp/messages/{message_id}/links",                      401, 401, 200,     200, 403,  403,  403),
    ("POST", "/v1/cp/messages/{message_id}/conditions/acknowledgement", 401, 401, ACK,     204, 403,  403,  403),
    ("POST", "/v1/cp/messages/{message_id}/decisions",                  401, 401, DECIDE,  200, 403,  403,  403),
    ("POST", "/v1/cp/decisions",                                        401, 401, 200,     200, 403,  403,  403),
    ("POST", "/v1/cp/provisions",                                       401, 401, PROVIDE, 201, 403,  403,  403),
    ("GET",  "/v1/cp/dissemination-requests",                           401, 401, 200,     200, 403,  403,  403),
    ("GET",  "/v1/cp/notifications",                                    401, 401, 200,     200, 403,  403,  403),
    ("POST", "/v1/cp/notifications/{notification_id}/dismissal",        401, 401, 204,     204, 403,  403,  403),
    ("GET",  "/v1/cp/deliveries",                                       401, 401, 200,     200, 403,  403,  403),
    ("POST", "/v1/cp/deliveries/{message_id}/retry",                    401, 401, DECIDE,  200, 403,  403,  403),
    ("POST", "/v1/cp/deliveries/{message_id}/reroute",                  401, 401, DECIDE,  200, 403,  403,  403),
    # --- contact-point officers (web UI) ------------------------------------------------------------------------
    ("GET",  "/ui/queue",                                               303, 303, 200,     200, 303,  303,  303),
    ("GET",  "/ui/queue/fragment",                                      401, 401, 200,     200, 403,  403,  403),
    ("GET",  "/ui/messages/{message_id}",                               303, 303, 200,     200, 403,  403,  403),
    ("POST", "/ui/messages/{message_id}/decide",                        303, 303, UI_ACT,  303, 403,  403,  403),
    ("POST", "/ui/messages/{message_id}/acknowledge",                   303, 303, UI_ACT,  303, 403,  403,  403),
    ("POST", "/ui/notifications/{notification_id}/dismiss",             303, 303, 303,     303, 403,  403,  403),
    ("GET",  "/ui/provide",                                             303, 303, 200,     200, 403,  403,  403),
    ("POST", "/ui/provide",                                             303, 303, UI_ACT,  303, 403,  403,  403),
    ("GET",  "/ui/deliveries",                                          303, 303, 200,     200, 403,  403,  403),
    ("POST", "/ui/deliveries/{message_id}/retry",                       303, 303, UI_ACT,  303, 403,  403,  403),
    ("POST", "/ui/deliveries/{message_id}/reroute",                     303, 303, UI_ACT,  303, 403,  403,  403),
    # --- retention (officers of the exchange's contact point, auditors): the exchange is HR's outbound one, still
    # running, so a review is refused (409, audited) past authorisation; a release first sets the caller's own hold
    ("GET",  "/v1/retention/review-queue",                              401, 401, 200,     200, 200,  200,  403),
    ("GET",  "/v1/retention/{conversation_id}",                         401, 401, 200,     200, 200,  200,  403),
    ("POST", "/v1/retention/{conversation_id}/hold",                    401, 401, 201,     201, 201,  201,  403),
    ("POST", "/v1/retention/{conversation_id}/hold/release",            401, 401, 200,     200, 200,  200,  403),
    ("POST", "/v1/retention/{conversation_id}/review",                  401, 401, 409,     409, 409,  409,  403),
    ("GET",  "/ui/retention",                                           303, 303, 200,     200, 200,  200,  403),
    ("GET",  "/ui/retention/{conversation_id}",                         303, 303, 200,     200, 200,  200,  403),
    ("POST", "/ui/retention/{conversation_id}/hold",                    303, 303, 303,     303, 303,  303,  403),
    ("POST", "/ui/retention/{conversation_id}/release",                 303, 303, 303,     303, 303,  303,  403),
    ("POST", "/ui/retention/{conversation_id}/review",                  303, 303, 409,     409, 409,  409,  403),
    # --- auditors (API) -----------------------------------------------------------------------------------------
    ("POST", "/v1/audit/verify",                                        401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/entries",                                       401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/entries/{entry_id}",                            401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/entries/{entry_id}/proof",                      401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/proofs/consistency",                            401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/messages/{message_id}/timeline",                401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/checkpoint",                                    401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/checkpoints",                                   401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/checkpoints/{checkpoint_id}",                   401, 401, 403,     403, 200,  200,  200),
    ("POST", "/v1/audit/checkpoints",                                   401, 401, 403,     403, CKPT, CKPT, CKPT),
    ("GET",  "/v1/audit/keys",                                          401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/alerts",                                        401, 401, 403,     403, 200,  200,  200),
    ("GET",  "/v1/audit/export",                                        401, 401, 403,     403, 200,  200,  200),
    # --- auditors (web UI) --------------------------------------------------------------------------------------
    ("GET",  "/ui/audit",                                               303, 303, 403,     403, 200,  200,  200),
    ("GET",  "/ui/audit/messages/{message_id}",                         303, 303, 403,     403, 200,  200,  200),
    ("GET",  "/ui/audit/checkpoints",                                   303, 303, 403,     403, 200,  200,  200),
    ("POST", "/ui/audit/checkpoints",                                   303, 303, 403,     403, 303,  303,  303),
    ("GET",  "/ui/audit/export",                                        303, 303, 403,     403, 200,  200,  200),
    # --- statistics: Art. 18 and the dashboard for supervisors and auditors (each its own contact point's figures,
    # tests/broker/stats/); officers and admins are refused; peers' aggregates need a node's signature ------------
    ("GET",  "/v1/stats/art18",                                         401, 401, 403,     200, 200,  200,  403),
    ("GET",  "/v1/stats/aggregate",                                     401, 401, 401,     401, 401,  401,  401),
    ("GET",  "/ui/dashboard",                                           303, 303, 403,     200, 200,  200,  403),
    # --- admins -------------------------------------------------------------------------------------------------
    ("POST", "/v1/audit/witnesses/{witness}/cosign",                    401, 401, 403,     403, 403,  403,  200),
    ("POST", "/v1/admin/keys/{kid}/revoke",                             401, 401, 403,     403, 403,  403,  200),
    ("GET",  "/ui/admin/users",                                         303, 303, 403,     403, 403,  403,  200),
    ("POST", "/ui/admin/users",                                         303, 303, 403,     403, 403,  403,  200),
    ("POST", "/ui/admin/users/{username}/{operation}",                  303, 303, 403,     403, 403,  403,  200),
]
# fmt: on

# Which message (of the classification under test) fills a route's {message_id}.
TARGETS: dict[tuple[str, str], str] = {
    ("POST", "/v1/messages/{message_id}/resubmissions"): RETURNED,
    ("GET", "/v1/messages/{message_id}"): OUT,
    ("POST", "/v1/messages/{message_id}/dissemination-requests"): INBOUND,
    ("GET", "/v1/messages/{message_id}/dissemination-requests"): INBOUND,
    ("POST", "/v1/inbox/{message_id}/ack"): INBOUND,
    ("GET", "/v1/cp/messages/{message_id}"): OUT,
    ("GET", "/v1/cp/messages/{message_id}/content"): OUT,
    ("GET", "/v1/cp/messages/{message_id}/links"): OUT,
    ("POST", "/v1/cp/messages/{message_id}/conditions/acknowledgement"): OUT,
    ("POST", "/v1/cp/messages/{message_id}/decisions"): OUT,
    ("POST", "/v1/cp/deliveries/{message_id}/retry"): DEAD,
    ("POST", "/v1/cp/deliveries/{message_id}/reroute"): DEAD,
    ("POST", "/ui/deliveries/{message_id}/retry"): DEAD,
    ("POST", "/ui/deliveries/{message_id}/reroute"): DEAD,
    ("GET", "/ui/messages/{message_id}"): OUT,
    ("POST", "/ui/messages/{message_id}/decide"): OUT,
    ("POST", "/ui/messages/{message_id}/acknowledge"): OUT,
    ("GET", "/v1/audit/messages/{message_id}/timeline"): OUT,
    ("GET", "/ui/audit/messages/{message_id}"): OUT,
}

# Routes that take a classification in the body are checked at each one, like the message routes.
CLASSIFIED_BODY = {("POST", "/v1/messages"), ("POST", "/v1/cp/provisions"), ("POST", "/ui/provide")}


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    target: str | None
    expect: dict[str, Expect]

    @property
    def per_classification(self) -> bool:
        return self.target is not None or (self.method, self.path) in CLASSIFIED_BODY


ROWS = [Row(m, p, TARGETS.get((m, p)), dict(zip(ROLES, cells, strict=True))) for m, p, *cells in MATRIX]


def _cells() -> Iterator[Any]:
    for row in ROWS:
        for role in ROLES:
            for c in CLASSIFICATIONS if row.per_classification else ("-",):
                yield pytest.param(row, role, c, id=f"{row.method} {row.path} {role} {c}")


def is_cleared(role: str, classification: str) -> bool:
    return role in CLEARANCE and RANK[CLEARANCE[role]] >= RANK[classification]


def expected(row: Row, role: str, classification: str) -> frozenset[int]:
    cell = row.expect[role]
    if isinstance(cell, cleared):
        return frozenset({cell.yes if is_cleared(role, classification) else cell.no})
    if isinstance(cell, int):
        return frozenset({cell})
    return cell


# --- building each cell's request ------------------------------------------------------------------------


@dataclass
class Call:
    world: World
    row: Row
    role: str
    classification: str

    @property
    def username(self) -> str | None:
        return USERS.get(self.role)

    @property
    def message_id(self) -> str:
        assert self.row.target is not None
        by_target: dict[str, dict[str, str]] = {
            OUT: self.world.outbound,
            RETURNED: self.world.returned,
            INBOUND: self.world.inbound,
        }
        if self.row.target == DEAD:  # each cell that may act on a dead letter has one of its own
            own = (self.row.path, self.username or "", self.classification)
            return (
                self.world.dead.get(own)
                or self.world.dead[(self.row.path, "hr-supervisor", self.classification)]
            )
        return by_target[self.row.target][self.classification]

    def path(self) -> str:
        w = self.world
        params = {
            "party_id": "HR-SPOC",
            "direction": "outbound",
            "entry_id": str(w.entries["UNCLASSIFIED"]),
            "checkpoint_id": str(w.checkpoint_id),
            "witness": "HR-SPOC",
            "peer_node": "xk",
            "kid": w.throwaway_kid,
            "username": w.throwaway_user,
            "operation": "unlock",
            "notification_id": str(w.notes.get((self.row.path, self.username or ""), 1)),
        }
        if "{conversation_id}" in self.row.path:
            params["conversation_id"] = _conversation(w, w.outbound["UNCLASSIFIED"])
        if self.row.target is not None:
            params["message_id"] = self.message_id
        path = self.row.path.format(**params)
        if path == "/static":
            return f"/static/{STATIC}"
        if path == "/docs/assets":
            return "/docs/assets/swagger-ui.css"
        return path

    def send(self) -> httpx.Response:
        w = self.world
        headers: dict[str, str] = {}
        auth: httpx.Auth | None = None
        csrf = "no-session"
        if self.role == AGENCY_ROLE:
            auth = w.agency_auth(AGENCY)
        elif self.username is not None:
            login = w.login(self.username) if self._needs_fresh_session() else w.as_user(self.username)
            headers["Authorization"] = f"Bearer {login.token}"
            csrf = login.csrf
        kwargs = self._body(csrf)
        headers.update(kwargs.pop("headers", {}))
        with w.http() as http:
            return http.request(self.row.method, self.path(), headers=headers, auth=auth, **kwargs)

    def _needs_fresh_session(self) -> bool:
        return self.row.path in ("/v1/auth/logout", "/ui/logout")

    def _body(self, csrf: str) -> dict[str, Any]:
        builder = BODIES.get((self.row.method, self.row.path))
        form = self.row.method == "POST" and self.row.path.startswith("/ui/")
        body = builder(self) if builder is not None else {}
        if form:
            body.setdefault("data", {}).setdefault("csrf", csrf)
        return body


def _conversation(world: World, message_id: str) -> str:
    factory: sessionmaker[Session] = world.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with factory() as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.conversation_id


def _hold(call: Call) -> dict[str, Any]:
    return {"json": {"reason": "access matrix"}}


def _hold_then_release(call: Call) -> dict[str, Any]:
    """Release needs a hold of the caller's own: set it first (refused, and harmless, for who may not)."""
    if call.username is not None:
        token = call.world.as_user(call.username).token
        call.world.client.post(
            f"/v1/retention/{_conversation(call.world, call.world.outbound['UNCLASSIFIED'])}/hold",
            json={"reason": "access matrix"},
            headers={"Authorization": f"Bearer {token}"},
        )
    return {"json": {}} if call.row.path.startswith("/v1/") else {"data": {}}


def _login_body(call: Call) -> dict[str, Any]:
    return {"json": {"username": "al-officer2", "password": call.world.region.password("al-officer2")}}


def _ui_login(call: Call) -> dict[str, Any]:
    token = uuid.uuid4().hex
    body = _login_body(call)["json"]
    return {"data": {**body, "csrf": token}, "headers": {"Cookie": f"spoc_login_csrf={token}"}}


def _submit(call: Call) -> dict[str, Any]:
    envelope = call.world.submissions[call.classification]
    return {"json": envelope, "headers": {"Idempotency-Key": envelope["header"]["message_id"]}}


def _resubmit(call: Call) -> dict[str, Any]:
    envelope = call.world.resubmissions[call.classification]
    return {"json": envelope, "headers": {"Idempotency-Key": envelope["header"]["message_id"]}}


def _provision(call: Call) -> dict[str, Any]:
    return {
        "json": {
            "destination_country": "SI",
            "category": "drug-trafficking",
            "classification": call.classification,
            "information": "a vessel leaves Split on Friday",
        }
    }


def _ui_provision(call: Call) -> dict[str, Any]:
    return {"data": _provision(call)["json"]}


def _assign_self(call: Call) -> dict[str, Any]:
    return {"json": {"action": "assign", "assign_to": call.username or "nobody"}}


def _ui_assign_self(call: Call) -> dict[str, Any]:
    return {"data": _assign_self(call)["json"]}


BODIES: dict[tuple[str, str], Callable[[Call], dict[str, Any]]] = {
    ("POST", "/v1/auth/login"): _login_body,
    ("POST", "/ui/login"): _ui_login,
    ("POST", "/v1/messages"): _submit,
    ("POST", "/v1/messages/{message_id}/resubmissions"): _resubmit,
    # The envelope the single-submission row (earlier in ROWS) already stored: it comes back refused as a
    # repeat in its slot, the answer is still 200; this row checks who may post a batch, not its contents.
    ("POST", "/v1/messages/batches"): lambda call: {
        "json": {"envelopes": [call.world.submissions["UNCLASSIFIED"]]}
    },
    ("POST", "/v1/messages/{message_id}/dissemination-requests"): lambda call: {
        "json": {"recipient_country": "AL", "purpose": "a joint investigation"}
    },
    ("GET", "/v1/inbox"): lambda call: {"params": {"visibility_timeout": 0}},
    ("POST", "/v1/inbox/{message_id}/ack"): lambda call: {
        "json": {"receipt": call.world.receipts[call.message_id]}
    },
    ("PUT", "/v1/inbox/push-endpoint"): lambda call: {"json": {"url": None}},
    ("POST", "/v1/keys"): lambda call: {"json": {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "not-a-key"}}},
    ("POST", "/v1/cp/messages/{message_id}/decisions"): _assign_self,
    ("POST", "/v1/cp/provisions"): _provision,
    # A message nobody has: who may post decisions is the row's question (each decision's own checks are
    # those of the single-decision row, and tests/contact_points/test_review_bulk_decisions.py).
    ("POST", "/v1/cp/decisions"): lambda call: {
        "json": {"decisions": [{"message_id": str(uuid.uuid4()), "decision": {"action": "approve"}}]}
    },
    ("POST", "/v1/cp/deliveries/{message_id}/reroute"): lambda call: {"json": {"channel": "pull"}},
    ("POST", "/ui/deliveries/{message_id}/reroute"): lambda call: {"data": {"channel": "pull"}},
    ("POST", "/ui/messages/{message_id}/decide"): _ui_assign_self,
    ("POST", "/ui/provide"): _ui_provision,
    ("GET", "/v1/audit/proofs/consistency"): lambda call: {
        "params": {"first": 1, "second": call.world.tree_size}
    },
    ("GET", "/v1/witness/consistency"): lambda call: {"params": {"old": 1, "new": call.world.tree_size}},
    ("GET", "/v1/audit/export"): lambda call: {"params": {"message": call.world.outbound["UNCLASSIFIED"]}},
    ("POST", "/v1/admin/keys/{kid}/revoke"): lambda call: {"json": {"reason": "access matrix"}},
    ("GET", "/v1/stats/art18"): lambda call: {"params": {"year": "2026", "contact_point": "HR"}},
    ("GET", "/v1/stats/aggregate"): lambda call: {"params": {"year": "2026"}},
    ("GET", "/ui/dashboard"): lambda call: {"params": {"year": "2026", "contact_point": "HR-SPOC"}},
    ("POST", "/v1/region/directory"): lambda call: {"json": {}},
    ("POST", "/v1/retention/{conversation_id}/hold"): _hold,
    ("POST", "/v1/retention/{conversation_id}/hold/release"): _hold_then_release,
    ("POST", "/v1/retention/{conversation_id}/review"): lambda call: {"json": {"decision": "keep"}},
    ("POST", "/ui/retention/{conversation_id}/hold"): lambda call: {"data": {"reason": "access matrix"}},
    ("POST", "/ui/retention/{conversation_id}/release"): _hold_then_release,
    ("POST", "/ui/retention/{conversation_id}/review"): lambda call: {"data": {"decision": "keep"}},
    ("POST", "/v1/hop/reconcile"): lambda call: {"json": {"peer": "xk"}},
    ("POST", "/ui/admin/users"): lambda call: {
        "data": {
            "username": f"matrix-{uuid.uuid4().hex[:10]}",
            "role": "auditor",
            "country": "AL",  # a national auditor (regional is an explicit choice)
            "clearance": "UNCLASSIFIED",
        }
    },
}


# --- the checks ------------------------------------------------------------------------------------------


def test_every_route_is_in_the_matrix(app: FastAPI) -> None:
    """A new route must get a row (and its expectations) here; a row must name a route that exists."""
    routes: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        assert route.path is not None
        methods = set(route.methods or {"GET"})  # a mount (static files) answers GET
        if "GET" in methods:
            methods.discard("HEAD")
        routes |= {(m, route.path) for m in methods}
    table = {(row.method, row.path) for row in ROWS}
    assert len(table) == len(ROWS), "a route has two rows"
    assert all(("{message_id}" in r.path) == (r.target is not None) for r in ROWS), (
        "a TARGETS entry is missing"
    )
    assert routes - table == set(), "routes without a row in the access matrix"
    assert table - routes == set(), "rows for routes the app does not have"
    assert set(app.openapi()["paths"]) <= {p for _, p in table}


@pytest.mark.parametrize(("row", "role", "classification"), list(_cells()))
def test_access_matrix(world: World, row: Row, role: str, classification: str) -> None:
    call = Call(world, row, role, classification)
    response = call.send()
    want = expected(row, role, classification)
    assert response.status_code in want, (response.status_code, sorted(want), response.text[:300])
    if response.status_code == 303 and role in (ANON, AGENCY_ROLE) and row.path.startswith("/ui/"):
        location = response.headers["location"]
        assert location in ("/ui/login", "/ui/queue") or location.startswith("/ui/login?next=%2Fui%2F"), (
            location
        )
    if response.status_code >= 400 and not row.path.startswith("/ui/"):
        assert response.headers["content-type"].startswith("application/problem+json")
    if row.target is not None:
        _content_only_where_cleared(call, response)


def _content_only_where_cleared(call: Call, response: httpx.Response) -> None:
    """The payload is shown only to an officer cleared for it: on the content route and the message page;
    nowhere else (metadata, audit, deliveries, agencies' routes carry the ciphertext at most)."""
    marker = call.world.markers[call.message_id]
    cleared_officer = is_cleared(call.role, call.classification)
    if call.row.path == "/v1/cp/messages/{message_id}/content" and response.status_code == 200:
        body = response.json()
        assert body["readable"] is cleared_officer
        shown = base64.b64decode(body["payload_b64"]).decode() if body["payload_b64"] else ""
        assert (marker in shown) is cleared_officer
        if not cleared_officer:
            assert call.classification in body["notice"]
    elif call.row.path == "/ui/messages/{message_id}" and response.status_code == 200:
        assert (marker in response.text) is cleared_officer
    else:
        assert marker not in response.text
