"""The ingestor's `Bus`: request-reply over one lean NATS connection (`lf_core.bus.link.NatsConnection`).

Why not nats-py: measured on our 2-core machine (wrk on core 0, ingestor + nats-server + runtime on core 1), the
ingestor spent ~140 µs of CPU per call and the chain reached ~21% of the bare granian canary; a py-spy profile
put 21% of the worker's samples in nats-py's `_flusher` (one socket write per request) and ~7% in the rest of its
request machinery (docs/architecture.md, "Decisions"). The connection itself (handshake, batching writes per loop
turn, keepalive, reconnect) lives in `lf_core.bus.link`, shared with the runtime; this module adds the request
path:

- One wildcard reply subscription `_INBOX.<random>.*`. Each request gets an int token, its future waits in a
  dict, and `lf_native.NatsParser` hands replies back as `(REPLY, token, payload, status)` tuples: no subject
  string, no message object per reply. `lf_native.encode_inbox_pub` builds the PUB in one allocation.
- Tokens are random, 96 bits from os.urandom (`new_token`), never a counter: the replica that answers a request
  sees its reply subject, and with sequential tokens it could publish a forged reply to the next one (another
  tenant's call waiting on the same connection). A reply to a token nobody waits for is dropped. Random ints are
  made in batches (4 KiB of os.urandom at a time), so a token costs a list pop.
- Limits and failures: a payload over the server's `max_payload` is refused before sending (PayloadTooLarge); a
  503 status reply is NoResponders; a timeout (one loop timer per request) is BusTimeout; a send buffer over
  `link.WRITE_BUFFER_HIGH` refuses new requests (BrokerUnavailable); a lost connection fails every pending
  request at once with BrokerUnavailable (a request already sent may still run on a replica: the caller owns
  that ambiguity), then the connection comes back by itself and subscribes its inbox again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import struct
from collections.abc import Callable, Sequence
from typing import Any

from lf_native import encode_hpub, encode_inbox_pub, encode_pub

from lf_core.bus.errors import BrokerUnavailable, BusTimeout, NoResponders, PayloadTooLarge
from lf_core.bus.link import MSG, REPLY, Events, NatsConnection, _Link

StreamCallback = Callable[[str | None, bytes, int, bytes | None], None]
"""`callback(reply, payload, status, raw_headers)` for each message on an `open_stream` subject."""

__all__ = ["NatsRequester"]

STATUS_NO_RESPONDERS = 503
TOKEN_BYTES = 12
"""96 random bits per inbox token."""
_TOKEN_BATCH = 341
"""Tokens drawn at once (4092 bytes of os.urandom)."""
_tokens: list[int] = []


_unpack_96 = struct.Struct("<QI").iter_unpack  # 12 bytes as a 64- and a 32-bit half: faster than int.from_bytes


def new_token() -> int:
    """A random inbox token (96 bits from os.urandom): a reply cannot be aimed at it by guessing."""
    tokens = _tokens
    if not tokens:
        tokens.extend([high << 32 | low for high, low in _unpack_96(os.urandom(TOKEN_BYTES * _TOKEN_BATCH))])
    return tokens.pop()


def _forget_tokens() -> None:
    _tokens.clear()  # a child after fork draws its own: the parent's are not handed out twice


os.register_at_fork(after_in_child=_forget_tokens)


def _ignore(reply: str | None, payload: bytes) -> None:
    """The inbox's messages arrive as REPLY ops, never through a subscription callback."""


class NatsRequester(NatsConnection):
    """`Bus` over one NATS connection that reconnects by itself once `connect()` has succeeded.

    Args:
        servers: `nats://` URLs, tried in order (see `lf_core.bus.link` for credentials).
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
        self.streams: dict[int, StreamCallback] = {}
        """Tokens whose replies keep coming (JetStream pull requests): `callback(reply, payload, status, headers)`;
        the messages a pull delivers arrive under their own subject (MSG ops on the inbox), the status messages
        that end a pull (404, 408, 409) under the token."""
        self.deliveries: StreamCallback | None = None
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
        token = new_token()
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
        for kind, _sid, key, reply, payload, status, headers in events:
            if kind == REPLY:
                future = pending.pop(key, None)
                if future is not None:
                    if future.done():
                        pass
                    elif status == STATUS_NO_RESPONDERS:
                        future.set_exception(NoResponders("no responders"))
                    else:
                        future.set_result(payload)
                elif self.streams:
                    self._stream_reply(key, reply, payload, status, headers)
            elif kind == MSG and self.deliveries is not None:
                self._deliver(reply, payload, headers)
            else:
                link.control(kind, key)

    # -- off the hot path: requests with headers, replies that keep coming --------------------------------------------

    async def request_headers(
        self, subject: str, payload: bytes, headers: Sequence[tuple[str, str]], timeout: float
    ) -> bytes:
        """`request` sent as HPUB with `headers` (a JetStream publish with `Nats-Msg-Id`, a CAS write to a KV)."""
        link = self._link
        if link is None or link.paused:
            raise BrokerUnavailable("not connected to NATS" if link is None else "NATS send buffer full")
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(f"{len(payload)} bytes over the server's max_payload {self.max_payload}")
        token = new_token()
        data = (
            encode_hpub(subject, f"{self.inbox_prefix}{token}", headers, payload)
            if headers
            else (encode_inbox_pub(subject, self.inbox_prefix, token, payload))
        )
        future: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[token] = future
        link.write(data)
        timer = self.loop.call_later(timeout, self._expire, token)
        try:
            return await future
        finally:
            timer.cancel()
            self.pending.pop(token, None)

    def open_stream(self, callback: StreamCallback) -> str:
        """A reply subject whose every message goes to `callback` until `close_stream` (a pull consumer's inbox)."""
        token = new_token()
        self.streams[token] = callback
        self.deliveries = callback  # one pull stream per connection: its messages come without the token
        return f"{self.inbox_prefix}{token}"

    def close_stream(self, subject: str) -> None:
        self.streams.pop(int(subject.rpartition(".")[2]), None)

    def publish_reply(self, subject: str, reply: str, payload: bytes) -> bool:
        """A PUB with a reply subject (a pull request whose messages come to an `open_stream` subject)."""
        link = self._link
        if link is None:
            return False
        link.write(encode_pub(subject, reply, payload))
        return True

    def _deliver(self, reply: str | None, payload: Any, headers: bytes | None) -> None:
        try:
            self.deliveries(reply, payload, 0, headers)  # type: ignore[misc]
        except Exception as exc:  # a bug in the callback must not cost the connection
            self.report(40, "nats_callback_failed", {"error": repr(exc)})

    def _stream_reply(self, key: Any, reply: str | None, payload: Any, status: int, headers: bytes | None) -> None:
        callback = self.streams.get(key)
        if callback is not None:
            try:
                callback(reply, payload, status, headers)
            except Exception as exc:  # a bug in the callback must not cost the connection
                self.report(40, "nats_callback_failed", {"token": key, "error": repr(exc)})

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
