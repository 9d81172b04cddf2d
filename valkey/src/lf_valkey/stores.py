"""Valkey implementations (redis-py asyncio; hiredis parses replies when installed). Tests run Debian's
redis-server 7, which speaks the same protocol.

Rate limits, two modes:

- `batched` (default): every process keeps exact local token buckets and, every `sync_interval_s`, sends what it
  spent per key to Valkey in one pipelined round trip (INCRBY + PEXPIRE per key touched). The reply is the
  cluster's running total for each key; what the other processes spent since the last sync is charged to the
  local bucket, which may go into debt (down to -burst). So the hot path never waits on Valkey, and the long-run
  rate of the whole cluster converges on `rate`.

  Overshoot bound: between two syncs each of N processes admits at most what its own bucket holds plus what it
  refills, so in one sync interval T the cluster admits at most N x (burst + rate x T) where an exact limiter
  admits burst + rate x T: the overshoot is at most (N - 1) x (burst + rate x T) per interval, and the debt it
  leaves is paid back in the following intervals (at most one burst of debt per process). With 2 processes,
  rps 100, burst 100, T 0.1 s: at most 110 calls too many, once, then back to 100/s.

- `exact`: one Lua token bucket call (EVALSHA) per request, the same limit everywhere, at the cost of one Valkey
  round trip on the hot path (measured in bench/: see docs/operations.md).

When Valkey is unreachable, the limiter fails open (default: local buckets alone, i.e. per-process limits; in
exact mode every call is allowed) or closed (every call is refused with 429 until Valkey answers again); either
way `failures` counts the failed round trips and `failed_open` / `failed_closed` the calls decided without Valkey.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from lf_core.stores.interface import Decision
from lf_core.stores.local import DEFAULT_MAX_KEYS, Clock, LocalRateLimiter
from lf_core.stores.tokenbucket import decision
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

VALKEY_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

CACHE_PREFIX = "lf:cache:"
RATE_PREFIX = "lf:rl:"
LEASE_PREFIX = "lf:lease:"


def connect(url: str, *, timeout_s: float = 0.25) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://) whose calls give up after `timeout_s`."""
    client: Redis = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return client


