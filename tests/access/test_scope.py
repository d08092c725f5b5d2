"""Scope (DESIGN §5) at every classification: who is the right role but the wrong party is refused, with 404
so that nothing says the message exists. Cross-country and cross-agency reads, an officer acting on another
contact point's queue, a national auditor reading another country's exchange. Then what the allowed see:
an officer not cleared gets metadata and no content, auditors never content, agencies only up to their
accreditation.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.access.world import CLASSIFICATIONS, World
from tests.factories import agency_client

OUT, RETURNED, INBOUND = "outbound", "returned", "inbound"
OTHER_CPS = (
    "al-supervisor",  # another country, cleared SECRET: clearance is not what refuses it
    "si-supervisor",  # HR's outbound: the destination, but HR has not forwarded it, so SI does not know of it;
)  # SI→HR inbound: its deliveries are HR's to handle
OTHER_AGENCIES = ("HR-POL", "AL-PRO", "SI-DT")  # same country; another country; the addressee, undelivered
UNDELIVERED = ("SI-DT",)  # HR's outbound is addressed to SI-DT, but SI-DT has not received it
NOT_ADDRESSED = ("HR-POL", "AL-PRO")  # HR-DORH's delivered inbound message: another agency of HR, of AL
OTHER_AUDITOR = ("al-auditor",)  # a national auditor of a country the exchange does not touch

# fmt: off
#   method  path                                                       target    who (each is refused with 404)
SCOPE_TABLE: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("GET",  "/v1/cp/messages/{message_id}",                            OUT,      OTHER_CPS),
    ("GET",  "/v1/cp/messages/{message_id}/content",                    OUT,      OTHER_CPS),
    ("GET",  "/v1/cp/messages/{message_id}/links",                      OUT,      OTHER_CPS),
    ("POST", "/v1/cp/messages/{message_id}/conditions/acknowledgement", OUT,      OTHER_CPS),
    ("POST", "/v1/cp/messages/{message_id}/decisions",                  OUT,      OTHER_CPS),
    ("GET",  "/ui/messages/{message_id}",                               OUT,      OTHER_CPS),
    ("POST", "/ui/messages/{message_id}/decide",                        OUT,      OTHER_CPS),
    ("POST", "/ui/messages/{message_id}/acknowledge",                   OUT,      OTHER_CPS),
    ("GET",  "/v1/cp/messages/{message_id}",                            INBOUND,  ("al-supervisor",)),
    ("POST", "/v1/cp/messages/{message_id}/decisions",                  INBOUND,  ("al-supervisor",)),
    ("POST", "/v1/cp/deliveries/{message_id}/retry",                    INBOUND,  OTHER_CPS),  # HR delivers it
    ("POST", "/v1/cp/deliveries/{message_id}/reroute",                  INBOUND,  OTHER_CPS),
    ("GET",  "/v1/messages/{message_id}",                               OUT,      OTHER_AGENCIES),
    ("POST", "/v1/messages/{message_id}/resubmissions",                 RETURNED, OTHER_AGENCIES),
    ("GET",  "/v1/messages/{message_id}",                               INBOUND,  NOT_ADDRESSED),
    ("GET",  "/v1/messages/{message_id}/dissemination-requests",        OUT,      UNDELIVERED),
    ("POST", "/v1/messages/{message_id}/dissemination-requests",        OUT,      UNDELIVERED),
    ("GET",  "/v1/messages/{message_id}/dissemination-requests",        INBOUND,  NOT_ADDRESSED),
    ("POST", "/v1/messages/{message_id}/dissemination-requests",        INBOUND,  NOT_ADDRESSED),
    ("POST", "/v1/inbox/{message_id}/ack",                              INBOUND,  NOT_ADDRESSED),
    ("GET",  "/v1/audit/entries/{entry_id}",                            OUT,      OTHER_AUDITOR),
    ("GET",  "/v1/audit/entries/{entry_id}/proof",                      OUT,      OTHER_AUDITOR),
    ("GET",  "/v1/audit/messages/{message_id}/timeline",                OUT,      OTHER_AUDITOR),
    ("GET",  "/ui/audit/messages/{message_id}",                         OUT,      OTHER_AUDITOR),
]
# fmt: on


def _send(world: World, who: str, method: str, path: str, target: str, classification: str) -> httpx.Response:
    message_id = {OUT: world.outbound, RETURNED: world.returned, INBOUND: world.inbound}[target][
        classification
    ]
    url = path.format(message_id=message_id, entry_id=world.entries[classification])
    auth: httpx.Auth | None = None
    headers: dict[str, str] = {}
    csrf = ""
    if who.isupper():
        auth = world.agency_auth(who)
    else:
        login = world.as_user(who)
        headers["Authorization"] = f"Bearer {login.token}"
        csrf = login.csrf
    kwargs: dict[str, Any] = {}
    if path.startswith("/ui/") and method == "POST":
        kwargs["data"] = {"csrf": csrf, "action": "assign", "assign_to": who}
    elif path.endswith("/decisions"):
        kwargs["json"] = {"action": "assign", "assign_to": who}
    elif path.endswith("/dissemination-requests") and method == "POST":
        kwargs["json"] = {"recipient_country": "AL", "purpose": "a joint investigation"}
    elif path.endswith("/ack"):
        kwargs["json"] = {"receipt": world.receipts[message_id]}
    elif path.endswith("/reroute"):
        kwargs["json"] = {"channel": "pull"}
    elif path.endswith("/resubmissions"):
        kwargs["json"] = world.resubmissions[classification]
    with world.http() as http:
        return http.request(method, url, headers=headers, auth=auth, **kwargs)


SCOPE = [(who, method, path, target) for method, path, target, whos in SCOPE_TABLE for who in whos]


@pytest.mark.parametrize("classification", CLASSIFICATIONS)
@pytest.mark.parametrize(("who", "method", "path", "target"), SCOPE, ids=[" ".join(r) for r in SCOPE])
def test_out_of_scope_is_not_found(
    world: World, who: str, method: str, path: str, target: str, classification: str
) -> None:
    response = _send(world, who, method, path, target, classification)
    assert response.status_code == 404, response.text[:300]
    if not path.startswith("/ui/"):
        assert response.headers["content-type"].startswith("application/problem+json")
    message_id = {OUT: world.outbound, RETURNED: world.returned, INBOUND: world.inbound}[target][
        classification
    ]
    assert world.markers[message_id] not in response.text


@pytest.mark.parametrize("classification", CLASSIFICATIONS)
def test_another_contact_points_officer_cannot_act_on_the_queue(world: World, classification: str) -> None:
    """Neither queue of AL or SI holds HR's outbound message, and their attempts changed nothing."""
    message_id = world.outbound[classification]
    for who in OTHER_CPS:
        headers = {"Authorization": f"Bearer {world.as_user(who).token}"}
        for direction in ("outbound", "inbound"):
            listed = world.client.get(f"/v1/cp/queues/{direction}", params={"status": "all"}, headers=headers)
            assert listed.status_code == 200
            assert message_id not in {m["message_id"] for m in listed.json()}
        _send(world, who, "POST", "/v1/cp/messages/{message_id}/decisions", OUT, classification)
    own = {"Authorization": f"Bearer {world.as_user('hr-supervisor').token}"}
    listed = world.client.get("/v1/cp/queues/outbound", params={"status": "all", "limit": 500}, headers=own)
    assert message_id in {m["message_id"] for m in listed.json()}  # the positive control
    detail = world.client.get(f"/v1/cp/messages/{message_id}", headers=own).json()
    assert detail["state"] == "origin_review"
    assert not {step["party"] for step in detail["custody"]} & {"AL-SPOC", "SI-SPOC"}
    assert not {step["actor"] for step in detail["custody"]} & set(OTHER_CPS)


