"""A year of traffic (2025) around Croatia's contact point with known answers, written as rows.

Rows, not service calls: a year of traffic needs clocks that started months ago, answers that came days
later and deadlines that passed, which the services (they stamp "now") cannot make. Each row is what the
services leave behind (the request, its answer as a message ``in_reply_to`` it, a refusal as a custody
step with its Art. 6 ground, an extension as a deadline event with its Art. 5(2) code), and
tests/broker/stats/test_stats_api.py checks the same shapes come out of a real flow over the API.

HR-SPOC's expected figures for 2025 are :data:`EXPECTED` (each request below says where it counts).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from broker.messages.models import CustodyStep, DeadlineEvent, Message

YEAR = 2025
H = timedelta(hours=1)
D = timedelta(days=1)
LIMIT = {("urgent", "direct"): 8 * H, ("urgent", "indirect"): 3 * D, ("normal", "direct"): 7 * D}
JUDICIAL = "judicial-authorisation-pending"
RESPONDER = {"HR": "HR-POL", "SI": "SI-POL", "AL": "AL-ASP", "RS": "RS-MUP", "ME": "ME-UP", "XK": "XK-KP"}


def at(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(YEAR, month, day, hour, tzinfo=UTC)


def _message(
    *,
    type_: str,
    sender: str,
    to: str,
    state: str,
    received_at: datetime,
    priority: str = "normal",
    in_reply_to: str | None = None,
    supersedes: str | None = None,
) -> Message:
    origin = sender.split("-", 1)[0]
    mid = str(uuid.uuid4())
    header: dict[str, Any] = {
        "message_id": mid,
        "type": type_,
        "sender_agency": sender,
        "origin_country": origin,
        "destination_country": to,
        "category": "drug-trafficking",
        "classification": "RESTRICTED",
        "priority": {"level": priority},
    }
    return Message(
        id=mid,
        conversation_id=str(uuid.uuid4()),
        in_reply_to=in_reply_to,
        type=type_,
        sender_agency=sender,
        origin_country=origin,
        destination_country=to,
        category="drug-trafficking",
        classification="RESTRICTED",
        handling_codes=["H0"],
        priority_level=priority,
        state=state,
        # What a payload looks like to the broker: a JWE it cannot read, and the content retention deletes.
        envelope={
            "spoc": "1",
            "header": header,
            "payload": {
                "ciphertext": "Q09OVEVOVCBPRiBUSEUgUkVRVUVTVA",
                "protected": "eyJlbmMiOiJBMjU2R0NNIn0",
            },
            "signature": "c2lnbmF0dXJl",
        },
        digest=f"sha-256:{uuid.uuid4().hex}",
        received_at=received_at,
        updated_at=received_at,
        supersedes=supersedes,
    )


class Traffic:
    """Writes requests with their answers, refusals, pauses and extensions into ``session`` (flushed)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: dict[str, str] = {}

    def request(
        self,
        name: str,
        *,
        sender: str,
        to: str,
        started: datetime,
        state: str,
        urgent: str | None = None,  # "direct" | "indirect" for an urgent request
        answered: datetime | None = None,
        refused: tuple[datetime, str] | None = None,
        extended: tuple[datetime, timedelta, str] | None = None,
        paused: timedelta = timedelta(0),
        paused_at: datetime | None = None,
        supersedes: str | None = None,
    ) -> Message:
        priority = "urgent" if urgent else "normal"
        limit = LIMIT[(priority, urgent or "direct")]
        stretch = extended[1] if extended else timedelta(0)
        message = _message(
            type_="request",
            sender=sender,
            to=to,
            state=state,
            received_at=started + paused,  # an amended version arrives after the pause
            priority=priority,
            supersedes=supersedes,
        )
        message.clock_started_at = started
        message.deadline_at = started + limit + paused + stretch
        message.paused_seconds = int(paused.total_seconds())
        message.extended_seconds = int(stretch.total_seconds())
        message.paused_at = paused_at
        self.session.add(message)
        self.session.flush()
        self.ids[name] = message.id
        cp = f"{to}-SPOC"
        if answered is not None:
            self.session.add(
                _message(
                    type_="response",
                    sender=RESPONDER[to],
                    to=message.origin_country,
                    state="delivered",
                    received_at=answered,
                    in_reply_to=message.id,
                )
            )
        if refused is not None:
            when, ground = refused
            self.session.add(
                CustodyStep(
                    message_id=message.id,
                    seq=5,
                    party=cp,
                    actor=f"{to.lower()}-officer",
                    decision="refused",
                    from_state="destination_review",
                    to_state="refused",
                    reason="see the ground",
                    refusal_ground=ground,
                    at=when,
                    signature="test-row",
                )
            )
        if extended is not None:
            when, by, code = extended
            self.session.add(
                DeadlineEvent(
                    message_id=message.id,
                    kind="extended",
                    at=when,
                    actor=f"{to.lower()}-officer",
                    reason="the investigating judge decides on Monday",
                    deadline_at=message.deadline_at,
                    seconds=int(by.total_seconds()),
                    reason_code=code,
                )
            )
        self.session.flush()
        return message

    def other(self, *, type_: str, sender: str, to: str, state: str, received_at: datetime) -> None:
        self.session.add(_message(type_=type_, sender=sender, to=to, state=state, received_at=received_at))
        self.session.flush()