class ValkeyStore:
    """The shared tier of the response cache: GET and SET PX, best effort (errors count and read as misses)."""

    def __init__(self, client: Redis, *, prefix: str = CACHE_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self.failures = 0

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.client.get(self.prefix + key)
        except VALKEY_ERRORS:
            self.failures += 1
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self.client.set(self.prefix + key, value, px=max(1, round(ttl_s * 1000)))
        except VALKEY_ERRORS:
            self.failures += 1


# KEYS[1] bucket; ARGV rate, burst. Time from the server, so every ingestor shares one clock.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(v[1])
local stamp = tonumber(v[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class ValkeyRateLimiter:
    """Token buckets shared by every ingestor through Valkey; see the module docstring for the two modes."""

    def __init__(
        self,
        client: Redis,
        *,
        exact: bool = False,
        sync_interval_s: float = 0.1,
        fail_open: bool = True,
        prefix: str = RATE_PREFIX,
        clock: Clock = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.client = client
        self.exact = exact
        self.sync_interval_s = sync_interval_s
        self.fail_open = fail_open
        self.prefix = prefix
        self.local = LocalRateLimiter(clock=clock, max_keys=max_keys)
        self.healthy = True
        self.failures = 0
        self.failed_open = 0
        self.failed_closed = 0
        self._clock = clock
        self._pending: dict[str, int] = {}
        self._seen: dict[str, tuple[int, float]] = {}  # key -> (cluster total, when we read it)
        self._watch: dict[str, float] = {}  # key -> until when to read its total even if we spend nothing
        self._script = client.register_script(_TAKE)

    async def take(self, key: str, rate: float, burst: int) -> Decision:
        if self.exact:
            return await self._take_exact(key, rate, burst)
        if not self.healthy and not self.fail_open:
            self.failed_closed += 1
            self._pending.setdefault(key, 0)  # so the next sync probes Valkey
            return Decision(False, burst, 0, self.sync_interval_s, self.sync_interval_s)
        result = self.local.take_now(key, rate, burst)
        self._pending[key] = self._pending.get(key, 0) + (1 if result.allowed else 0)
        if not self.healthy:
            self.failed_open += 1
        return result

    async def _take_exact(self, key: str, rate: float, burst: int) -> Decision:
        try:
            allowed, tokens = await self._script(keys=[self.prefix + key], args=[rate, burst])
        except VALKEY_ERRORS:
            self.failures += 1
            if self.fail_open:
                self.failed_open += 1
                return Decision(True, burst, burst - 1, 0.0, 0.0)
            self.failed_closed += 1
            return Decision(False, burst, 0, 1.0, 1.0)
        return decision(bool(allowed), float(tokens), rate, burst)

    async def sync(self) -> None:
        """One round trip: add what this process spent per key, read the totals, charge what others spent."""
        batch, self._pending = self._pending, {}
        now = self._clock()
        for key, until in list(self._watch.items()):  # keep reading what others spend while it matters here
            if until <= now or key not in self.local.buckets:
                del self._watch[key]
            elif key not in batch:
                batch[key] = 0
        if not batch:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, spent in batch.items():
            bucket = self.local.buckets.get(key)
            ttl_ms = 60_000 if bucket is None else max(60_000, math.ceil(bucket.burst / bucket.rate * 2000))
            pipe.incrby(self.prefix + key, spent)
            pipe.pexpire(self.prefix + key, ttl_ms)
        try:
            replies: list[Any] = await pipe.execute()
        except VALKEY_ERRORS as exc:
            self.failures += 1
            if self.healthy:
                log.warning("rate limit sync failed", extra={"fields": {"error": repr(exc)}})
            self.healthy = False
            return  # what was spent in this interval is not replayed later: it would charge the others late
        if not self.healthy:
            log.info("rate limit sync recovered")
        self.healthy = True
        now = self._clock()
        for (key, spent), total in zip(batch.items(), replies[::2], strict=True):
            self._charge(key, spent, int(total), now)
            if spent:
                bucket = self.local.buckets.get(key)
                if bucket is not None:
                    self._watch[key] = now + bucket.burst / bucket.rate + self.sync_interval_s
        if len(self._seen) > 2 * self.local.max_keys:
            self._seen = {k: v for k, v in self._seen.items() if k in self.local.buckets}

    def _charge(self, key: str, spent: int, total: int, now: float) -> None:
        last = self._seen.get(key)
        self._seen[key] = (total, now)
        bucket = self.local.buckets.get(key)
        if last is None or bucket is None:
            return
        last_total, last_time = last
        if now - last_time > bucket.burst / bucket.rate + self.sync_interval_s:
            return  # so long ago that the bucket would have refilled anyway
        others = total - spent - last_total
        if others > 0:  # negative: the counter expired and started over
            bucket.charge(others, now)

    async def run(self) -> None:
        """Sync forever (batched mode); cancel to stop."""
        if self.exact:
            return
        while True:
            await asyncio.sleep(self.sync_interval_s)
            await self.sync()


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ValkeyLease:
    """A lease on `name`: SET NX PX to take it, a compare-and-expire script to renew, compare-and-delete to give
    it up. `held` trusts the lease until the time the call that took or renewed it *started* plus ttl minus
    `margin_s`, so a holder cut off from Valkey stops believing it leads before anyone else can take over."""

    def __init__(
        self,
        client: Redis,
        name: str,
        ttl_s: float,
        *,
        owner: str | None = None,
        margin_s: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.client = client
        self.key = LEASE_PREFIX + name
        self.ttl_s = ttl_s
        self.owner = owner or uuid.uuid4().hex
        self.margin_s = ttl_s * 0.1 if margin_s is None else margin_s
        self._clock = clock
        self._until = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return self._clock() < self._until

    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    async def acquire(self) -> bool:
        started = self._clock()
        try:
            taken = await self.client.set(self.key, self.owner, nx=True, px=self._ttl_ms())
        except VALKEY_ERRORS:
            return self.held
        if taken:
            self._until = started + self.ttl_s - self.margin_s
            return True
        return await self.renew()

    async def renew(self) -> bool:
        started = self._clock()
        try:
            renewed = await self._renew(keys=[self.key], args=[self.owner, self._ttl_ms()])
        except VALKEY_ERRORS:
            return self.held
        if renewed:
            self._until = started + self.ttl_s - self.margin_s
            return True
        self._until = 0.0
        return False

    async def release(self) -> None:
        self._until = 0.0
        try:
            await self._release(keys=[self.key], args=[self.owner])
        except VALKEY_ERRORS:
            pass
