"""The functions' `rateLimit`s in one ingestor worker: one token per call, for sync calls (`app`) and async
submissions (`asyncapi`) alike, from the same buckets, so submitting async does not bypass a limit."""

from __future__ import annotations

from typing import Any

from lf_core.stores.interface import RateLimiter

from lf_dataplane.calls.replies import Header
from lf_dataplane.http import mapping as hm


class RateLimits:
    """Takes tokens from `limiter` (in-process, or batched / exact through Valkey); `refused` counts the 429s."""

    __slots__ = ("ip_header", "limiter", "refused")

    def __init__(self, limiter: RateLimiter, client_ip_header: str = "") -> None:
        self.limiter = limiter
        self.ip_header = client_ip_header
        self.refused = 0

    async def take(self, scope: Any, headers: Any, target: Any) -> list[Header]:
        """One token of `target`'s rate limit (429 without one); the RateLimit headers of the answer."""
        rate = target.rate
        key = target.rate_key if rate.key == "function" else target.rate_key + self.client_ip(scope, headers)
        decision = await self.limiter.take(key, rate.rps, rate.burst)
        if not decision.allowed:
            self.refused += 1
            raise hm.rate_limited(
                target.label, decision.limit, decision.remaining, decision.reset_s, decision.retry_after_s
            )
        return hm.rate_limit_headers(decision.limit, decision.remaining, decision.reset_s)

    def client_ip(self, scope: Any, headers: Any) -> str:
        if self.ip_header:
            forwarded = headers.get(self.ip_header)
            if forwarded:
                return str(forwarded).rpartition(",")[2].strip()
        client = str(scope.client)
        return client.rpartition(":")[0] or client
