"""``spoc demo``: a regional operation against migrant smuggling, end to end through the HTTP API.

Modelled on the joint operations of the region's police forces against smuggling networks on the
Western Balkans route: Kosovo Police (XK-KP) ask Albania, North Macedonia and Bosnia and Herzegovina
for what they hold on a network's members and vehicles. Bosnia and Herzegovina has no agreement with
Kosovo* in the demo region, so that request is refused at intake with the reason. The other two are
reviewed by the Kosovo contact point, forwarded, accepted and routed by the receiving contact points to
their police, answered, and the answers flow back the same way. The run ends by verifying the audit log.

In a region of separate nodes (``spoc demo`` by default, ``broker.localregion``) each country's contact point
is its own node: every forward and every answer crosses a signed hop between two nodes, the BA refusal comes
from the agreements of the signed regional directory, and the audit log of every node is verified, each
checkpoint against the log key the directory lists for its node. ``--hub`` runs the same story on one
deployment hosting every contact point.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from broker.client.agency import AgencyClient, ClientError
from broker.client.credentials import AgencyCredentials
from broker.client.officer import OfficerClient
from broker.config import Settings
from broker.crypto import NoteKey, open_note
from broker.errors import VerificationError
from schemas.content import Content
from schemas.region import RegionDirectory, SignedDirectory

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


def _wait(what: str, probe: Callable[[], Any], *, timeout: float = 120.0) -> Any:
    """Poll ``probe`` until it answers. The default is long on purpose: on a loaded machine a step can wait
    for an outbox row to be handed over again (``outbox_redispatch_seconds``, 30 s by default) and still be
    on time; a demo that gives up first would report a fault the system does not have."""
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


def run_scenario(
    urls: Mapping[str, str], folders: Mapping[str, Path], say: Callable[[str], None]
) -> tuple[list[Row], dict[str, Any]]:
    """The scenario over the nodes serving each country: ``urls[cc]`` is the node of ``cc``'s contact point
    and ``folders[cc]`` its data folder (its agencies' credentials, its demo accounts). On the hub every
    country maps to the one deployment; in a region each to its own node, and every forward crosses a hop."""
    with contextlib.ExitStack() as clients:
        return _scenario(urls, folders, say, clients)


def hub(url: str, data_dir: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """The maps of one deployment that hosts every contact point."""
    countries = [REQUESTER[:2], *(c for c, _ in TARGETS)]
    return dict.fromkeys(countries, url), dict.fromkeys(countries, data_dir)


def _scenario(
    urls: Mapping[str, str],
    folders: Mapping[str, Path],
    say: Callable[[str], None],
    clients: contextlib.ExitStack,
) -> tuple[list[Row], dict[str, Any]]:
    def officer(name: str, country: str) -> OfficerClient:
        accounts = json.loads((folders[country] / "demo-accounts.json").read_text())
        return clients.enter_context(OfficerClient(urls[country], name, accounts[name]["password"]))

    def agency(agency_id: str) -> AgencyClient:
        country = agency_id[:2]
        creds = AgencyCredentials.load(folders[country] / "agencies" / f"{agency_id}.json")
        return clients.enter_context(AgencyClient(urls[country], creds))

    home = REQUESTER[:2]
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

    xk = officer("xk-officer", home)
    for message_id in sent:
        xk.decide(message_id, "approve")
    say(f"  {home} contact point approved and forwarded the requests")

    answer_ids: list[str] = []
    for message_id, (country, target) in sent.items():
        cp = officer(f"{country.lower()}-officer", country)
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
            f"the answers in the {home} inbound queue",
            functools.partial(_awaiting, xk, answer_id, "destination_review"),
        )
        xk.decide(answer_id, "route", route_to_agency=REQUESTER)

    def answers_delivered() -> list[dict[str, Any]] | None:
        found = [i for i in requester.inbox_all() if i["envelope"]["header"].get("in_reply_to") in sent]
        return found if len(found) >= expected else None

    for item in _wait(f"answers delivered to {REQUESTER}", answers_delivered):
        opened = requester.open(item)
        requester.ack(opened)
        body = json.loads(opened.plaintext)
        answers[str(opened.header.in_reply_to)] = f"{opened.header.sender_agency}: {body['summary']}"
    for message_id, (country, target) in sent.items():
        status = requester.status(message_id)
        rows.append(Row(country, target, status["state"], answers.get(message_id, "no answer")))
    return rows, verify_nodes(urls, folders, say)


def verify_nodes(
    urls: Mapping[str, str],
    folders: Mapping[str, Path],
    say: Callable[[str], None],
    *,
    cosign_timeout: float = 180.0,
) -> dict[str, Any]:
    """Verify every node's audit log, as its regional auditor, and its peers' witness cosignatures.

    On each node: the whole log recomputed (``POST /v1/audit/verify``, what ``spoc audit verify`` does on the
    node) and a checkpoint signed now. Then, once the nodes' witness beat has sent those checkpoints to the
    other nodes (C2SP tlog-witness, ``broker.witness.submit``), each checkpoint's note is checked against the
    node's log key *as the regional directory lists it* — so a node cannot pass off a log signed by a key the
    region does not know — and must carry a verified cosignature from every other node's witness key: each
    country vouches that it saw that tree and that it extends every tree it saw before.

    The nodes' witnesses work in parallel, so ``cosign_timeout`` is one deadline for all the nodes' checkpoints,
    not a wait per node: a node checked last gets what the first ones left (on a loaded machine a witness beat
    can come late, and four waits of their own would each have had to cover it)."""
    by_url: dict[str, str] = {}
    for country, url in urls.items():
        by_url.setdefault(url, country)
    reports = []
    deadline = time.monotonic() + cosign_timeout
    with contextlib.ExitStack() as clients:
        signed: list[tuple[str, str, OfficerClient, dict[str, Any], dict[str, Any]]] = []
        for url, country in by_url.items():
            accounts = json.loads((folders[country] / "demo-accounts.json").read_text())
            auditor = clients.enter_context(
                OfficerClient(url, "regional-auditor", accounts["regional-auditor"]["password"])
            )
            report = auditor.verify_audit()
            checkpoint = auditor._call("POST", "/v1/audit/checkpoints")
            signed.append((url, country, auditor, report, checkpoint))
        for url, country, auditor, report, checkpoint in signed:
            directory = _directory(url)
            if directory is not None:
                others = sorted(
                    n.node_id for n in directory.nodes if str(n.base_url).rstrip("/") != url.rstrip("/")
                )

                def cosigned(
                    auditor: OfficerClient = auditor,
                    checkpoint: dict[str, Any] = checkpoint,
                    directory: RegionDirectory = directory,
                    url: str = url,
                    others: list[str] = others,
                ) -> list[str] | None:
                    # The witnesses cosign the node's newest checkpoint; one at least as large as ours vouches for
                    # ours too (each witness checked that it extends every tree it cosigned before).
                    for later in auditor._call("GET", "/v1/audit/checkpoints?limit=5")["checkpoints"]:
                        if later["size"] >= checkpoint["size"]:
                            found = verify_peer_cosignatures(directory, url, later["note"])
                            if found == others:
                                return found
                    return None

                try:
                    cosigners = _wait(f"every peer's cosignature on {country}'s checkpoint", cosigned,
                                      timeout=max(1.0, deadline - time.monotonic()))  # fmt: skip
                except TimeoutError:
                    newest = auditor._call("GET", "/v1/audit/checkpoints?limit=1")["checkpoints"][0]
                    missing = sorted(
                        set(others) - set(verify_peer_cosignatures(directory, url, newest["note"]))
                    )
                    report["ok"] = False
                    report["summary"] += (
                        f"; checkpoint {checkpoint['size']} NOT cosigned by {', '.join(missing)}"
                    )
                else:
                    report["summary"] += (
                        f"; checkpoint {checkpoint['size']} (or a later one) signed by its listed log key and "
                        f"cosigned by every other node ({', '.join(cosigners)})"
                    )
            where = f"{country} node" if len(by_url) > 1 else "the hub"
            say(f"  {where}: {report['summary']}")
            reports.append(report)
    ok = all(r["ok"] for r in reports)
    if len(reports) == 1:
        summary = str(reports[0]["summary"])
    elif ok:
        summary = (
            f"audit log verified: every node ({', '.join(by_url.values())}), each against its listed log key "
            "and cosigned by every other node"
        )
    else:
        failed = [c for c, r in zip(by_url.values(), reports, strict=True) if not r["ok"]]
        summary = f"audit log verification FAILED on {', '.join(failed)}"
    return {**(reports[0] if len(reports) == 1 else {}), "ok": ok, "summary": summary, "nodes": reports}


def _directory(url: str) -> RegionDirectory | None:
    """The regional directory a node serves (None on a hub without one)."""
    answer = httpx.get(f"{url}/v1/region/directory", timeout=10)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return SignedDirectory.model_validate(answer.json()).directory


def verify_peer_cosignatures(directory: RegionDirectory, url: str, note: str) -> list[str]:
    """Check the node's checkpoint ``note``: its log signature under the ``log_key`` the directory lists
    for the node at ``url`` (VerificationError otherwise), and every cosignature made by another node's
    ``witness_key``; returns the ids of the peers whose cosignature verified.

    A cosignature line under a peer's key name that does not verify fails the whole note (VerificationError):
    a forged cosignature is never just "missing"."""
    me = next(n for n in directory.nodes if str(n.base_url).rstrip("/") == url.rstrip("/"))
    log_key = NoteKey.from_vkey(me.log_key)
    peers = {NoteKey.from_vkey(n.witness_key): n.node_id for n in directory.nodes if n.node_id != me.node_id}
    verified = open_note(note, verifiers=[log_key, *peers])
    if log_key not in verified.signers:
        raise VerificationError(f"{me.node_id}'s checkpoint is not signed by its listed log key")
    return sorted(peers[k] for k in verified.signers if k in peers)


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

    made = _al_outbound(send, officer, elsewhere=("MK", "ME", "HR", "SI", "HR"))
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


# --- work left waiting in a region of separate nodes (``spoc run`` on fresh folders) --------------------

ACROSS: tuple[tuple[str, str, str, str], ...] = (
    # (sender, destination country, category, question): approved by the sender's contact point, so each
    # crosses a hop and waits in the destination node's inbound review.
    ("XK-KP", "AL", "migrant-smuggling", "Criminal record of the person below."),
    ("MK-MOI", "AL", "drug-trafficking", "Vehicles registered to the company below."),
    ("MK-MOI", "XK", "migrant-smuggling", "Border crossings of the person below."),
    ("XK-KP", "MK", "migrant-smuggling", "Phone numbers linked to the network below."),
    ("AL-ASP", "BA", "drug-trafficking", "Bank accounts of the person below."),
)
WAITING: tuple[tuple[str, str, str, str], ...] = (
    # (sender, destination country, category, question): left in the sender's contact point's outbound review.
    ("XK-KP", "MK", "vehicle-crime", "Owner of the stolen vehicle below."),
    ("MK-BP", "AL", "migrant-smuggling", "Entries of the listed vehicles."),
    ("BA-SIPA", "AL", "drug-trafficking", "Criminal record of the person below."),
)


def leave_regional_work(
    urls: Mapping[str, str], folders: Mapping[str, Path], *, settings: Mapping[str, Settings] | None = None
) -> dict[str, str]:
    """Leave work waiting on every node of a region (XK, AL, MK, BA), made as real traffic makes it: the
    seeded agencies' envelopes submitted to their own node, decided there by its officers, and hopped to
    the destination's node by its worker. Returns a name → message id map.

    On AL's node, the kinds of ``leave_pending_work`` (urgent, four eyes, H3, returned, near its deadline,
    a dead letter) among the region's countries; inbound on AL, XK, MK and BA, each from another node;
    outbound awaiting review on XK, MK and BA. ``settings`` (by country) lets the one step that is not an API
    call, moving a clock back, reach AL's database."""
    with contextlib.ExitStack() as clients:
        return _regional(urls, folders, clients, settings or {})


