"""Legal deadlines of Directive (EU) 2023/977, Art. 5(1), and the clock that measures them.

urgent + directly accessible information: 8 hours; urgent + indirectly accessible: 3 days; otherwise 7 days.
Only requests have deadlines; answers, notifications and acknowledgements do not.

The clock starts when the request is first submitted. It stops while the sender is asked to clarify
(Art. 6(3): the time limits are suspended until the clarification is provided) and runs on in the amended
message; a contact point may extend it, with a reason. So, for a clock started at ``started``::

    deadline = started + legal period + time paused + extensions

The monitor warns when 75 % of the *running* time is used and escalates when the deadline passes. Every
function here is pure: the caller passes ``now``, so tests need no frozen clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

URGENT_DIRECT = timedelta(hours=8)
URGENT_INDIRECT = timedelta(days=3)
NORMAL = timedelta(days=7)
WARN_AT = 0.75
"""Share of the running time after which officers are warned."""


def legal_period(*, message_type: str, priority_level: str, information_access: str) -> timedelta | None:
    """The time Art. 5(1) allows for an answer, or None for a message that is not a request."""
    if message_type != "request":
        return None
    if priority_level == "urgent":
        return URGENT_DIRECT if information_access == "direct" else URGENT_INDIRECT
    return NORMAL


def deadline_for(
    *, message_type: str, priority_level: str, information_access: str, submitted_at: datetime
) -> datetime | None:
    period = legal_period(
        message_type=message_type, priority_level=priority_level, information_access=information_access
    )
    return None if period is None else submitted_at + period


@dataclass(frozen=True)
class Clock:
    """A deadline clock: when it started, the deadline it runs to, and what stopped or lengthened it."""

    started_at: datetime
    deadline_at: datetime
    paused_at: datetime | None = None
    paused_seconds: int = 0
    extended_seconds: int = 0

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def running_time(self) -> timedelta:
        """The time the clock may run in total (legal period plus extensions, pauses excluded)."""
        return self.deadline_at - self.started_at - timedelta(seconds=self.paused_seconds)

    def remaining(self, now: datetime) -> timedelta:
        """Time left (negative once overdue); frozen while the clock is paused."""
        return self.deadline_at - (self.paused_at or now)

    def used(self, now: datetime) -> float:
        """Share of the running time used, 0.0 … 1.0 and beyond when overdue."""
        total = self.running_time.total_seconds()
        if total <= 0:
            return 1.0
        return 1.0 - self.remaining(now).total_seconds() / total

    def warn_at(self) -> datetime:
        """When the monitor warns (75 % of the running time used), if the clock does not stop before."""
        return self.deadline_at - self.running_time * (1 - WARN_AT)

    def pause(self, now: datetime) -> Clock:
        return self if self.paused else replace(self, paused_at=now)

    def resume(self, now: datetime) -> Clock:
        """Run on: the deadline moves by the time the clock stood still."""
        if self.paused_at is None:
            return self
        stopped = max(timedelta(0), now - self.paused_at)
        return replace(
            self,
            paused_at=None,
            paused_seconds=self.paused_seconds + int(stopped.total_seconds()),
            deadline_at=self.deadline_at + timedelta(seconds=int(stopped.total_seconds())),
        )

    def extend(self, by: timedelta) -> Clock:
        seconds = int(by.total_seconds())
        return replace(
            self,
            deadline_at=self.deadline_at + timedelta(seconds=seconds),
            extended_seconds=self.extended_seconds + seconds,
        )


def describe(delta: timedelta) -> str:
    """Time left for people: ``7 d 3 h``, ``5 h 12 min``, ``overdue by 40 min``."""
    seconds = int(delta.total_seconds())
    overdue = seconds < 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days} d {hours} h"
    elif hours:
        text = f"{hours} h {minutes} min"
    else:
        text = f"{minutes} min"
    return f"overdue by {text}" if overdue else text
