"""In-flight caps with a bounded wait queue: the ingestor's answer to more work than it (or a function) can take.

A `Gate` admits up to `limit` calls at once; more wait first-come first-served in a queue of at most `max_queue`,
each for at most its own timeout. A full queue or an expired wait is refused at once, so memory stays bounded by
limit + max_queue requests, none of which has had its body read while waiting. A finished call hands its slot
straight to the first waiter, so a slot is never lost to a race between a wake-up and a timeout. A function's
cap is a `Gate`; the worker's is a `FairGate`, the same with a cap per namespace and its waiters served
round-robin across namespaces (issue 14: one tenant's burst must not take every slot of a worker).
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


class FairGate:
    """The worker's gate, shared between namespaces: at most `limit` calls at once, and at most `namespace_limit` of
    them from one namespace, so one tenant's burst always leaves the others `limit - namespace_limit` slots.

    Beyond either cap a call waits (up to its timeout) in its namespace's queue; a freed slot goes round-robin to
    the next namespace with a waiter that is under its cap, not to the oldest waiter, so a namespace with a
    thousand waiters and one with a single waiter are served one call each in turn. The queues share `max_queue`:
    when it is full, an arriving call pushes out the newest waiter of the namespace with the most waiters (if that
    namespace would still have more than the newcomer's), so a flood cannot fill the queue against the others.

    The fast path (`try_enter`, `leave` with nobody waiting) is two comparisons and a dict update: O(1). The
    round-robin walk over waiting namespaces runs only when the worker is saturated.
    """

    __slots__ = ("by_namespace", "inflight", "limit", "max_queue", "namespace_limit", "queues", "refused", "waiting")

    def __init__(self, limit: int, max_queue: int, namespace_limit: int = 0) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.namespace_limit = namespace_limit if 0 < namespace_limit else limit
        self.inflight = 0
        self.refused = 0
        self.waiting = 0
        self.by_namespace: dict[str, int] = {}
        """Calls in flight per namespace (0 once a namespace's calls are done)."""
        self.queues: dict[str, deque[asyncio.Future[bool]]] = {}
        """Waiters per namespace, in the order the namespaces are served next (a served one moves to the end)."""

    def try_enter(self, namespace: str) -> bool:
        """Take a slot if the worker and the namespace are under their caps (no await: the hot path).

        Nobody of `namespace` can be waiting then: every freed slot is handed to an eligible waiter at once."""
        if self.inflight < self.limit:
            by_namespace = self.by_namespace
            held = by_namespace.get(namespace, 0)
            if held < self.namespace_limit:
                by_namespace[namespace] = held + 1
                self.inflight += 1
                return True
        return False

    def held(self, namespace: str) -> int:
        return self.by_namespace.get(namespace, 0)

    async def enter(self, namespace: str, timeout_s: float) -> bool:
        """Take a slot, waiting up to `timeout_s`; False (counted in `refused`) when there is no room in the queue,
        the wait ran out or the call was pushed out by another namespace's. Call `leave()` once for every True."""
        if self.try_enter(namespace):
            return True
        if timeout_s <= 0 or self.max_queue <= 0 or (self.waiting >= self.max_queue and not self._push_out(namespace)):
            self.refused += 1
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self.queues.get(namespace)
        if queue is None:
            queue = self.queues[namespace] = deque()
        queue.append(waiter)
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout_s):
                admitted = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                if waiter.result():  # handed a slot just as we gave up: pass it on
                    self.leave(namespace)
            else:
                waiter.cancel()
                self._forget(namespace, waiter)
            if isinstance(exc, TimeoutError):
                self.refused += 1
                return False
            raise
        if not admitted:
            self.refused += 1
        return admitted

    def leave(self, namespace: str) -> None:
        """Give the slot back; with waiters, the freed capacity goes round-robin to the namespaces under their cap."""
        self.by_namespace[namespace] -= 1  # (kept at 0: one entry per namespace seen, no delete and insert per call)
        self.inflight -= 1
        if self.waiting:
            self._dispatch()

    def resize(self, limit: int, max_queue: int, namespace_limit: int = 0) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.namespace_limit = namespace_limit if 0 < namespace_limit else limit
        self._dispatch()

    def _dispatch(self) -> None:
        queues = self.queues
        by_namespace = self.by_namespace
        while self.waiting and self.inflight < self.limit:
            for namespace in queues:
                if by_namespace.get(namespace, 0) < self.namespace_limit:
                    break
            else:
                return  # every waiting namespace is at its cap: the free slots are kept for the others
            queue = queues.pop(namespace)
            waiter = queue.popleft()
            self.waiting -= 1
            if queue:
                queues[namespace] = queue  # to the end of the round
            if waiter.done():
                continue
            by_namespace[namespace] = by_namespace.get(namespace, 0) + 1
            self.inflight += 1
            waiter.set_result(True)

    def _push_out(self, namespace: str) -> bool:
        """Room in a full queue: the newest waiter of the namespace with the most waiters is refused, if it has more
        than `namespace` would have once queued; False when no namespace has."""
        victim = None
        longest = len(self.queues.get(namespace, ())) + 1
        for other, queue in self.queues.items():
            if len(queue) > longest:
                victim, longest = other, len(queue)
        if victim is None:
            return False
        queue = self.queues[victim]
        waiter = queue.pop()
        self.waiting -= 1
        if not queue:
            del self.queues[victim]
        if not waiter.done():
            waiter.set_result(False)
        return True

    def _forget(self, namespace: str, waiter: asyncio.Future[bool]) -> None:
        queue = self.queues.get(namespace)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return  # already taken off by a dispatch or a push-out
        self.waiting -= 1
        if not queue:
            del self.queues[namespace]

    def __repr__(self) -> str:
        return (
            f"FairGate(inflight={self.inflight}/{self.limit}, per namespace {self.namespace_limit}, "
            f"waiting={self.waiting}/{self.max_queue}, namespaces={len(self.by_namespace)})"
        )
