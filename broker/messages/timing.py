"""When an envelope may say it was created: a window around the moment the broker receives it.

``created_at`` is chosen by the sender and signed with the envelope; it is the instant at which the
agreement must be in force. Unbounded, it let a sender back-date a message (into an agreement that has
lapsed, or to 2001) or post-date it. The broker therefore accepts it only within a window around receipt:
at most ``future`` ahead (clocks drift) and at most ``past`` behind. The past bound is generous on purpose:
an agency whose POST failed in an outage retries the *same* signed envelope (same ``Idempotency-Key``),
which must still be accepted when the link is back; the default (24 hours) is the lifetime of an
idempotency key. The signing key itself is judged at receipt, never at ``created_at`` (see
:func:`broker.messages.service.submit`), so back-dating gains nothing against a rotated-out key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.config import Settings
from broker.errors import PolicyRefused

__all__ = ["DEFAULT_WINDOW", "CreatedWindow"]


@dataclass(frozen=True)
class CreatedWindow:
    """How far ``created_at`` may lie behind (``past``) and ahead of (``future``) the time of receipt."""

    past: timedelta = timedelta(hours=24)
    future: timedelta = timedelta(minutes=5)

    @classmethod
    def of(cls, settings: Settings) -> CreatedWindow:
        return cls(
            past=timedelta(seconds=settings.envelope_max_age_seconds),
            future=timedelta(seconds=settings.envelope_max_future_seconds),
        )

    def check(self, created_at: datetime, *, now: datetime) -> None:
        """``PolicyRefused`` (``reason: created-at``) unless ``now - past <= created_at <= now + future``."""
        if created_at > now + self.future:
            raise PolicyRefused(
                f"created_at {created_at.isoformat()} is in the future (received at {now.isoformat()}; "
                f"at most {_span(self.future)} ahead is accepted): check the sender's clock",
                reason="created-at",
            )
        if created_at < now - self.past:
            raise PolicyRefused(
                f"created_at {created_at.isoformat()} is more than {_span(self.past)} before its receipt "
                f"at {now.isoformat()}: build and sign the message again",
                reason="created-at",
            )


#: The window of the default settings, for callers without settings at hand (the contact point's own
#: envelopes, made a moment before they are checked).
DEFAULT_WINDOW = CreatedWindow()


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
