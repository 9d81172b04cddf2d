"""In-process implementations: the `lf dev` default. Their limits hold per ingestor process (each granian worker
is one), so with N workers a function's rate limit admits up to N times its rate; use Valkey for one shared limit.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from lf_core.stores.interface import Decision
from lf_core.stores.tokenbucket import TokenBucket

Clock = Callable[[], float]

DEFAULT_MAX_KEYS = 100_000
"""Buckets kept per process (a client IP each, for `key: ip`): about 100 B each, so ~10 MiB at most."""


class LocalStore:
    """Bytes with expiry, bounded by total size (the oldest written go first); a value over `max_entry_bytes` is
    not stored."""

    def __init__(self, max_bytes: int, max_entry_bytes: int, *, clock: Clock = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.size = 0
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get_now(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            self._drop(key)
            return None
        return item[1]

    async def get(self, key: str) -> bytes | None:
        return self.get_now(key)

    def set_now(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self.max_entry_bytes or ttl_s <= 0:
            return
        self._drop(key)
        self._items[key] = (self._clock() + ttl_s, value)
        self.size += len(value) + len(key)
        while self.size > self.max_bytes and self._items:
            self._drop(next(iter(self._items)))

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.set_now(key, value, ttl_s)

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.size -= len(item[1]) + len(key)

    def __len__(self) -> int:
        return len(self._items)


class LocalRateLimiter:
    """Exact token buckets for this process. At most `max_keys` buckets: beyond, full (idle) buckets go first,
    then the oldest; a dropped bucket starts full again, so the bound trades memory for at most one extra burst."""

    def __init__(self, *, clock: Clock = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.buckets: dict[str, TokenBucket] = {}
        self.max_keys = max_keys
        self._clock = clock

    def bucket(self, key: str, rate: float, burst: int, now: float) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._evict(now)
            bucket = self.buckets[key] = TokenBucket(rate, burst, now)
        elif bucket.rate != rate or bucket.burst != burst:
            bucket.configure(rate, burst)
        return bucket

    def take_now(self, key: str, rate: float, burst: int) -> Decision:
        now = self._clock()
        return self.bucket(key, rate, burst, now).take(now)

    async def take(self, key: str, rate: float, burst: int) -> Decision:
        return self.take_now(key, rate, burst)

    def _evict(self, now: float) -> None:
        full = []
        for key, bucket in self.buckets.items():
            bucket.refill(now)
            if bucket.idle_full:
                full.append(key)
        for key in full:
            del self.buckets[key]
        while len(self.buckets) >= self.max_keys:
            del self.buckets[next(iter(self.buckets))]


@dataclass
class _Holder:
    owner: str
    expires: float


class LocalLeaseBoard:
    """The in-process arbiter: one holder per lease name."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.holders: dict[str, _Holder] = {}


_owner_ids = itertools.count(1)


class LocalLease:
    """A lease on `name` from `board`, held for `ttl_s` unless renewed."""

    def __init__(self, board: LocalLeaseBoard, name: str, ttl_s: float, owner: str | None = None) -> None:
        self.board = board
        self.name = name
        self.ttl_s = ttl_s
        self.owner = owner or f"local-{next(_owner_ids)}"

    @property
    def held(self) -> bool:
        holder = self.board.holders.get(self.name)
        return holder is not None and holder.owner == self.owner and holder.expires > self.board.clock()

    async def acquire(self) -> bool:
        now = self.board.clock()
        holder = self.board.holders.get(self.name)
        if holder is None or holder.expires <= now or holder.owner == self.owner:
            self.board.holders[self.name] = _Holder(self.owner, now + self.ttl_s)
            return True
        return False

    async def renew(self) -> bool:
        if not self.held:
            return False
        self.board.holders[self.name].expires = self.board.clock() + self.ttl_s
        return True

    async def release(self) -> None:
        holder = self.board.holders.get(self.name)
        if holder is not None and holder.owner == self.owner:
            del self.board.holders[self.name]
