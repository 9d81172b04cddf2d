"""Reading a request's body from granian's RSGI protocol object, within the function's limit: the one place the
ingestor reads bodies, for sync calls (`app`) and async submissions (`asyncapi`) alike. The answers it refuses with
are `mapping`'s.
"""

from __future__ import annotations

from typing import Any

from lf_dataplane.http.mapping import body_too_large, check_content_length


async def read_body(scope: Any, proto: Any, headers: Any, limit: int) -> bytes:
    """The request body; over `limit` it is refused from Content-Length unread, or as soon as a stream passes it."""
    declared = check_content_length(headers.get("content-length"), limit)
    if declared is not None:
        return await proto() if declared else b""
    if "transfer-encoding" not in headers and scope.http_version != "2":
        return b""  # HTTP/1.x without Content-Length or Transfer-Encoding has no body
    chunks: list[bytes] = []
    size = 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
