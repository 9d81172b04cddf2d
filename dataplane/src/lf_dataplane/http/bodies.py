"""Reading a request's body from granian's RSGI protocol object: the one place the ingestor reads bodies, for sync
calls (`app`) and async submissions (`asyncapi`) alike, before any gate is taken.

Three bounds, each answered by `mapping`:
- the function's `max_request_bytes`: refused from Content-Length unread (413), or as soon as a stream passes it;
- LF_BODY_TIMEOUT, the time the whole body has to arrive (408 after it): a client that declares ten bytes and
  sends none holds a connection and its reservation for that long, never a concurrency slot, since bodies are read
  before the gates;
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
    budget below a function's limit slows it down instead of refusing it for ever)."""

    __slots__ = ("held", "limit", "refused", "timed_out", "timeout_s")

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self.held = 0
        self.refused = 0
        self.timed_out = 0

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
            self.reserve(declared)
            try:
                async with asyncio.timeout(self.timeout_s):
                    body: bytes = await proto()
            except BaseException as exc:
                self.held -= declared
                if isinstance(exc, TimeoutError):
                    self.timed_out += 1
                    raise body_timeout(self.timeout_s) from None
                raise
            if len(body) != declared:  # a short read (the client went away): hold what there is
                self.held -= declared - len(body)
            return body
        if "transfer-encoding" not in headers and scope.http_version != "2":
            return b""  # HTTP/1.x without Content-Length or Transfer-Encoding has no body
        return await self._stream(proto, limit)

    async def _stream(self, proto: Any, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                async for chunk in proto:
                    self.reserve(len(chunk))
                    size += len(chunk)
                    if size > limit:
                        raise body_too_large(limit)
                    chunks.append(chunk)
        except BaseException as exc:
            self.held -= size
            if isinstance(exc, TimeoutError):
                self.timed_out += 1
                raise body_timeout(self.timeout_s) from None
            raise
        return b"".join(chunks)