def _regional(
    urls: Mapping[str, str],
    folders: Mapping[str, Path],
    clients: contextlib.ExitStack,
    settings: Mapping[str, Settings],
) -> dict[str, str]:
    def officer(name: str) -> OfficerClient:
        country = name[:2].upper()
        accounts = json.loads((folders[country] / "demo-accounts.json").read_text())
        return clients.enter_context(OfficerClient(urls[country], name, accounts[name]["password"]))

    def agency(agency_id: str) -> AgencyClient:
        country = agency_id[:2]
        creds = AgencyCredentials.load(folders[country] / "agencies" / f"{agency_id}.json")
        return clients.enter_context(AgencyClient(urls[country], creds))

    def send(sender: str, country: str, question: str, **header: Any) -> str:
        client = agency(sender)
        envelope = client.build(payload=_case(question), destination_country=country, **header)
        message_id: str = client.submit(envelope)["message_id"]
        return message_id

    made = _al_outbound(send, officer, elsewhere=("MK", "XK", "MK", "XK", "MK"))
    for sender, country, category, question in WAITING:
        made[f"waiting_{sender}_{country}"] = send(sender, country, question, category=category)
    inbound: dict[str, str] = {}
    for sender, country, category, question in ACROSS:
        message_id = send(sender, country, question, category=category)
        officer(f"{sender[:2].lower()}-officer").decide(message_id, "approve")
        made[f"inbound_{sender}_{country}"] = message_id
        inbound[message_id] = country
    agency("AL-CUS").set_push_endpoint("https://push.al-customs.invalid/spoc")  # a name that will not resolve
    # Addressed to AL's contact point, not to AL-CUS: MK's node knows AL's contact point from the regional
    # directory, not AL's agencies; AL's officer routes it to its customs.
    made["dead_letter"] = send(
        "MK-MOI", "AL", "Customs declarations of the lorry below.", category="vehicle-crime"
    )
    officer("mk-officer").decide(made["dead_letter"], "approve")
    inbound[made["dead_letter"]] = "AL"
    for message_id, country in inbound.items():
        _wait(
            f"{message_id} in the {country} node's inbound queue",
            functools.partial(
                _awaiting, officer(f"{country.lower()}-officer"), message_id, "destination_review"
            ),
        )
    al = officer("al-officer")
    al.decide(made["dead_letter"], "accept")
    al.decide(made["dead_letter"], "route", route_to_agency="AL-CUS")
    _wait(
        "the dead letter",
        lambda: any(
            d["message_id"] == made["dead_letter"] for d in al._call("GET", "/v1/cp/deliveries?status=dead")
        ),
    )
    if "AL" in settings:
        _move_clock_back(settings["AL"], made["near_deadline"], hours=NEAR_DEADLINE_HOURS)
    return made


