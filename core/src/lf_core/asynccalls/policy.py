"""What to do with an async call's attempt (`Function.spec.async`, docs/operations.md "Async calls"): pure, no clock
of its own.

- Retryable: 408, 429 and 5xx answers, a handler that raised (500), a timeout (504), a busy or crashed replica
  (503 / 502) and a replica that died mid-call (redelivery after the ack wait). Any other 4xx is the caller's
  fault: retrying cannot help, so it goes to the dead letters after one attempt.
- Backoff before attempt n+1: `backoff * 2**(n-1)`, capped at `max_backoff`, plus up to `jitter` of it
  (never less than the schedule: the spec promises attempts at least `backoff` apart).
- At most `max_attempts` in total (spec `retries` + 1, default 3), and none started past `max_age` after the
  call was accepted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal, NamedTuple

import msgspec

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 300.0
DEFAULT_JITTER = 0.2


class AsyncPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S
    jitter: float = DEFAULT_JITTER
    max_age_s: float | None = None
    result_ttl_s: float = 24 * 3600.0


def is_retryable(status: int) -> bool:
    """408, 429 and every 5xx retry; 2xx/3xx succeeded, and any other 4xx will fail the same way again."""
    return status == 408 or status == 429 or status >= 500


def is_success(status: int) -> bool:
    return status < 400


def backoff_s(attempt: int, policy: AsyncPolicy, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
    base = min(policy.backoff_s * 2.0 ** max(0, attempt - 1), policy.max_backoff_s)
    return base * (1.0 + policy.jitter * rand())


class Decision(NamedTuple):
    action: Literal["run", "done", "retry", "dead"]
    delay_s: float = 0.0
    reason: str = ""


def before_attempt(attempt: int, submitted_at: float, now: float, policy: AsyncPolicy) -> Decision:
    """May delivery number `attempt` run? A delivery past `max_attempts` is a replica that died on the last one."""
    if attempt > policy.max_attempts:
        return Decision("dead", reason=f"the replica stopped during attempt {attempt - 1} of {policy.max_attempts}")
    if policy.max_age_s is not None and now - submitted_at > policy.max_age_s:
        return Decision("dead", reason=f"older than maxAge ({policy.max_age_s:g} s) before attempt {attempt}")
    return Decision("run")


def after_attempt(
    attempt: int,
    status: int,
    submitted_at: float,
    now: float,
    policy: AsyncPolicy,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What follows attempt `attempt` that answered `status` (the runtime's error kinds already mapped to theirs)."""
    if is_success(status):
        return Decision("done")
    if not is_retryable(status):
        return Decision("dead", reason=f"status {status} is not retryable")
    if attempt >= policy.max_attempts:
        return Decision("dead", reason=f"status {status} on the last of {policy.max_attempts} attempts")
    delay = backoff_s(attempt, policy, rand)
    if policy.max_age_s is not None and now + delay - submitted_at > policy.max_age_s:
        return Decision("dead", reason=f"status {status}; the next attempt would pass maxAge ({policy.max_age_s:g} s)")
    return Decision("retry", delay_s=delay, reason=f"status {status}")


class Clock:
    """An injectable clock for the schedule's tests."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def schedule(
    policy: AsyncPolicy, clock: Callable[[], float], statuses: list[int], rand: Callable[[], float]
) -> list[tuple[float, Decision]]:
    """Play a call through `statuses` (one per attempt) on `clock`: when each attempt started and what followed.
    Used by tests and by `lf dlq show` to explain a policy."""
    submitted = clock()
    out: list[tuple[float, Decision]] = []
    attempt = 1
    for status in statuses:
        before = before_attempt(attempt, submitted, clock(), policy)
        if before.action == "dead":
            out.append((clock(), before))
            break
        started = clock()
        decision = after_attempt(attempt, status, submitted, clock(), policy, rand)
        out.append((started, decision))
        if decision.action != "retry":
            break
        if isinstance(clock, Clock):
            clock.advance(decision.delay_s)
        attempt += 1
    return out