def seed_year(session: Session) -> Traffic:
    """The 2025 traffic; HR-SPOC's figures are :data:`EXPECTED`."""
    t = Traffic(session)
    # --- received by HR (destination HR) ---------------------------------------------------------------
    # from SI
    t.request(
        "R1",
        sender="SI-POL",
        to="HR",
        started=at(1, 10, 8),
        urgent="direct",
        state="answered",
        answered=at(1, 10, 12),
    )  # 4 h: within 8 h
    t.request(
        "R2", sender="SI-POL", to="HR", started=at(2, 3, 9), state="answered", answered=at(2, 7, 9)
    )  # 4 d: within 7 d
    t.request(
        "R3", sender="SI-DT", to="HR", started=at(3, 1), state="refused", refused=(at(3, 2), "not-available")
    )
    t.request(
        "R4", sender="SI-POL", to="HR", started=at(4, 1, 10), state="answered", answered=at(4, 10, 10)
    )  # 9 d: late
    t.request(
        "R5",
        sender="SI-DT",
        to="HR",
        started=at(5, 5),
        urgent="indirect",
        state="answered",
        extended=(at(5, 6), 3 * D, JUDICIAL),
        answered=at(5, 9),
    )  # beyond its 3 d limit, within the
    # extended one: on time; Art. 18(d) counts it (the limit of Art. 5(1) was exceeded awaiting the judge)
    # from AL
    t.request(
        "R6",
        sender="AL-ASP",
        to="HR",
        started=at(6, 2, 8),
        urgent="direct",
        state="answered",
        answered=at(6, 2, 20),
    )  # 12 h for an 8 h limit: late
    t.request(
        "R7",
        sender="AL-ASP",
        to="HR",
        started=at(6, 10),
        state="refused",
        refused=(at(6, 11), "minor-offence"),
    )
    t.request(
        "R8",
        sender="AL-PRO",
        to="HR",
        started=at(7, 1),
        state="refused",
        extended=(at(7, 5), 7 * D, JUDICIAL),
        refused=(at(7, 12), "judicial-authorisation-refused"),
    )  # refused after its 7 d: (d) counts it
    t.request(
        "R9", sender="AL-ASP", to="HR", started=at(8, 1), state="clarification_requested", paused_at=at(8, 2)
    )  # paused for clarification
    # from RS: R10 was returned for clarification (2 days) and amended; the amended version counts, once
    first = t.request(
        "R10-returned", sender="RS-MUP", to="HR", started=at(9, 15), state="superseded", paused_at=at(9, 16)
    )
    t.request(
        "R10",
        sender="RS-MUP",
        to="HR",
        started=at(9, 15),
        state="answered",
        paused=2 * D,
        supersedes=first.id,
        answered=at(9, 23),
    )  # 8 d elapsed, 6 d running: within 7 d
    t.request(
        "R11", sender="RS-MUP", to="HR", started=at(10, 20, 10), urgent="direct", state="destination_review"
    )  # still open, long overdue
    t.request(
        "R12",
        sender="RS-BP",
        to="HR",
        started=at(11, 1),
        state="refused",
        refused=(at(11, 3), "not-available"),
    )
    # from ME
    t.request(
        "R13",
        sender="ME-UP",
        to="HR",
        started=at(11, 28),
        state="answered",
        extended=(at(12, 1), 5 * D, JUDICIAL),
        answered=at(12, 3),
    )  # 5 d: within the 7 d limit
    # anyway, so (d) does not count it although an extension was recorded
    # not received by HR in 2025
    t.request(
        "X1",
        sender="SI-POL",
        to="HR",
        started=datetime(2024, 12, 31, 23, tzinfo=UTC),
        state="answered",
        answered=at(1, 2),
    )  # the year before
    t.request(
        "X2", sender="SI-POL", to="HR", started=datetime(2026, 1, 1, tzinfo=UTC), state="destination_review"
    )
    t.request("X3", sender="SI-POL", to="HR", started=at(6, 6), state="origin_review")  # still at SI
    t.request("X4", sender="SI-BP", to="HR", started=at(6, 7), state="rejected")  # SI stopped it
    t.other(type_="notification", sender="SI-POL", to="HR", state="delivered", received_at=at(6, 8))

    # --- sent by HR (origin HR) ------------------------------------------------------------------------
    t.request("S1", sender="HR-POL", to="SI", started=at(1, 15), state="answered", answered=at(1, 17))
    t.request(
        "S2",
        sender="HR-POL",
        to="RS",
        started=at(3, 20),
        state="refused",
        refused=(at(3, 22), "national-security-investigation-or-safety"),
    )
    t.request("S3", sender="HR-DORH", to="AL", started=at(5, 2), state="answered", answered=at(5, 12))
    t.request("S4", sender="HR-BP", to="ME", started=at(8, 8), state="routed")
    t.request("S5", sender="HR-POL", to="SI", started=at(9, 9), state="origin_review")  # not sent yet
    t.request("S6", sender="HR-CUS", to="SI", started=at(10, 10), state="rejected")  # HR stopped it
    t.request("S7", sender="HR-SPOC", to="SI", started=at(10, 12), state="answered", answered=at(10, 13))
    s8 = t.request(
        "S8-returned", sender="HR-POL", to="SI", started=at(12, 1), state="superseded", paused_at=at(12, 2)
    )
    t.request(
        "S8", sender="HR-POL", to="SI", started=at(12, 1), state="delivered", paused=D, supersedes=s8.id
    )
    t.other(type_="notification", sender="HR-SPOC", to="SI", state="delivered", received_at=at(4, 4))

    # --- between others (never in HR's figures) ------------------------------------------------------
    t.request(
        "O1", sender="SI-POL", to="AL", started=at(2, 2), state="refused", refused=(at(2, 3), "incomplete")
    )
    t.request("O2", sender="AL-ASP", to="RS", started=at(3, 3), state="answered", answered=at(3, 4))
    return t