def _al_outbound(
    send: Callable[..., str], officer: Callable[[str], OfficerClient], *, elsewhere: tuple[str, ...]
) -> dict[str, str]:
    """AL's outbound queue as the demo leaves it, on the hub and on AL's node alike: an urgent request, a
    CONFIDENTIAL one with the first of its two approvals, one under H3, one returned for clarification and
    one that will be moved near its deadline. ``elsewhere`` names the five destinations, in that order (the
    hub has every country; a region only its own)."""
    urgent = {
        "level": "urgent",
        "urgency_reason": "threat-to-life-or-physical-integrity",
        "urgency_explanation": "A witness in the case has been threatened; the suspect may be armed.",
        "information_access": "direct",
    }
    to_urgent, to_four_eyes, to_h3, to_returned, to_near = elsewhere
    made: dict[str, str] = {}
    made["urgent"] = send(
        "AL-ASP",
        to_urgent,
        "Whereabouts of a suspect seen near the border.",
        category="murder",
        priority=urgent,
    )
    made["four_eyes"] = send(
        "AL-ASP",
        to_four_eyes,
        "Bank accounts linked to the network.",
        category="money-laundering",
        classification="CONFIDENTIAL",
    )
    officer("al-officer2").decide(made["four_eyes"], "approve")  # the first of two officers
    made["h3"] = send(
        "AL-BMP",
        to_h3,
        "Entries of the listed vehicles; not for use as evidence.",
        category="migrant-smuggling",
        handling_codes=("H0", "H3"),
    )
    made["returned"] = send(
        "AL-ASP", to_returned, "Records of the person below.", category="drug-trafficking"
    )
    officer("al-officer").decide(
        made["returned"], "return", reason="Please add the person's date of birth and the case reference."
    )
    made["near_deadline"] = send(
        "AL-ASP", to_near, "Phone subscriber behind the number below.", category="kidnapping", priority=urgent
    )
    return made
