"""Login throttling: the account lockout policy, and per-address buckets that refuse (429) before it.

Two defences, on two keys (numbers in ``broker.config.Settings``, README "Security"):

* **The account** is locked after ``max_failures`` failed logins within ``failure_window``, from any
  addresses (distributed guessing). Counted atomically in the database by ``broker.accounts.service``.
* **The client address** is throttled by token buckets: one per (address, username) and one per address.
  A token is taken *before* the password is checked and given back when the login succeeds, so only
  failures are spent and N parallel guesses spend N tokens (a check-then-charge would let a burst through).
  The (address, username) bucket is small enough that one address alone can never reach the account's
  limit (``Settings`` refuses numbers that would let it), so nobody can lock ``admin`` from one machine.

The buckets are ``broker.limits``' (Redis when the broker is Redis, shared by every replica; in memory
otherwise). A limiter that cannot reach Redis lets the call through; the account lockout still holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from broker.config import Settings
from broker.limits import Decision, RateLimiter, make_limiter, source_key

__all__ = ["LoginPolicy", "LoginThrottle"]


@dataclass(frozen=True)
class LoginPolicy:
    """When failed logins lock an account, and for how long (the defaults are ``Settings``')."""

    max_failures: int = 10
    failure_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(
            max_failures=settings.login_max_failures,
            failure_window=timedelta(seconds=settings.login_failure_window_seconds),
            lockout=timedelta(seconds=settings.login_lockout_seconds),
        )


def _wait(decision: Decision) -> int:
    return max(1, math.ceil(decision.retry_after))


class LoginThrottle:
    """Failed-login buckets per client address and per (address, username)."""

    def __init__(self, *, per_source: RateLimiter, per_source_account: RateLimiter) -> None:
        self._per_source = per_source
        self._per_pair = per_source_account

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(
            per_source=make_limiter(
                broker_url=settings.broker_url,
                key_prefix=settings.broker_key_prefix,
                rate=1 / settings.login_source_refill_seconds,
                burst=settings.login_source_burst,
            ),
            per_source_account=make_limiter(
                broker_url=settings.broker_url,
                key_prefix=settings.broker_key_prefix,
                rate=1 / settings.login_source_account_refill_seconds,
                burst=settings.login_source_account_burst,
            ),
        )

    @staticmethod
    def _keys(source: str, username: str) -> tuple[str, str]:
        # Prefixed so they never meet an agency's bucket (agency ids do not contain ':').
        # An IPv6 client counts by its /64 (``source_key``): one subscriber holds the whole /64.
        key = source_key(source)
        return f"login:{key}", f"login:{key}:{username}"

    def reserve(self, source: str, username: str) -> int | None:
        """Take one failure's token from both buckets; None if taken, else the whole seconds to wait."""
        source_key, pair_key = self._keys(source, username)
        pair = self._per_pair.take(pair_key)
        if not pair.allowed:
            return _wait(pair)
        total = self._per_source.take(source_key)
        if not total.allowed:
            self._give_back(self._per_pair, pair_key)
            return _wait(total)
        return None

    def release(self, source: str, username: str) -> None:
        """Give back what :meth:`reserve` took: the login succeeded, and only failures are throttled."""
        source_key, pair_key = self._keys(source, username)
        self._give_back(self._per_pair, pair_key)
        self._give_back(self._per_source, source_key)

    @staticmethod
    def _give_back(limiter: RateLimiter, key: str) -> None:
        # A cost of -1 adds the token back; both bucket implementations cap the count at the burst on
        # their next take, so giving back can never raise a bucket above its burst.
        limiter.take(key, -1)
