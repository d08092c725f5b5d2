"""``spoc demo``: a regional operation against migrant smuggling, end to end through the HTTP API.

Modelled on the joint operations of the region's police forces against smuggling networks on the
Western Balkans route: Kosovo Police (XK-KP) ask Albania, North Macedonia and Bosnia and Herzegovina
for what they hold on a network's members and vehicles. Bosnia and Herzegovina has no agreement with
Kosovo* in the demo region, so that request is refused at intake with the reason. The other two are
reviewed by the Kosovo contact point, forwarded, accepted and routed by the receiving contact points to
their police, answered, and the answers flow back the same way. The run ends by verifying the audit log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.client.agency import AgencyClient, ClientError
from broker.client.credentials import AgencyCredentials
from broker.client.officer import OfficerClient
from broker.config import Settings
from schemas.content import Content

REQUESTER = "XK-KP"
TARGETS = [("AL", "AL-ASP"), ("MK", "MK-MOI"), ("BA", "BA-SIPA")]


def case_content() -> Content:
    """What XK-KP asks about, as structured content (``schemas.content``): the network's members and vehicle,
    so that the receiving contact points see labelled fields and cross-check them."""
    return Content.model_validate(
        {
            "format": "spoc-content/1",
            "text": "Demo: smuggling network on the Western Balkans route. Criminal records, border crossings "
            "and vehicle registrations of the persons below.",
            "persons": [
                {
                    "given_name": "Arben",
                    "family_name": "Demo-Krasniqi",
                    "year_of_birth": 1987,
                    "role": "suspect",
                },
                {
                    "given_name": "Марко",
                    "family_name": "Демо-Петровић",
                    "year_of_birth": 1992,
                    "role": "suspect",
                },
            ],
            "vehicles": [
                {"registration_number": "01-XYZ-23", "registration_country": "XK", "make": "Mercedes"}
            ],
            "phone_numbers": [{"number": "+383 44 000 123"}],
            "case_references": [{"reference": "XK-KP/DEMO/2026/001", "issued_by": "XK-KP"}],
        }
    )


@dataclass
class Row:
    country: str
    agency: str
    outcome: str
    detail: str


def _wait(what: str, probe: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}")


def _awaiting(officer: OfficerClient, message_id: str, state: str) -> bool:
    """The message has reached ``officer``'s contact point in ``state`` (looked up by id: queues page)."""
    found = officer.message(message_id)
    return found is not None and found["state"] == state


def _in_inbox(agency: AgencyClient, message_id: str) -> dict[str, Any] | None:
    return next((i for i in agency.inbox_all() if i["message_id"] == message_id), None)


