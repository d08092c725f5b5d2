"""The period a statistic covers, read from what a person typed: ``year``, or ``from`` and ``to``.

A period is half-open, ``[start, end)``, in UTC: ``year=2026`` is 2026-01-01T00:00Z up to (not including)
2027-01-01T00:00Z; ``from=2026-01-01&to=2026-04-01`` is the first quarter. ``from`` and ``to`` are dates
(``YYYY-MM-DD``, midnight UTC) or RFC 3339 times with a zone. Anything else is refused before any figure
is computed, with :class:`InvalidPeriod` (422) naming the parameter at fault:

* unparseable: not a year of four digits, not a date or a zoned time;
* incomplete or ambiguous: ``from`` without ``to`` (or the reverse), ``year`` with ``from``/``to``, nothing;
* empty: ``from`` equal to ``to``; reversed: ``from`` after ``to``.

(The same rules serve the API, the dashboard and ``spoc stats export``; docs/statistics.md.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import ClassVar, Final

from broker.errors import SpocError

__all__ = ["InvalidPeriod", "Period", "parse_period"]

_YEAR: Final = re.compile(r"[0-9]{4}")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LONGEST_INPUT: Final = 40
FIRST_YEAR: Final = 2000
LAST_YEAR: Final = 2999


class InvalidPeriod(SpocError):
    """The period asked for is unparseable, incomplete, empty or reversed; ``parameter`` names which input.

    422 rather than the schema's 400: the request is well-formed, what it asks for cannot be computed."""

    status: ClassVar[int] = 422
    slug: ClassVar[str] = "invalid-period"
    title: ClassVar[str] = "Invalid period"

    def __init__(self, detail: str, *, parameter: str) -> None:
        super().__init__(detail, parameter=parameter)
        self.parameter = parameter


@dataclass(frozen=True)
class Period:
    """``start`` <= t < ``end``, both aware UTC datetimes; ``year`` when the period is one calendar year."""

    start: datetime
    end: datetime
    year: int | None = None

    @classmethod
    def of_year(cls, year: int) -> Period:
        return cls(datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC), year)

    @property
    def label(self) -> str:
        """For people: ``2026``, or ``2026-01-01 – 2026-03-31`` (the last day included, as people say it)."""
        if self.year is not None:
            return str(self.year)
        last = self.end - timedelta(microseconds=1)
        if _midnight(self.start) and _midnight(self.end):
            return f"{self.start:%Y-%m-%d} – {last:%Y-%m-%d}"
        return f"{_stamp(self.start)} – {_stamp(self.end)} (end excluded)"

    def query(self) -> dict[str, str]:
        """The query parameters that ask for this period again (``year``, or ``from`` and ``to``)."""
        if self.year is not None:
            return {"year": str(self.year)}
        return {"from": _stamp(self.start), "to": _stamp(self.end)}


def _midnight(at: datetime) -> bool:
    return at.hour == at.minute == at.second == at.microsecond == 0


def _stamp(at: datetime) -> str:
    if _midnight(at):
        return f"{at:%Y-%m-%d}"
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if at.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse_period(year: str | None, start: str | None, end: str | None) -> Period:
    """The period of ``year``, or of ``start`` (``from``) and ``end`` (``to``); InvalidPeriod otherwise.

    A parameter given empty (``?year=``) is refused as such, never read as "not given"."""
    if year is not None and (start is not None or end is not None):
        raise InvalidPeriod("give year, or from and to, not both", parameter="year")
    if year is not None:
        return Period.of_year(_year(year))
    if start is None and end is None:
        raise InvalidPeriod("give the period: year=YYYY, or from and to (YYYY-MM-DD)", parameter="year")
    if start is None:
        raise InvalidPeriod("from is missing: give from with to", parameter="from")
    if end is None:
        raise InvalidPeriod("to is missing: give to with from (the end, not included)", parameter="to")
    first, last = _instant(start, "from"), _instant(end, "to")
    if first == last:
        raise InvalidPeriod(
            "the period is empty: to is its end, not included, so it must be after from", parameter="to"
        )
    if first > last:
        raise InvalidPeriod("the period is reversed: from is after to", parameter="to")
    return Period(first, last)


def _year(value: str) -> int:
    text = value.strip()
    if not text:
        raise InvalidPeriod("year is empty: give a year such as 2026", parameter="year")
    if not _YEAR.fullmatch(text) or not FIRST_YEAR <= int(text) <= LAST_YEAR:
        raise InvalidPeriod(
            f"year must be four digits from {FIRST_YEAR} to {LAST_YEAR}, such as 2026", parameter="year"
        )
    return int(text)


def _instant(value: str, parameter: str) -> datetime:
    text = value.strip()
    if not text:
        raise InvalidPeriod(f"{parameter} is empty: give a date such as 2026-01-01", parameter=parameter)
    if len(text) <= _LONGEST_INPUT:
        if _DATE.fullmatch(text):
            try:
                day = date.fromisoformat(text)
            except ValueError:
                pass
            else:
                if FIRST_YEAR <= day.year <= LAST_YEAR:
                    return datetime(day.year, day.month, day.day, tzinfo=UTC)
        elif "T" in text.upper():
            try:
                at = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if at.tzinfo is None:
                    raise InvalidPeriod(
                        f"{parameter} needs a time zone, such as 2026-01-01T00:00:00Z", parameter=parameter
                    )
                if FIRST_YEAR <= at.year <= LAST_YEAR:
                    return at.astimezone(UTC)
    raise InvalidPeriod(
        f"{parameter} is not a date (YYYY-MM-DD) or a time with a zone (2026-01-01T00:00:00Z)",
        parameter=parameter,
    )
