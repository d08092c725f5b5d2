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


def test_source_keys_group_an_ipv6_64_and_unmap_ipv4() -> None:
    from broker.limits import source_key

    assert (
        source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    )
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7" == source_key("192.0.2.7")
    assert source_key("unknown") == "unknown"


def test_memory_buckets_stay_bounded_and_keep_a_draining_bucket_under_a_flood_of_new_keys() -> None:
    now = [0.0]
    buckets = MemoryBuckets(rate=1.0, burst=2, clock=lambda: now[0], max_keys=100)
    assert buckets.take("attacker", 2).allowed
    assert not buckets.take("attacker").allowed  # empty: one token a second
    for i in range(1000):
        buckets.take(f"flood-{i}")
        assert len(buckets) <= 100
    # Ten seconds on, every bucket has refilled: the next new key past the bound forgets them all (they
    # held nothing a new bucket would not), instead of dropping half by age.
    now[0] = 10.0
    for i in range(100):
        buckets.take(f"later-{i}")
    assert len(buckets) <= 100
    # later-0, the oldest of them and still draining (one token left), survived: the refilled flood went first
    assert buckets.take("later-0").allowed
    assert not buckets.take("later-0").allowed


def test_nodes_sharing_one_redis_keep_their_buckets_apart(redis_url: str) -> None:
    """Two nodes on one Redis, each with its own SPOC_BROKER_KEY_PREFIX: emptying one's bucket for a key
    leaves the other's full."""
    from broker.limits import make_limiter

    run = uuid.uuid4().hex
    al = make_limiter(broker_url=redis_url, rate=0.01, burst=2, key_prefix=f"{run}-al:")
    xk = make_limiter(broker_url=redis_url, rate=0.01, burst=2, key_prefix=f"{run}-xk:")
    assert al.take("login:admin", 2).allowed
    assert not al.take("login:admin").allowed
    assert xk.take("login:admin", 2).allowed  # another node's bucket of the same name, untouched
