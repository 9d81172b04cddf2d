"""Token-bucket arithmetic, pure: the clock is an argument, so tests step time instead of sleeping."""

from __future__ import annotations

import math

from lf_core.stores.interface import Decision


class TokenBucket:
    """`rate` tokens per second up to `burst`; starts full. `tokens` may go negative (down to -burst) when a
    cluster sync charges this bucket for what other processes spent (see lf_valkey.stores)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            tokens = self.tokens + elapsed * self.rate
            self.tokens = tokens if tokens < self.burst else float(self.burst)
            self.stamp = now

    def take(self, now: float) -> Decision:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return decision(True, self.tokens, self.rate, self.burst)
        return decision(False, self.tokens, self.rate, self.burst)

    def charge(self, spent: float, now: float) -> None:
        """Take `spent` tokens that others used (cluster sync); the debt is bounded by one bucket."""
        self.refill(now)
        self.tokens = max(self.tokens - spent, -float(self.burst))

    def configure(self, rate: float, burst: int) -> None:
        if rate != self.rate or burst != self.burst:
            self.rate = rate
            self.burst = burst
            self.tokens = min(self.tokens, float(burst))

    @property
    def idle_full(self) -> bool:
        return self.tokens >= self.burst


def decision(allowed: bool, tokens: float, rate: float, burst: int) -> Decision:
    """The Decision for a bucket left with `tokens` after the call."""
    remaining = max(0, int(tokens))
    reset_s = max(0.0, (burst - tokens) / rate)
    retry_after_s = 0.0 if allowed else (1.0 - tokens) / rate
    return Decision(allowed, burst, remaining, reset_s, retry_after_s)


def whole_seconds(seconds: float) -> int:
    """Header value for Retry-After / RateLimit-Reset: whole seconds, rounded up, at least 1 when positive."""
    return max(1, math.ceil(seconds)) if seconds > 0 else 0
