"""The Valkey implementations against a real redis-server (same protocol), started on a free port."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from lf_valkey.stores import ValkeyLease, ValkeyRateLimiter, ValkeyStore, connect
from redis.asyncio import Redis

from tests.harness.redisserver import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = connect(redis_url, timeout_s=1.0)
    yield c
    await c.aclose()


def unique() -> str:
    return uuid.uuid4().hex[:12]


async def test_store_round_trip_with_expiry(client: Redis) -> None:
    store = ValkeyStore(client)
    key = unique()
    assert await store.get(key) is None
    await store.set(key, b"\x00value", 0.2)
    assert await store.get(key) == b"\x00value"
    await asyncio.sleep(0.3)
    assert await store.get(key) is None


async def test_exact_mode_is_one_limit_for_every_process(client: Redis) -> None:
    key = unique()
    a, b = ValkeyRateLimiter(client, exact=True), ValkeyRateLimiter(client, exact=True)
    results = [await (a if i % 2 else b).take(key, 1, 5) for i in range(8)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 3
    assert results[4].remaining == 0
    assert results[-1].retry_after_s > 0


async def test_batched_mode_is_exact_locally_and_charges_what_others_spent(client: Redis) -> None:
    key = unique()
    a, b = ValkeyRateLimiter(client), ValkeyRateLimiter(client)
    # rate 1/s, burst 10; both processes first sync an empty-handed probe so they know the counter.
    await a.take(key, 1, 10)
    await b.take(key, 1, 10)
    await a.sync()
    await b.sync()
    assert sum([(await a.take(key, 1, 10)).allowed for _ in range(20)]) == 9  # exact within a's process
    await a.sync()
    await b.sync()  # b learns a spent 9 (+1 before) and is charged for it
    allowed_b = sum([(await b.take(key, 1, 10)).allowed for _ in range(20)])
    assert allowed_b <= 1, allowed_b


async def test_batched_overshoot_stays_within_the_documented_bound(client: Redis) -> None:
    """N processes, one interval without a sync: at most N x (burst + rate x T) admitted."""
    key = unique()
    limiters = [ValkeyRateLimiter(client, sync_interval_s=0.05) for _ in range(3)]
    admitted = 0
    for limiter in limiters:
        admitted += sum([(await limiter.take(key, 10, 5)).allowed for _ in range(20)])
    assert admitted <= 3 * (5 + 10 * 0.05) + 1
    for limiter in limiters:
        await limiter.sync()
    for limiter in limiters:
        await limiter.sync()
    after = sum([(await limiter.take(key, 10, 5)).allowed for limiter in limiters for _ in range(5)])
    assert after <= 3  # in debt now: the cluster pays back its overshoot


async def test_valkey_down_fails_open_by_default_and_closed_on_request(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = RedisServer(tmp_path_factory.mktemp("redis-down")).start()
    client = connect(server.url, timeout_s=0.2)
    try:
        open_ = ValkeyRateLimiter(client)
        closed = ValkeyRateLimiter(client, fail_open=False)
        exact_open = ValkeyRateLimiter(client, exact=True)
        exact_closed = ValkeyRateLimiter(client, exact=True, fail_open=False)
        for limiter in (open_, closed):
            await limiter.take("k", 100, 100)
            await limiter.sync()
            assert limiter.healthy
        server.stop()
        for limiter in (open_, closed):
            await limiter.take("k", 100, 100)
            await limiter.sync()
            assert not limiter.healthy and limiter.failures == 1
        assert (await open_.take("k", 100, 100)).allowed and open_.failed_open == 1
        refused = await closed.take("k", 100, 100)
        assert not refused.allowed and closed.failed_closed == 1
        assert (await exact_open.take("k", 1, 1)).allowed and exact_open.failed_open == 1
        assert not (await exact_closed.take("k", 1, 1)).allowed and exact_closed.failed_closed == 1
        store = ValkeyStore(client)
        assert await store.get("x") is None and store.failures == 1
    finally:
        server.stop()
        await client.aclose()


async def test_lease_two_contenders_acquire_renew_and_lose_on_expiry(client: Redis) -> None:
    name = unique()
    a = ValkeyLease(client, name, ttl_s=0.3)
    b = ValkeyLease(client, name, ttl_s=0.3)
    assert await a.acquire() and a.held
    assert not await b.acquire() and not b.held
    await asyncio.sleep(0.2)
    assert await a.renew()  # renewed before expiry: still a's
    await asyncio.sleep(0.2)
    assert not await b.acquire()
    assert a.held
    await asyncio.sleep(0.35)  # a stops renewing: the lease expires
    assert not a.held
    assert await b.acquire() and b.held
    assert not await a.renew() and not a.held
    assert not await a.acquire()
    await b.release()
    assert await a.acquire()
    await a.release()


async def test_both_contenders_racing_one_wins(client: Redis) -> None:
    name = unique()
    contenders = [ValkeyLease(client, name, ttl_s=5) for _ in range(5)]
    won = await asyncio.gather(*(c.acquire() for c in contenders))
    assert sum(won) == 1
