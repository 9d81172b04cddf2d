"""In-flight caps with a bounded wait queue: the ingestor's answer to more work than it (or a function) can take.

A `Gate` admits up to `limit` calls at once; more wait first-come first-served in a queue of at most `max_queue`,
each for at most its own timeout. A full queue or an expired wait is refused at once, so memory stays bounded by
limit + max_queue requests, none of which has had its body read while waiting. A finished call hands its slot
straight to the first waiter, so a slot is never lost to a race between a wake-up and a timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Gate:
    __slots__ = ("inflight", "limit", "max_queue", "refused", "waiters")

    def __init__(self, limit: int, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.inflight = 0
        self.refused = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody waits for it (no await: the hot path)."""
        if self.inflight < self.limit and not self.waiters:
            self.inflight += 1
            return True
        return False

    async def enter(self, timeout_s: float) -> bool:
        """Take a slot, waiting up to `timeout_s` in the queue; False (counted in `refused`) when the queue is
        full or the wait ran out. Call `leave()` once for every True."""
        if self.try_enter():
            return True
        if len(self.waiters) >= self.max_queue or timeout_s <= 0:
            self.refused += 1
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # handed a slot just as we gave up: pass it on
                self.leave()
            else:
                waiter.cancel()
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass
            if isinstance(exc, TimeoutError):
                self.refused += 1
                return False
            raise
        return True

    def leave(self) -> None:
        """Give the slot back, or hand it to the first live waiter."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter: inflight is unchanged
                return
        self.inflight -= 1

    def resize(self, limit: int, max_queue: int) -> None:
        """New limits from a route change; waiters are let in if the new limit leaves room."""
        self.limit = limit
        self.max_queue = max_queue
        while self.waiters and self.inflight < self.limit:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.inflight += 1
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"Gate(inflight={self.inflight}/{self.limit}, waiting={len(self.waiters)}/{self.max_queue})"
