"""Request limits: a per-agency rate limit (token bucket) and a request body size limit.

Rate limit: each agency has a bucket of ``burst`` tokens refilled at ``rate`` tokens per second; a call
takes one token or is refused with 429 and the seconds until a token is back (``Retry-After``). With
several API replicas the bucket must be shared, so on a Redis deployment it lives in Redis (one atomic
Lua script, Redis's own clock); the embedded default (one process, no Redis) keeps it in memory.
A limiter that cannot reach Redis lets the call through: the limit protects the exchange from a runaway
client, it must not take the exchange down with Redis.

Body size: an ASGI middleware refuses a declared ``Content-Length`` over the limit before reading, and
stops a chunked body once it passes the limit; both become 413 problem+json.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis

from broker.errors import RateLimited, TooLarge

__all__ = [
    "BodySizeLimit",
    "Decision",
    "MemoryBuckets",
    "RateLimiter",
    "RedisBuckets",
    "make_limiter",
    "source_key",
]

log = logging.getLogger("spoc.limits")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until one token is available again (0 when allowed)


class RateLimiter(Protocol):
    """Takes ``cost`` tokens (one per message: a batch of 50 costs 50) from ``key``'s bucket."""

    def take(self, key: str, cost: int = 1) -> Decision: ...


def source_key(address: str) -> str:
    """The bucket key of a client address: an IPv6 address stands for its /64, an IPv4-mapped one for the
    IPv4 address.

    Why: one IPv6 subscriber is routinely given a whole /64 (SLAAC, privacy addresses), so keyed by the full
    address a single machine could walk 2**64 fresh buckets and never be throttled. Anything that does not
    parse (a proxy's name, "unknown") is its own key.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class MemoryBuckets:
    """Token buckets in this process (the embedded default: one API process).

    Bounded: past ``max_keys`` buckets, the full ones (idle long enough to have refilled, so forgetting them
    changes nothing) are dropped; if every bucket is still draining, the least recently used go. A flood of
    new keys therefore costs memory up to the bound, never more.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        """Drop the buckets that are full again; then, if still at the bound, the least recently used."""
        self._buckets = {
            k: v for k, v in self._buckets.items() if v[0] + (now - v[1]) * self._rate < self._burst
        }
        if len(self._buckets) >= self._max_keys:
            # dicts keep insertion order and take() re-inserts on use: the first keys are the least recently used
            for key in list(self._buckets)[: len(self._buckets) - self._max_keys // 2]:
                del self._buckets[key]

    def take(self, key: str, cost: int = 1) -> Decision:
        now = self._clock()
        with self._lock:
            if key not in self._buckets and len(self._buckets) >= self._max_keys:
                self._evict(now)
            # popped and put back, so the dict's order is least recently used first (for _evict)
            tokens, at = self._buckets.pop(key, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - at) * self._rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return Decision(True, 0.0)
            self._buckets[key] = (tokens, now)
        return Decision(False, (cost - tokens) / self._rate)


# KEYS[1] bucket; ARGV rate, burst, cost. Returns {allowed, retry_after_ms}. Redis's clock, so replicas agree.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local cost = tonumber(ARGV[3]) or 1
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait}
"""


class RedisBuckets:
    """Token buckets shared by every API replica, in Redis."""

    def __init__(self, url: str, *, rate: float, burst: int, prefix: str = "spoc:rate:") -> None:
        self._rate, self._burst, self._prefix = rate, burst, prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_TAKE)

    def take(self, key: str, cost: int = 1) -> Decision:
        try:
            allowed, wait_ms = self._script(keys=[self._prefix + key], args=[self._rate, self._burst, cost])
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable, letting the call through: %s", type(exc).__name__)
            return Decision(True, 0.0)
        return Decision(bool(allowed), int(wait_ms) / 1000)


class _Unlimited:
    def take(self, key: str, cost: int = 1) -> Decision:
        return Decision(True, 0.0)


def make_limiter(*, broker_url: str, rate: float, burst: int, key_prefix: str = "") -> RateLimiter:
    """Redis buckets on a Redis deployment, in-process buckets otherwise; no limit when ``rate`` is 0.

    ``key_prefix`` (``SPOC_BROKER_KEY_PREFIX``) keeps the buckets of nodes that share one Redis apart: one
    country's login storm must not throttle another country's ``admin``."""
    if rate <= 0:
        return _Unlimited()
    if broker_url.startswith(("redis://", "rediss://")):
        return RedisBuckets(broker_url, rate=rate, burst=burst, prefix=f"{key_prefix}spoc:rate:")
    return MemoryBuckets(rate=rate, burst=burst)


def enforce(limiter: RateLimiter, key: str, cost: int = 1) -> None:
    """Take ``cost`` tokens for ``key`` or raise 429 with the whole seconds to wait."""
    decision = limiter.take(key, cost)
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after))
        raise RateLimited(f"too many requests from {key}; retry in {wait} s", retry_after=wait)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    """ASGI middleware: 413 problem+json for a body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the route's body read, so the app's SpocError handler answers 413.
                    raise TooLarge(f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        error = TooLarge(f"the body is larger than {self.max_bytes} bytes")
        body = orjson.dumps(error.problem(instance=scope.get("path")))
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
