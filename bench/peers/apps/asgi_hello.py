"""The hello a user would write with uvicorn instead: a plain ASGI app, the canary's body and headers.

Loaded by uvicorn with `--app-dir bench/peers/apps --lifespan off`, not imported through the `bench` package (whose
imports the peers' interpreter does not have).
"""

from __future__ import annotations

from typing import Any

BODY = b"Hello, world!\n"
HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(BODY)).encode())]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
BODY_EVENT = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(START)
    await send(BODY_EVENT)
