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

REQUESTER = "XK-KP"
TARGETS = [("AL", "AL-ASP"), ("MK", "MK-MOI"), ("BA", "BA-SIPA")]
CASE = {
    "operation": "demo: smuggling network on the Western Balkans route",
    "question": "Criminal records, border crossings and vehicle registrations of the persons below.",
    "persons": [{"alias": "subject-1", "born": "1987"}, {"alias": "subject-2", "born": "1992"}],
    "vehicles": ["demo plate 01-XYZ-23"],
}


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
            payload=json.dumps(CASE).encode(),
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
