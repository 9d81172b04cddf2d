"""Reading a request's body from granian's RSGI protocol object: the one place the ingestor reads bodies, for sync
calls (`app`) and async submissions (`asyncapi`) alike, before any gate is taken.

Three bounds, each answered by `mapping`:
- the function's `max_request_bytes`: refused from Content-Length unread (413), or as soon as a stream passes it;
- LF_BODY_TIMEOUT, the time the whole body has to arrive (408 after it, at most a quarter later: see
  `BodyBudget`): a client that declares ten bytes and sends none holds a connection and its reservation for that
  long, never a concurrency slot, since bodies are read before the gates;
- LF_MAX_INFLIGHT_BODY_BYTES, the bytes of bodies one worker holds at once (503 + Retry-After beyond it): a
  declared Content-Length is reserved before the read, a body without one is counted chunk by chunk as it
  arrives. The caller gives `len(body)` back with `release` once it no longer holds the body, whatever happened.

A request without a body (a GET: no Content-Length, no Transfer-Encoding) costs two header lookups, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lf_dataplane.http.mapping import body_budget_exceeded, body_timeout, body_too_large, check_content_length


class BodyBudget:
    """The request bodies one worker holds: `held` bytes of at most `limit` (one body alone may be larger, so a
    budget below a function's limit slows it down instead of refusing it for ever), each read within `timeout_s`.

    The timeout is not a timer per request (`asyncio.timeout` costs ~7 µs a call, as much as the rest of a small
    POST's Python), nor a clock read: a read notes what it waits on in a dict, with the watchdog's tick it began
    in: granian's read future for a body with a Content-Length (its `cancel()` ends just that await; `proto()` must
    return a future, as granian's does), the task for a streamed body. One watchdog task per worker, alive while
    there are reads, ticks every quarter of the timeout and cancels the reads begun five ticks ago or more, which
    answer 408. A stalled body is thus cut between `timeout_s` and 1.25 × `timeout_s` after its read began.
    """

    __slots__ = ("_began", "_expired", "_tick", "_watchdog", "held", "limit", "refused", "timed_out", "timeout_s")

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self.held = 0
        self.refused = 0
        self.timed_out = 0
        self._began: dict[Any, int] = {}
        """What each read waits on (a future, or a streaming read's task) -> the watchdog's tick it began in."""
        self._tick = 0
        self._expired: set[Any] = set()
        self._watchdog: asyncio.Task[None] | None = None

    def reserve(self, size: int) -> None:
        """Count `size` more bytes, or raise 503 when they do not fit (nothing counted then)."""
        held = self.held
        if held + size > self.limit and held:
            self.refused += 1
            raise body_budget_exceeded()
        self.held = held + size

    def release(self, size: int) -> None:
        self.held -= size

    async def read(self, scope: Any, proto: Any, headers: Any, limit: int) -> bytes:
        """The request body, `len(body)` bytes of it reserved here (give them back with `release(len(body))`).

        Raises:
            HttpError: 400/413 for Content-Length, 408 past the body timeout, 503 beyond the budget; on these and
                any other exception (a client gone, a cancelled task) nothing stays reserved.
        """
        declared = check_content_length(headers.get("content-length"), limit)
        if declared is not None:
            if not declared:
                return b""
            held = self.held  # self.reserve(declared), inlined: this is every POST's path
            if held + declared > self.limit and held:
                self.refused += 1
                raise body_budget_exceeded()
            self.held = held + declared
            reading = proto()  # granian: a future, whose cancel() ends this await alone
            began = self._began
            began[reading] = self._tick
            if self._watchdog is None:
                self._start_watchdog()
            try:
                body: bytes = await reading
            except BaseException as exc:
                self.held -= declared
                if reading in self._expired:
                    self._timed_out(reading, exc)
                raise
            finally:
                del began[reading]
            if len(body) != declared:  # a short read (the client went away): hold what there is
                self.held -= declared - len(body)
            return body
        if "transfer-encoding" not in headers and scope.http_version != "2":
            return b""  # HTTP/1.x without Content-Length or Transfer-Encoding has no body
        return await self._stream(proto, limit)

    async def _stream(self, proto: Any, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        task = asyncio.current_task()  # one await per chunk: the watchdog cancels the task
        self._began[task] = self._tick
        if self._watchdog is None:
            self._start_watchdog()
        try:
            async for chunk in proto:
                self.reserve(len(chunk))
                size += len(chunk)
                if size > limit:
                    raise body_too_large(limit)
                chunks.append(chunk)
        except BaseException as exc:
            self.held -= size
            if task in self._expired:
                self._timed_out(task, exc)
            raise
        finally:
            del self._began[task]
        return b"".join(chunks)

    def _start_watchdog(self) -> None:
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_reads())

    def _timed_out(self, reading: Any, exc: BaseException) -> None:
        """Raise the 408 for a read the watchdog cancelled (a task's cancellation taken back; not when someone
        else cancelled the task too: then the caller re-raises `exc`)."""
        self._expired.discard(reading)
        if not isinstance(exc, asyncio.CancelledError):
            return
        if isinstance(reading, asyncio.Task) and reading is asyncio.current_task() and reading.uncancel():
            return
        self.timed_out += 1
        raise body_timeout(self.timeout_s) from None

    async def _watch_reads(self) -> None:
        interval = self.timeout_s / 4
        try:
            while True:  # idle for a whole interval: it ends, and the next read starts another
                await asyncio.sleep(interval)
                if not self._began:
                    return
                self._tick = tick = self._tick + 1
                for reading, began in list(self._began.items()):
                    if tick - began >= 5 and reading not in self._expired:  # at least 4 intervals ago
                        cancel = getattr(reading, "cancel", None)
                        if cancel is not None:  # (a proto() that returns a bare coroutine cannot be cut)
                            self._expired.add(reading)
                            cancel()
        finally:
            self._watchdog = None