def run_scenario(url: str, data_dir: Path, say: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    with contextlib.ExitStack() as clients:
        return _scenario(url, data_dir, say, clients)


def _scenario(
    url: str, data_dir: Path, say: Callable[[str], None], clients: contextlib.ExitStack
) -> tuple[list[Row], dict[str, Any]]:
    accounts = json.loads((data_dir / "demo-accounts.json").read_text())

    def officer(name: str) -> OfficerClient:
        return clients.enter_context(OfficerClient(url, name, accounts[name]["password"]))

    def agency(agency_id: str) -> AgencyClient:
        creds = AgencyCredentials.load(data_dir / "agencies" / f"{agency_id}.json")
        return clients.enter_context(AgencyClient(url, creds))

    rows: list[Row] = []
    requester = agency(REQUESTER)
    sent: dict[str, tuple[str, str]] = {}
    for country, target in TARGETS:
        envelope = requester.build(
            payload=case_content(),
            destination_country=country,
            category="migrant-smuggling",
            classification="RESTRICTED",
            handling_codes=("H0", "H2"),
        )
        try:
            receipt = requester.submit(envelope)
        except ClientError as exc:
            say(f"  {REQUESTER} → {country}: refused ({exc.status}) {exc.problem.get('detail')}")
            rows.append(Row(country, target, "refused at intake", str(exc.problem.get("detail"))))
            continue
        sent[receipt["message_id"]] = (country, target)
        say(f"  {REQUESTER} → {country}: accepted, deadline {receipt['deadline_at']}")

    xk = officer("xk-officer")
    for message_id in sent:
        xk.decide(message_id, "approve")
    say("  XK contact point approved and forwarded the requests")

    answer_ids: list[str] = []
    for message_id, (country, target) in sent.items():
        cp = officer(f"{country.lower()}-officer")
        _wait(
            f"{country} inbound queue",
            functools.partial(_awaiting, cp, message_id, "destination_review"),
        )
        cp.decide(message_id, "accept")
        cp.decide(message_id, "route", route_to_agency=target)
        say(f"  {country} contact point accepted and routed to {target}")
        responder = agency(target)
        item = _wait(f"delivery to {target}", functools.partial(_in_inbox, responder, message_id))
        opened = responder.open(item)
        responder.ack(opened)
        answer = responder.reply(
            opened, payload=json.dumps({"records": 2, "crossings": 5, "summary": f"{target} answer"}).encode()
        )
        responder.submit(answer)
        cp.decide(answer["header"]["message_id"], "approve")
        answer_ids.append(answer["header"]["message_id"])
        say(f"  {target} answered; {country} contact point approved the answer")

    answers: dict[str, str] = {}
    expected = len(sent)

    for answer_id in answer_ids:
        _wait(
            "the answers in the XK inbound queue",
            functools.partial(_awaiting, xk, answer_id, "destination_review"),
        )
        xk.decide(answer_id, "route", route_to_agency=REQUESTER)

    def answers_delivered() -> list[dict[str, Any]] | None:
        found = [i for i in requester.inbox_all() if i["envelope"]["header"].get("in_reply_to") in sent]
        return found if len(found) >= expected else None

    for item in _wait("answers delivered to XK-KP", answers_delivered):
        opened = requester.open(item)
        requester.ack(opened)
        body = json.loads(opened.plaintext)
        answers[str(opened.header.in_reply_to)] = f"{opened.header.sender_agency}: {body['summary']}"
    for message_id, (country, target) in sent.items():
        status = requester.status(message_id)
        rows.append(Row(country, target, status["state"], answers.get(message_id, "no answer")))
    auditor = officer("regional-auditor")
    report = auditor.verify_audit()
    return rows, report


def table(rows: list[Row]) -> str:
    header = ("Country", "Agency", "Outcome", "Detail")
    data = [header, *[(r.country, r.agency, r.outcome, r.detail) for r in rows]]
    widths = [max(len(str(line[i])) for line in data) for i in range(4)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)) for line in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- work left waiting in the queues (``spoc run`` on a fresh data folder) -----------------------------

NEAR_DEADLINE_HOURS = 7  # of an urgent request's 8 hours: past the 75 % warning


def _case(question: str) -> bytes:
    return json.dumps({"operation": "demo: pending work", "question": question}).encode()


def leave_pending_work(url: str, data_dir: Path, *, settings: Settings | None = None) -> dict[str, str]:
    """Leave realistic work waiting in the demo region, as real traffic makes it: envelopes built, signed
    and sealed by the seeded agencies' own credentials, submitted and decided over the HTTP API.

    For the Albanian contact point (``al-officer``, ``al-officer2``, ``al-supervisor``): outbound, awaiting
    review, an urgent request; a CONFIDENTIAL one approved once, awaiting the second officer (four eyes);
    an H3 one; one returned to its sender for clarification; one past 75 % of its deadline (its clock is
    moved back, the one step that is not an API call: nothing can make time pass faster). Inbound,
    awaiting the destination: requests from Kosovo* and Montenegro. And a dead letter: a request routed to
    AL-CUS, whose push endpoint's name no longer resolves. Returns a name → message id map.
    """
    with contextlib.ExitStack() as clients:
        return _pending(url, data_dir, clients, settings)


