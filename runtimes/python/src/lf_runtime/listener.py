"""The replica's tiny HTTP/1.1 listener, shared by `/metrics` (lf_runtime.metrics) and `/readyz`
(lf_runtime.health): one request per connection, `GET` and `HEAD` only, the answer computed by a plain function
of the path. Not a web framework on purpose: a function's replica must not carry one (a user's requirements may
pin another version of it), and two fixed paths need none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

READ_TIMEOUT_S = 5.0

Answer = tuple[str, str, bytes]
"""(status line, e.g. "200 OK"; content type; body)."""
NOT_FOUND: Answer = ("404 Not Found", "text/plain", b"not found\n")


async def listen(host: str, port: int, answer: Callable[[bytes], Answer]) -> asyncio.Server:
    """Serve `answer(path)` on host:port (path without its query); the caller closes the returned server.

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            else:
                status, ctype, body = answer(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
            )
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
