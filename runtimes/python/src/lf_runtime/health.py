"""The replica's readiness endpoint (LF_HEALTH_PORT > 0): `GET /readyz` is 200 only when a call sent now would be
answered, and 503 with the reason otherwise (docs/operations.md, "Runtime settings").

Ready means all of:

- connected to NATS;
- the invoke subscription confirmed by the server: a PING/PONG round trip after the SUB, at start and again after
  every reconnect (the client sends the SUB again on reconnect; the PONG says the server has processed it);
- not draining (SIGTERM, SIGINT or stuck handlers began the stop: the subscription is being removed).

Nothing is done per call: the answer is computed from the replica's state when a probe asks (`Replica.not_ready`).

Why a listener of its own (LF_HEALTH_PORT) and not a path on the `/metrics` listener: every pod needs the probe
while metrics are optional (the operator's LF_RUNTIME_METRICS_PORT may be 0, and then nothing is counted); the
probe's listener starts before NATS is reached, so it can say "connecting", while `/metrics` starts once serving;
the NetworkPolicy opens the metrics port to the scrapers' namespaces, while the probe port needs nobody but the
kubelet; and a probe never waits behind a scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lf_runtime.listener import NOT_FOUND, Answer, listen

READY_PATH = b"/readyz"
READY_BODY = b"ready\n"


def answer(not_ready: Callable[[], str | None], path: bytes) -> Answer:
    """The answer to `GET path`: `/readyz` is 200 `ready`, or 503 with what `not_ready()` says is missing."""
    if path != READY_PATH:
        return NOT_FOUND
    reason = not_ready()
    if reason is None:
        return "200 OK", "text/plain", READY_BODY
    return "503 Service Unavailable", "text/plain", f"not ready: {reason}\n".encode()


async def serve(not_ready: Callable[[], str | None], host: str, port: int) -> asyncio.Server:
    """Start the `/readyz` listener; the caller closes the returned server.

    Raises:
        OSError: host:port cannot be bound.
    """
    return await listen(host, port, lambda path: answer(not_ready, path))