# HR-SPOC, 2025 (docs/statistics.md defines each figure)
EXPECTED: dict[str, Any] = {
    "submitted": {
        "total": 6,  # S1 S2 S3 S4 S7 S8; not S5 (at HR's review), S6 (rejected), S8-returned (superseded)
        "by_contact_point": 1,  # S7
        "by_agencies": 5,
        "by_agency": [
            {"agency": "HR-BP", "count": 1},
            {"agency": "HR-DORH", "count": 1},
            {"agency": "HR-POL", "count": 3},
        ],
    },
    "received": {
        "total": 13,  # R1-R13, R10 once
        "answered": 7,  # R1 R2 R4 R5 R6 R10 R13
        "urgent_received": 4,  # R1 R5 R6 R11
        "urgent_answered": 3,
        "non_urgent_received": 9,
        "non_urgent_answered": 4,
        "by_requesting_country": [
            {
                "country": "AL",
                "urgent_received": 1,
                "urgent_answered": 1,
                "non_urgent_received": 3,
                "non_urgent_answered": 0,
            },
            {
                "country": "ME",
                "urgent_received": 0,
                "urgent_answered": 0,
                "non_urgent_received": 1,
                "non_urgent_answered": 1,
            },
            {
                "country": "RS",
                "urgent_received": 1,
                "urgent_answered": 0,
                "non_urgent_received": 2,
                "non_urgent_answered": 1,
            },
            {
                "country": "SI",
                "urgent_received": 2,
                "urgent_answered": 2,
                "non_urgent_received": 3,
                "non_urgent_answered": 2,
            },
        ],
    },
    "refused": {
        "total": 4,  # R3 R7 R8 R12
        "by_requesting_country": [
            {"country": "AL", "count": 2},
            {"country": "RS", "count": 1},
            {"country": "SI", "count": 1},
        ],
        "by_ground": [
            {"ground": "judicial-authorisation-refused", "count": 1},
            {"ground": "minor-offence", "count": 1},
            {"ground": "not-available", "count": 2},
        ],
        "by_country_and_ground": [
            {"country": "AL", "ground": "judicial-authorisation-refused", "count": 1},
            {"country": "AL", "ground": "minor-offence", "count": 1},
            {"country": "RS", "ground": "not-available", "count": 1},
            {"country": "SI", "ground": "not-available", "count": 1},
        ],
    },
    "judicial_delays": {  # R5 (SI), R8 (AL); not R13 (answered within the limit without its extension)
        "total": 2,
        "by_requesting_country": [{"country": "AL", "count": 1}, {"country": "SI", "count": 1}],
    },
}

# The dashboard's compliance buckets of HR-SPOC in 2025, by direction and counterpart.
COMPLIANCE = {
    "in": {
        "SI": {"within_8h": 1, "within_7d": 2, "refused": 1, "late": 1},  # R1; R2 R5; R3; R4
        "AL": {"late": 1, "refused": 2, "paused": 1},  # R6; R7 R8; R9
        "RS": {"within_7d": 1, "overdue": 1, "refused": 1},  # R10; R11; R12
        "ME": {"within_7d": 1},  # R13
    },
    "out": {
        "SI": {"within_3d": 2, "overdue": 1},  # S1 (2 d), S7 (1 d); S8 overdue
        "RS": {"refused": 1},
        "AL": {"late": 1},  # S3: 10 d for 7 d
        "ME": {"overdue": 1},  # S4
    },
}
# Answer times (seconds, pauses excluded) of the requests HR answered: 4 h, 12 h, 4 d, 4 d, 5 d, 6 d, 9 d.
ANSWER_SECONDS_IN = sorted([4 * 3600, 12 * 3600, 4 * 86400, 4 * 86400, 5 * 86400, 6 * 86400, 9 * 86400])
MEDIAN_IN = 4 * 86400
P90_IN = 9 * 86400  # nearest rank: the 7th of 7
