"""Forwarding a call to a function's replicas: the narrow `Bus` the ingestor depends on, its nats-py
implementation, and `invoke`, which sends one call and retries "busy" answers until the deadline.

The boundary is `Bus.request(subject, payload, timeout) -> bytes`, raising only the errors defined here, so a
faster client (one reply inbox, a dict of futures, writes batched per loop turn; DESIGN §7) can replace
`NatsBus` without touching the HTTP side.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import nats.errors
from lf_native import EnvelopeError, ResponseEnvelope, decode_response
from nats.aio.client import Client as NatsClient

from lf_dataplane.protocol import ErrorKind

log = logging.getLogger(__name__)

GRACE_S = 0.25
"""How long past the call's deadline the ingestor still waits for a reply. The runtime answers its own 504 up to
50 ms before the deadline (docs/protocol.md, "Timeouts"), so only a lost or stuck replica runs into this."""

BUSY_BACKOFF_FIRST_S = 0.002
BUSY_BACKOFF_MAX_S = 0.05


class BusError(Exception):
    """A request that got no answer from a replica."""


class NoResponders(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """No replica subscribes to the subject."""


class BusTimeout(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """No reply within the timeout."""


class BrokerUnavailable(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """Not connected to the broker (or the connection failed while sending)."""


class PayloadTooLarge(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """The request is larger than the broker's max_payload."""


class BadResponse(Exception):  # noqa: N818 (named like lf_native's RouteNotFound)
    """A reply that is not a well-formed response envelope."""


class Bus(Protocol):
    """What forwarding needs from a message broker."""

    @property
    def connected(self) -> bool: ...

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Send `payload` to one subscriber of `subject`; return its reply.

        Raises:
            NoResponders, BusTimeout, BrokerUnavailable, PayloadTooLarge.
        """
        ...


async def invoke(
    bus: Bus,
    subject: str,
    encode: Callable[[int], bytes],
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ResponseEnvelope:
    """Send one call and return the replica's response envelope.

    A "busy" answer is retried, with a short randomized backoff, until the deadline: the queue group hands each
    retry to any replica, and another may be free. If the deadline passes first, the last busy envelope is
    returned for the caller to answer 503.

    Args:
        bus: the broker.
        subject: the function's invoke subject.
        encode: builds the request envelope for a budget in milliseconds (called again for each retry).
        deadline: `clock()` value by which the call must be answered.

    Raises:
        BusError: no reply (no responders, timeout, broker down, payload too large).
        BadResponse: the reply is not a response envelope.
    """
    backoff = BUSY_BACKOFF_FIRST_S
    busy: ResponseEnvelope | None = None
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            if busy is not None:
                return busy
            raise BusTimeout(subject)
        reply = await bus.request(subject, encode(int(remaining * 1000)), remaining + GRACE_S)
        try:
            response = decode_response(reply)
        except EnvelopeError as exc:
            raise BadResponse(str(exc)) from None
        if response.error_kind != ErrorKind.BUSY:
            return response
        busy = response
        pause = min(backoff * (0.5 + random.random()), deadline - clock())  # noqa: S311 (jitter, not crypto)
        if pause > 0:
            await sleep(pause)
        backoff = min(backoff * 2, BUSY_BACKOFF_MAX_S)


_DISCONNECTED = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)


class NatsBus:
    """`Bus` over one nats-py connection, which reconnects forever in the background once connected.

    nats-py's `request` costs 30-40 µs of the ingestor's time per call (DESIGN §7); it is the first thing to
    replace when the ingestor is the bottleneck.
    """

    def __init__(self, servers: list[str], *, name: str = "lf-ingestor") -> None:
        self.servers = servers
        self.name = name
        self.nc = NatsClient()
        self._closing = False

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def connect(self) -> NatsClient:
        """Connect, trying until the broker answers (with `max_reconnect_attempts=-1` nats-py retries the first
        connect forever too); meanwhile the ingestor serves /healthz and answers 503 on /readyz."""
        await self.nc.connect(
            servers=self.servers,
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        return self.nc

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        nc = self.nc
        if not nc.is_connected:
            raise BrokerUnavailable("not connected to NATS")
        try:
            msg = await nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoResponders(subject) from None
        except nats.errors.TimeoutError:
            raise BusTimeout(subject) from None
        except nats.errors.MaxPayloadError:
            raise PayloadTooLarge(subject) from None
        except _DISCONNECTED as exc:
            raise BrokerUnavailable(repr(exc)) from None
        return msg.data

    async def close(self) -> None:
        """Drain the connection (finishing what is in flight) or close it if it is down."""
        nc = self.nc
        self._closing = True
        if nc.is_closed:
            return
        if nc.is_connected:
            await nc.drain()
        else:
            await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats error", extra={"fields": {"error": repr(exc)}})

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("nats disconnected")

    async def _on_reconnected(self) -> None:
        url = self.nc.connected_url
        log.info("nats reconnected", extra={"fields": {"url": url.netloc if url else ""}})
