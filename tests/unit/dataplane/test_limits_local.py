"""Token buckets, the in-process store and lease, over a stepped clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest
from lf_core.stores.local import LocalLease, LocalLeaseBoard, LocalRateLimiter, LocalStore
from lf_core.stores.tokenbucket import TokenBucket, whole_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0).allowed for _ in range(6)] == [True] * 5 + [False]
    denied = bucket.take(0.0)
    assert denied.retry_after_s == pytest.approx(0.1)
    assert denied.remaining == 0 and denied.limit == 5
    assert denied.reset_s == pytest.approx(0.5)
    assert bucket.take(0.1).allowed
    assert not bucket.take(0.1).allowed
    assert bucket.take(10.0).remaining == 4  # refilled to the burst, not beyond


def test_charged_debt_is_bounded_by_one_burst() -> None:
    bucket = TokenBucket(rate=1, burst=3, now=0.0)
    bucket.charge(100, 0.0)
    assert bucket.tokens == -3
    assert not bucket.take(3.5).allowed
    assert bucket.take(4.0).allowed


def test_whole_seconds_rounds_up() -> None:
    assert [whole_seconds(s) for s in (0, 0.01, 1.0, 1.2)] == [0, 1, 1, 2]


async def test_limiter_keys_are_independent_and_exact() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock=clock)
    assert sum([(await limiter.take("a", 2, 2)).allowed for _ in range(10)]) == 2
    assert (await limiter.take("b", 2, 2)).allowed
    clock.now += 0.5
    assert (await limiter.take("a", 2, 2)).allowed
    assert not (await limiter.take("a", 2, 2)).allowed


def test_limiter_memory_is_bounded_idle_buckets_first() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock=clock, max_keys=3)
    limiter.take_now("busy", 1, 5)
    for i in range(10):
        limiter.take_now(f"ip-{i}", 1000, 1)
        clock.now += 0.01
    assert len(limiter.buckets) <= 3
    assert "busy" in limiter.buckets  # not full, so kept while idle ones were dropped


def test_limiter_follows_a_changed_rule() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock=clock)
    limiter.take_now("k", 1, 10)
    assert limiter.take_now("k", 1, 2).remaining == 1


def test_store_expires_and_stays_within_its_size() -> None:
    clock = Clock()
    store = LocalStore(max_bytes=100, max_entry_bytes=40, clock=clock)
    store.set_now("a", b"x" * 30, 1.0)
    assert store.get_now("a") == b"x" * 30
    clock.now += 1.0
    assert store.get_now("a") is None
    store.set_now("big", b"x" * 41, 10)
    assert store.get_now("big") is None
    for i in range(10):
        store.set_now(f"k{i}", b"y" * 30, 10)
    assert store.size <= 100
    assert store.get_now("k9") == b"y" * 30 and store.get_now("k0") is None


async def test_local_lease_one_holder_until_expiry() -> None:
    clock = Clock()
    board = LocalLeaseBoard(clock=clock)
    a, b = LocalLease(board, "cron", 5.0), LocalLease(board, "cron", 5.0)
    assert await a.acquire()
    assert not await b.acquire()
    assert a.held and not b.held
    clock.now += 4
    assert await a.renew()
    clock.now += 4
    assert not await b.acquire()  # renewed: still a's
    clock.now += 2
    assert not a.held
    assert await b.acquire() and b.held
    assert not await a.renew()
    await b.release()
    assert await a.acquire()