@pytest.mark.parametrize("agency", ["HR-POL", "AL-PRO"])
def test_another_agencys_inbox_does_not_hold_the_message(world: World, agency: str) -> None:
    with world.http() as http:
        listed = http.get(
            "/v1/inbox", params={"visibility_timeout": 0, "limit": 500}, auth=world.agency_auth(agency)
        )
    assert listed.status_code == 200
    assert not set(world.inbound.values()) & {i["message_id"] for i in listed.json()}


def test_an_al_officer_cannot_read_an_rs_mk_message(world: World) -> None:
    message_id, marker = world.rs_mk, world.markers[world.rs_mk]
    for who in ("al-officer", "al-supervisor"):
        headers = {"Authorization": f"Bearer {world.as_user(who).token}"}
        for path in (f"/v1/cp/messages/{message_id}", f"/v1/cp/messages/{message_id}/content"):
            response = world.client.get(path, headers=headers)
            assert response.status_code == 404
            assert marker not in response.text
    with world.http() as http:
        refused = http.get(f"/v1/messages/{message_id}", auth=world.agency_auth("AL-ASP"))
    assert refused.status_code == 404
    national = {"Authorization": f"Bearer {world.as_user('al-auditor').token}"}
    assert world.client.get(f"/v1/audit/messages/{message_id}/timeline", headers=national).status_code == 404
    for who in ("rs-officer", "mk-officer"):  # the positive control: both contact points on the route read it
        headers = {"Authorization": f"Bearer {world.as_user(who).token}"}
        content = world.client.get(f"/v1/cp/messages/{message_id}/content", headers=headers).json()
        assert marker in base64.b64decode(content["payload_b64"]).decode()


