"""Token buckets charged by cost (a batch of n envelopes costs n), in memory and in Redis's Lua script."""

from __future__ import annotations

import uuid

import pytest

from broker.limits import MemoryBuckets, RateLimiter, RedisBuckets


@pytest.fixture(params=["memory", "redis"])
def buckets(request: pytest.FixtureRequest, redis_url: str) -> RateLimiter:
    if request.param == "memory":
        return MemoryBuckets(rate=0.01, burst=5)
    return RedisBuckets(redis_url, rate=0.01, burst=5, prefix=f"test:{uuid.uuid4().hex}:")


def test_a_charge_takes_its_cost_and_a_refused_one_takes_nothing(buckets: RateLimiter) -> None:
    assert buckets.take("agency", 3).allowed
    refused = buckets.take("agency", 3)  # 2 left
    assert not refused.allowed
    assert 95 <= refused.retry_after <= 101  # one more token at 0.01/s
    assert buckets.take("agency", 2).allowed  # the refusal took nothing
    assert not buckets.take("agency", 1).allowed


def test_the_default_cost_is_one(buckets: RateLimiter) -> None:
    for _ in range(5):
        assert buckets.take("agency").allowed
    assert not buckets.take("agency").allowed
    assert buckets.take("another").allowed
