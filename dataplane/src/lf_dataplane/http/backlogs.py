"""The cap on a namespace's async backlog: async calls accepted and not finished (LF_NAMESPACE_ASYNC_BACKLOG).

The count is the broker's, not ours: the calls of the namespace that LF_ASYNC holds (`streams.queued_in_namespace`;
a call leaves the work-queue stream when it succeeded, went to LF_DEAD or was cancelled), so every ingestor worker
and replica sees the same number, and one that restarts forgets nothing. Asking costs the broker about 1 ms per
thousand queued calls, so a worker asks at most every `refresh_s` per namespace (one question in flight; a flood
of submissions waits on the same answer) and in between adds the submissions it let through itself. The cap
therefore holds exactly within one worker; all workers together may pass it by what the others accept within one
refresh interval. A JetStream per-subject limit cannot do this: each call has a subject of its own.

When the broker cannot answer, the check lets the call through (the publish that follows fails the same way and
answers 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from lf_dataplane.http import mapping as hm

log = logging.getLogger(__name__)

REFRESH_S = 0.25


class _Seen:
    __slots__ = ("at", "count")

    def __init__(self, count: int, at: float) -> None:
        self.count = count
        self.at = at


class Backlogs:
    """`check(namespace)` before accepting an async call: 429 once the namespace has `cap` calls (0: no cap)."""

    def __init__(
        self,
        count: Callable[[str], Awaitable[int]],
        cap: int,
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = count
        self.cap = cap
        self.refresh_s = refresh_s
        self.refused = 0
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._asking: dict[str, asyncio.Future[_Seen]] = {}

    async def check(self, namespace: str) -> None:
        """Count one more call of `namespace`, or raise 429 naming the cap when it has `cap` already."""
        if self.cap <= 0:
            return
        seen = self._seen.get(namespace)
        if seen is None or self._clock() - seen.at >= self.refresh_s:
            seen = await self._ask(namespace)
        if seen.count >= self.cap:
            self.refused += 1
            raise hm.async_backlog_full(namespace, self.cap)
        seen.count += 1  # ours until the next answer counts it (or not, if its publish fails: cautious)

    async def _ask(self, namespace: str) -> _Seen:
        asking = self._asking.get(namespace)
        if asking is None:
            asking = self._asking[namespace] = asyncio.ensure_future(self._read(namespace))
            asking.add_done_callback(lambda _: self._asking.pop(namespace, None))
        return await asyncio.shield(asking)

    async def _read(self, namespace: str) -> _Seen:
        try:
            count = await self.count(namespace)
        except Exception as exc:
            fields = {"namespace": namespace, "error": repr(exc)}
            log.warning("cannot count the async backlog", extra={"fields": fields})
            old = self._seen.get(namespace)
            count = old.count if old is not None else 0
        seen = self._seen[namespace] = _Seen(count, self._clock())
        return seen
