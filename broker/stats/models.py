"""The statistics' documents: the Art. 18 report (JSON export, and what the CSV and HTML forms are made
from) and a node's published aggregate. Counts only: no message id, agency content or personal data.

Names follow docs/statistics.md, which defines each figure; ``format`` versions the document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AGGREGATE_FORMAT",
    "ART18_FORMAT",
    "AgencyCount",
    "Aggregate",
    "Art18Report",
    "CountryCount",
    "CountryGroundCount",
    "GroundCount",
    "Judicial",
    "PeriodOut",
    "Received",
    "ReceivedByCountry",
    "Refused",
    "Submitted",
]

ART18_FORMAT: Final = "spoc-art18/v1"
AGGREGATE_FORMAT: Final = "spoc-stats-aggregate/v1"


Count = Annotated[int, Field(ge=0, le=2**53)]
"""A number of requests (at most what a JSON number holds exactly)."""
Seconds = Annotated[int, Field(ge=0, le=1000 * 366 * 86400)]
"""An answer time: at most the longest period statistics cover (a thousand years, ``broker.stats.period``)."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AgencyCount(_Doc):
    agency: str
    count: int


class CountryCount(_Doc):
    country: str
    count: int


class GroundCount(_Doc):
    ground: str = Field(description="A code of the list refusal_grounds (Art. 6)")
    count: int


class CountryGroundCount(_Doc):
    country: str
    ground: str
    count: int


class PeriodOut(_Doc):
    start: datetime = Field(alias="from", description="The first instant of the period (UTC)")
    end: datetime = Field(alias="to", description="The end of the period, not included (UTC)")
    label: str = Field(description="For people: 2026, or 2026-01-01 – 2026-03-31")


class Submitted(_Doc):
    """Art. 18(a): requests the contact point's country sent (forwarded by the contact point)."""

    total: int
    by_contact_point: int = Field(description="Sent by the contact point itself")
    by_agencies: int = Field(description="Sent by its country's law-enforcement agencies")
    by_agency: list[AgencyCount]


class ReceivedByCountry(_Doc):
    country: str
    urgent_received: int = 0
    urgent_answered: int = 0
    non_urgent_received: int = 0
    non_urgent_answered: int = 0


class Received(_Doc):
    """Art. 18(b): requests received and answered, split urgent / non-urgent and by requesting country."""

    total: int
    answered: int
    urgent_received: int
    urgent_answered: int
    non_urgent_received: int
    non_urgent_answered: int
    by_requesting_country: list[ReceivedByCountry]


class Refused(_Doc):
    """Art. 18(c): requests refused, by requesting country and by Art. 6 ground."""

    total: int
    by_requesting_country: list[CountryCount]
    by_ground: list[GroundCount]
    by_country_and_ground: list[CountryGroundCount]


class Judicial(_Doc):
    """Art. 18(d): requests whose Art. 5(1) time limit was exceeded while a judicial authorisation was awaited
    (Art. 5(2)), by requesting country."""

    total: int
    by_requesting_country: list[CountryCount]


class Art18Report(_Doc):
    """The Art. 18 statistics of one contact point over one period."""

    format: Literal["spoc-art18/v1"] = "spoc-art18/v1"
    contact_point: str
    country: str
    period: PeriodOut
    generated_at: datetime
    submitted: Submitted
    received: Received
    refused: Refused
    judicial_delays: Judicial


class Aggregate(_Doc):
    """One contact point's aggregate counts, as its node publishes them to its peers (GET /v1/stats/aggregate).

    ``received`` … ``judicial_delays`` are about requests the contact point received (what it answered);
    ``sent`` counts the requests its country sent. Answer times in seconds, pauses for clarification excluded.

    Bounded, because a peer's document is read by another node's dashboard: no count is negative, and no
    answer time is longer than a period can be (a hostile peer's absurd figure is refused as unverifiable,
    never drawn, never an error of the page)."""

    contact_point: str
    country: str
    sent: Count
    received: Count
    answered: Count
    answered_late: Count
    refused: Count
    open: Count = Field(description="Still waiting for the answer (overdue ones included)")
    overdue: Count
    paused: Count = Field(description="Waiting for the requester's clarification")
    judicial_delays: Count
    median_answer_seconds: Seconds | None
    p90_answer_seconds: Seconds | None
