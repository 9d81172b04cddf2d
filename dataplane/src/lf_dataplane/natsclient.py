"""The ingestor's `Bus`: request-reply over one lean NATS connection (`natsconn.NatsConnection`).

Why not nats-py: measured on our 2-core machine (wrk on core 0, ingestor + nats-server + runtime on core 1), the
ingestor spent ~140 µs of CPU per call and the chain reached ~21% of the bare granian canary; a py-spy profile
put 21% of the worker's samples in nats-py's `_flusher` (one socket write per request) and ~7% in the rest of its
request machinery (DESIGN §7). The connection itself (handshake, batching writes per loop turn, keepalive,
reconnect) lives in `natsconn`, shared with the runtime; this module adds the request path:

- One wildcard reply subscription `_INBOX.<random>.*`. Each request gets an int token, its future waits in a
  dict, and `lf_native.NatsParser` hands replies back as `(REPLY, token, payload, status)` tuples: no subject
  string, no message object per reply. `lf_native.encode_inbox_pub` builds the PUB in one allocation.
- Limits and failures: a payload over the server's `max_payload` is refused before sending (PayloadTooLarge); a
  503 status reply is NoResponders; a timeout (one loop timer per request) is BusTimeout; a send buffer over
  `natsconn.WRITE_BUFFER_HIGH` refuses new requests (BrokerUnavailable); a lost connection fails every pending
  request at once with BrokerUnavailable (a request already sent may still run on a replica: the caller owns
  that ambiguity), then the connection comes back by itself and subscribes its inbox again.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from lf_native import encode_inbox_pub

from lf_dataplane.forwarding import BrokerUnavailable, BusTimeout, NoResponders, PayloadTooLarge
from lf_dataplane.natsconn import REPLY, AuthorizationError, Events, NatsConnection, Server, _Link

__all__ = ["AuthorizationError", "NatsRequester", "Server"]

STATUS_NO_RESPONDERS = 503


def _ignore(reply: str | None, payload: bytes) -> None:
    """The inbox's messages arrive as REPLY ops, never through a subscription callback."""


class NatsRequester(NatsConnection):
    """`Bus` over one NATS connection that reconnects by itself once `connect()` has succeeded.

    Args:
        servers: `nats://` URLs, tried in order (see `natsconn` for credentials).
        name: the connection name the server shows.
        ping_interval: seconds between our PINGs.
        max_pings_out: unanswered PINGs after which the connection is dropped as stale.
        connect_timeout: seconds for the TCP connect and for each step of the handshake.
    """

    def __init__(
        self,
        servers: list[str],
        *,
        name: str = "lf-ingestor",
        ping_interval: float = 10.0,
        max_pings_out: int = 2,
        connect_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            servers, name=name, ping_interval=ping_interval, max_pings_out=max_pings_out,
            connect_timeout=connect_timeout, inbox_prefix=f"_INBOX.{secrets.token_hex(11)}.",
        )  # fmt: skip
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self._next_token = 1
        self.subscribe(self.inbox_prefix + "*", _ignore)

    # -- the hot path -----------------------------------------------------------------------------------------------

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        link = self._link
        if link is None or link.paused:
            raise BrokerUnavailable("not connected to NATS" if link is None else "NATS send buffer full")
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(f"{len(payload)} bytes over the server's max_payload {self.max_payload}")
        if timeout <= 0:
            raise BusTimeout(subject)
        token = self._next_token
        self._next_token = token + 1
        data = encode_inbox_pub(subject, self.inbox_prefix, token, payload)
        loop = self.loop
        future: asyncio.Future[bytes] = loop.create_future()
        pending = self.pending
        pending[token] = future
        link.write(data)
        timer = loop.call_later(timeout, self._expire, token)
        try:
            return await future
        finally:
            timer.cancel()
            pending.pop(token, None)

    def on_ops(self, link: _Link, events: Events) -> None:
        pending: dict[Any, Any] = self.pending
        for kind, _sid, key, _reply, payload, status, _headers in events:
            if kind == REPLY:
                future = pending.pop(key, None)
                if future is not None and not future.done():
                    if status == STATUS_NO_RESPONDERS:
                        future.set_exception(NoResponders("no responders"))
                    else:
                        future.set_result(payload)
            else:
                link.control(kind, key)

    def _expire(self, token: int) -> None:
        future = self.pending.pop(token, None)
        if future is not None and not future.done():
            future.set_exception(BusTimeout("no reply in time"))

    # -- losing the connection --------------------------------------------------------------------------------------

    def lost(self, error: BrokerUnavailable) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