def _pending(
    url: str, data_dir: Path, clients: contextlib.ExitStack, settings: Settings | None
) -> dict[str, str]:
    accounts = json.loads((data_dir / "demo-accounts.json").read_text())

    def officer(name: str) -> OfficerClient:
        return clients.enter_context(OfficerClient(url, name, accounts[name]["password"]))

    def agency(agency_id: str) -> AgencyClient:
        creds = AgencyCredentials.load(data_dir / "agencies" / f"{agency_id}.json")
        return clients.enter_context(AgencyClient(url, creds))

    def send(sender: str, country: str, question: str, **header: Any) -> str:
        client = agency(sender)
        envelope = client.build(payload=_case(question), destination_country=country, **header)
        message_id: str = client.submit(envelope)["message_id"]
        return message_id

    urgent = {
        "level": "urgent",
        "urgency_reason": "threat-to-life-or-physical-integrity",
        "urgency_explanation": "A witness in the case has been threatened; the suspect may be armed.",
        "information_access": "direct",
    }
    made: dict[str, str] = {}
    made["urgent"] = send(
        "AL-ASP", "MK", "Whereabouts of a suspect seen near the border.", category="murder", priority=urgent
    )
    made["four_eyes"] = send(
        "AL-ASP",
        "ME",
        "Bank accounts linked to the network.",
        category="money-laundering",
        classification="CONFIDENTIAL",
    )
    officer("al-officer2").decide(made["four_eyes"], "approve")  # the first of two officers
    made["h3"] = send(
        "AL-BMP",
        "HR",
        "Entries of the listed vehicles; not for use as evidence.",
        category="migrant-smuggling",
        handling_codes=("H0", "H3"),
    )
    made["returned"] = send("AL-ASP", "SI", "Records of the person below.", category="drug-trafficking")
    officer("al-officer").decide(
        made["returned"], "return", reason="Please add the person's date of birth and the case reference."
    )
    made["near_deadline"] = send(
        "AL-ASP", "HR", "Phone subscriber behind the number below.", category="kidnapping", priority=urgent
    )
    for sender, country, cp in (("XK-KP", "AL", "xk-officer"), ("ME-UP", "AL", "me-officer")):
        message_id = send(
            sender, country, "Criminal record of the person below.", category="migrant-smuggling"
        )
        officer(cp).decide(message_id, "approve")
        made[f"inbound_{sender}"] = message_id
    agency("AL-CUS").set_push_endpoint("https://push.al-customs.invalid/spoc")  # a name that will not resolve
    made["dead_letter"] = send(
        "MK-MOI",
        "AL",
        "Customs declarations of the lorry below.",
        category="vehicle-crime",
        destination_agency="AL-CUS",
    )
    officer("mk-officer").decide(made["dead_letter"], "approve")

    al = officer("al-officer")
    for name in ("inbound_XK-KP", "inbound_ME-UP", "dead_letter"):
        _wait(
            f"{name} in the AL inbound queue",
            functools.partial(_awaiting, al, made[name], "destination_review"),
        )
    al.decide(made["dead_letter"], "accept")
    al.decide(made["dead_letter"], "route", route_to_agency="AL-CUS")
    _wait(
        "the dead letter",
        lambda: any(
            d["message_id"] == made["dead_letter"] for d in al._call("GET", "/v1/cp/deliveries?status=dead")
        ),
    )
    if settings is not None:
        _move_clock_back(settings, made["near_deadline"], hours=NEAR_DEADLINE_HOURS)
    return made


def _move_clock_back(settings: Settings, message_id: str, *, hours: int) -> None:
    """As if ``message_id`` had been submitted ``hours`` ago: its clock, deadline and warning move back."""
    from datetime import timedelta

    from broker.db import make_engine, make_sessionmaker, unit_of_work
    from broker.messages.models import Message

    engine = make_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            message = session.get(Message, message_id)
            if message is None:
                return
            back = timedelta(hours=hours)
            for name in ("received_at", "clock_started_at", "deadline_at", "deadline_warn_at"):
                value = getattr(message, name)
                if value is not None:
                    setattr(message, name, value - back)
    finally:
        engine.dispose()
