"""The deadline clock (pure): pause while a clarification is pending, resume, extend, warn at 75 %."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.messages.deadlines import NORMAL, URGENT_DIRECT, URGENT_INDIRECT, Clock, describe, legal_period

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _clock(period: timedelta = URGENT_DIRECT) -> Clock:
    return Clock(started_at=T0, deadline_at=T0 + period)


@pytest.mark.parametrize(
    ("level", "access", "period"),
    [
        ("urgent", "direct", URGENT_DIRECT),
        ("urgent", "indirect", URGENT_INDIRECT),
        ("normal", "direct", NORMAL),
    ],
)
def test_legal_periods_of_article_5(level: str, access: str, period: timedelta) -> None:
    assert legal_period(message_type="request", priority_level=level, information_access=access) == period
    assert period in (timedelta(hours=8), timedelta(days=3), timedelta(days=7))
    assert legal_period(message_type="notification", priority_level=level, information_access=access) is None


def test_time_left_and_share_used() -> None:
    clock = _clock()
    assert clock.remaining(T0 + timedelta(hours=2)) == timedelta(hours=6)
    assert clock.used(T0 + timedelta(hours=2)) == pytest.approx(0.25)
    assert clock.remaining(T0 + timedelta(hours=9)) == timedelta(hours=-1)
    assert clock.used(T0 + timedelta(hours=9)) > 1


def test_warning_falls_at_75_percent_of_the_running_time() -> None:
    assert _clock().warn_at() == T0 + timedelta(hours=6)
    assert _clock(NORMAL).warn_at() == T0 + timedelta(days=5, hours=6)


def test_a_paused_clock_stands_still_and_runs_on_by_the_time_it_stood() -> None:
    paused = _clock().pause(T0 + timedelta(hours=2))
    assert paused.paused
    assert paused.remaining(T0 + timedelta(hours=30)) == timedelta(hours=6)  # frozen while paused
    assert paused.pause(T0 + timedelta(hours=5)) == paused  # pausing twice changes nothing
    resumed = paused.resume(T0 + timedelta(hours=26))  # 24 h of clarification
    assert not resumed.paused
    assert resumed.deadline_at == T0 + timedelta(hours=32)
    assert resumed.paused_seconds == 24 * 3600
    assert resumed.remaining(T0 + timedelta(hours=26)) == timedelta(hours=6)
    assert resumed.running_time == URGENT_DIRECT  # pauses do not count as running time
    assert resumed.warn_at() == T0 + timedelta(hours=30)  # 6 of 8 running hours used


def test_an_extension_lengthens_the_deadline_and_the_running_time() -> None:
    longer = _clock().extend(timedelta(hours=4))
    assert longer.deadline_at == T0 + timedelta(hours=12)
    assert longer.extended_seconds == 4 * 3600
    assert longer.running_time == timedelta(hours=12)
    assert longer.warn_at() == T0 + timedelta(hours=9)


def test_resuming_a_running_clock_changes_nothing() -> None:
    clock = _clock()
    assert clock.resume(T0 + timedelta(hours=3)) == clock


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=7), "7 d 0 h"),
        (timedelta(hours=7, minutes=59, seconds=30), "7 h 59 min"),
        (timedelta(minutes=5), "5 min"),
        (timedelta(minutes=-40), "overdue by 40 min"),
        (timedelta(days=-1, hours=-2), "overdue by 1 d 2 h"),
    ],
)
def test_time_left_reads_like_a_person_would_say_it(delta: timedelta, text: str) -> None:
    assert describe(delta) == text
