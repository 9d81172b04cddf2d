"""The narrow protocols the ingestor (and later the cron scheduler) depend on; no Valkey types leak through."""

from __future__ import annotations

from typing import Protocol


class Decision:
    """A rate limiter's answer: allowed or not, and what the RateLimit-* headers should say."""

    __slots__ = ("allowed", "limit", "remaining", "reset_s", "retry_after_s")

    def __init__(self, allowed: bool, limit: int, remaining: int, reset_s: float, retry_after_s: float) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s
        """Seconds until the bucket is full again."""
        self.retry_after_s = retry_after_s
        """Seconds until one more call would be allowed (0 when allowed)."""

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining}, "
            f"reset_s={self.reset_s:g}, retry_after_s={self.retry_after_s:g})"
        )


class Store(Protocol):
    """A byte-value store with expiry: the shared tier of the response cache."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...


class RateLimiter(Protocol):
    """Token buckets by key: `rate` tokens per second, at most `burst` stored; each call takes one."""

    async def take(self, key: str, rate: float, burst: int) -> Decision: ...


class Lease(Protocol):
    """One holder at a time among all contenders for a name, for `ttl` unless renewed; lost on expiry."""

    @property
    def held(self) -> bool:
        """True while this contender holds the lease (by its own clock, with a safety margin)."""
        ...

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or renew it if we do); True when we hold it afterwards."""
        ...

    async def renew(self) -> bool:
        """Extend our lease; False if it expired and someone else (or nobody) holds it now."""
        ...

    async def release(self) -> None:
        """Give the lease up if we hold it."""
        ...
