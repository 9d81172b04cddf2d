"""The replica's NATS connection: the narrow interface serving needs, and connecting within LF_CONNECT_TIMEOUT.

`nats://` servers (the usual case, and the only one `lf dev` and the operator configure) get the lean
same-thread connection shared with the ingestor (`lf_core.bus.link`): no nats-py on the hot path and none
imported, which keeps a replica's start-up and RSS small. A `tls://`, `ws://` or `wss://` URL, which that
connection does not speak, falls back to nats-py behind the same interface (`lf_runtime.natspy`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol
from urllib.parse import urlsplit

from lf_core.bus.link import MessageCallback, NatsConnection, Report

from lf_runtime.settings import Settings, redacted_nats_url

HANDSHAKE_TIMEOUT_S = 2.0
"""Per server and step of the handshake; LF_CONNECT_TIMEOUT bounds the whole of connecting."""


class Connection(Protocol):
    """What a replica needs from NATS (see `lf_core.bus.link.NatsConnection` for the semantics)."""

    @property
    def max_payload(self) -> int: ...
    @property
    def connected(self) -> bool: ...
    async def connect(self) -> None: ...
    def subscribe(self, subject: str, callback: MessageCallback, queue: str = "") -> int: ...
    def publish(self, subject: str, payload: bytes) -> bool: ...
    async def flush(self, timeout: float | None = None) -> None: ...
    async def drain(self, sid: int, timeout: float | None = None) -> None: ...
    async def close(self) -> None: ...


def open_connection(settings: Settings, report: Report) -> Connection:
    """A connection to the servers of `settings`, not connected yet; `report(level, event, fields)` gets its
    events (disconnects, reconnects, server errors)."""
    urls = [url.strip() for url in settings.nats_url.split(",")]
    name = f"lf-runtime {settings.namespace}.{settings.function}"
    if all(urlsplit(url).scheme == "nats" for url in urls):
        timeout = min(HANDSHAKE_TIMEOUT_S, settings.connect_timeout_s) or HANDSHAKE_TIMEOUT_S
        return NatsConnection(urls, name=name, connect_timeout=timeout, report=report)
    from lf_runtime.natspy import NatsPyConnection

    return NatsPyConnection(urls, name=name, report=report)


async def connect(conn: Connection, settings: Settings) -> None:
    """Connect, retrying for `connect_timeout_s`; once connected, the connection reconnects by itself for ever.

    Raises:
        ConnectionError: no server accepted within the time.
        lf_core.bus.errors.AuthorizationError: every server refused the credentials (no point retrying).
    """
    try:
        await asyncio.wait_for(conn.connect(), settings.connect_timeout_s)
    except TimeoutError:
        where, window = redacted_nats_url(settings.nats_url), settings.connect_timeout_s
        raise ConnectionError(f"no NATS server reachable at {where} within {window:g}s") from None
