"""Invoking a function over the request/reply subject its replicas serve (`lf.invoke.{ns}.{fn}`): the narrow `Bus`
its callers depend on and `invoke`, which sends one call and (for a sync call) retries "busy" answers until the
deadline. One copy for the two callers: the ingestor (sync calls) and the dispatcher (async calls, which take a
busy answer back as back-pressure instead: `retry_busy=False`).

The boundary is `Bus.request(subject, payload, timeout) -> bytes`, raising only the errors of
`lf_core.bus.errors`; the implementation is `lf_core.bus.requester.NatsRequester` (one reply inbox, a dict of
futures, writes batched per loop turn; docs/performance.md), and tests pass fakes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from lf_native import EnvelopeError, ResponseEnvelope, decode_response

from lf_core.bus.errors import BusTimeout
from lf_core.bus.jetstream import Headers
from lf_core.contract.protocol import ErrorKind

log = logging.getLogger(__name__)

GRACE_S = 0.25
"""How long past the call's deadline the caller still waits for a reply. The runtime answers its own 504 up to
50 ms before the deadline (docs/protocol.md, "Timeouts"), so only a lost or stuck replica runs into this."""

BUSY_BACKOFF_FIRST_S = 0.002
BUSY_BACKOFF_MAX_S = 0.05
BUSY_RETRY_MIN_S = 0.01
"""A busy call is not retried with less time left than this: a replica could only answer it "no time left"
(504), which would hide that every replica was busy (503)."""


class BadResponse(Exception):  # noqa: N818 (named like lf_native's RouteNotFound)
    """A reply that is not a well-formed response envelope."""


class Bus(Protocol):
    """What a caller needs from a message broker: requests, with headers for JetStream."""

    @property
    def connected(self) -> bool: ...

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Send `payload` to one subscriber of `subject`; return its reply.

        Raises:
            NoResponders, BusTimeout, BrokerUnavailable, PayloadTooLarge.
        """
        ...

    async def request_headers(self, subject: str, payload: bytes, headers: Headers, timeout: float) -> bytes:
        """The same with NATS headers: the JetStream API calls of the async endpoints (`lf_core.bus.jetstream`)."""
        ...


async def invoke(
    bus: Bus,
    subject: str,
    encode: Callable[[int], bytes],
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    retry_busy: bool = True,
) -> ResponseEnvelope:
    """Send one call and return the replica's response envelope.

    A "busy" answer is retried, with a short randomized backoff, until the deadline: the queue group hands each
    retry to any replica, and another may be free. If the deadline passes first, the last busy envelope is
    returned for the caller to answer 503. With `retry_busy` False the first busy envelope is returned at once.

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
        if busy is not None and remaining < BUSY_RETRY_MIN_S:
            return busy
        if remaining <= 0:
            raise BusTimeout(subject)
        reply = await bus.request(subject, encode(int(remaining * 1000)), remaining + GRACE_S)
        try:
            response = decode_response(reply)
        except EnvelopeError as exc:
            raise BadResponse(str(exc)) from None
        if response.error_kind != ErrorKind.BUSY or not retry_busy:
            return response
        busy = response
        pause = min(backoff * (0.5 + random.random()), deadline - clock())  # noqa: S311 (jitter, not crypto)
        if pause > 0:
            await sleep(pause)
        backoff = min(backoff * 2, BUSY_BACKOFF_MAX_S)