@pytest.mark.parametrize("classification", CLASSIFICATIONS)
def test_an_uncleared_officer_gets_metadata_and_no_content(world: World, classification: str) -> None:
    """hr-officer is cleared RESTRICTED: above it, the header and custody but no payload and no decision."""
    message_id = world.outbound[classification]
    headers = {"Authorization": f"Bearer {world.as_user('hr-officer').token}"}
    detail = world.client.get(f"/v1/cp/messages/{message_id}", headers=headers).json()
    content = world.client.get(f"/v1/cp/messages/{message_id}/content", headers=headers).json()
    assert detail["classification"] == classification
    assert detail["state"] == "origin_review"
    cleared = classification in ("UNCLASSIFIED", "RESTRICTED")
    assert content["readable"] is cleared
    assert (content["payload_b64"] is not None) is cleared
    assert bool(detail["allowed_actions"]) is cleared
    assert world.markers[message_id] not in str(detail)


@pytest.mark.parametrize("username", ["hr-auditor", "regional-auditor", "admin"])
def test_auditors_never_get_content(world: World, username: str) -> None:
    """Entries, timelines and the offline bundle of every classification: metadata, never the payload."""
    headers = {"Authorization": f"Bearer {world.as_user(username).token}"}
    bodies = []
    for message_id in (*world.outbound.values(), *world.inbound.values()):
        timeline = world.client.get(f"/v1/audit/messages/{message_id}/timeline", headers=headers)
        assert timeline.status_code == 200
        assert timeline.json()["entries"]
        bodies.append(timeline.text)
        bodies.append(world.client.get(f"/ui/audit/messages/{message_id}", headers=headers).text)
    exported = world.client.get("/v1/audit/export", params={"country": "SI"}, headers=headers)
    assert exported.status_code == 200
    bodies.append(exported.text)
    for marker in world.markers.values():
        assert all(marker not in body for body in bodies)


@pytest.mark.parametrize("classification", CLASSIFICATIONS)
def test_an_agency_sends_only_up_to_its_accreditation(world: World, classification: str) -> None:
    """HR-CUS (customs) is accredited RESTRICTED; HR-DORH, the matrix's agency, SECRET."""
    customs = agency_client(world.region, "HR-CUS", world.client)
    envelope = customs.build(
        payload=b'{"q": 1}',
        destination_country="SI",
        category="drug-trafficking",
        classification=classification,
    )
    with world.http() as http:
        response = http.post(
            "/v1/messages",
            json=envelope,
            headers={"Idempotency-Key": envelope["header"]["message_id"]},
            auth=world.agency_auth("HR-CUS"),
        )
    if classification in ("UNCLASSIFIED", "RESTRICTED"):
        assert response.status_code == 202, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["reason"] == "accreditation"
