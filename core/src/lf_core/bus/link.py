"""One NATS connection on the running event loop: what the ingestor's requester and the runtime's subscriber share.

Why not nats-py: on our 2-core bench the ingestor spent 21% of its samples in nats-py's `_flusher` (one socket
write per request) and the runtime a quarter of its samples in the same flusher, plus 20% in its read loop and
per-subscription queue. A minimal same-thread client measured about twice nats-py's throughput, and a Rust
client on its own threads less than nats-py (docs/architecture.md, "Budgets" and "Decisions"). So this stays on
the running loop (uvloop), with native code only as a sans-IO codec on the loop's thread (`lf_native.NatsParser`,
`encode_pub`, ...):

- One TCP connection at a time, an `asyncio.Protocol`; no threads, no tasks per message.
- Handshake: INFO, CONNECT, every live subscription's SUB, then PING → PONG, so a caller that awaited
  `connect()` knows the server has its subscriptions.
- Messages: `subscribe(subject, callback, queue)` returns a sid; each MSG calls `callback(reply, payload)` on
  the loop, in arrival order, from the socket's read callback (no message object, no queue, no task). A message
  on the connection's inbox (`inbox_prefix`) comes back as a REPLY op that a subclass handles (`NatsRequester`).
- Writes go to a list flushed once per loop turn (`loop.call_soon`): everything published in one turn costs one
  socket write.
- `flush()` is a PING/PONG round trip: when it returns, the server processed every command sent before it and
  every message it sent before its PONG went to its callback. `drain(sid)` is UNSUB plus that round trip.
- Keepalive: PINGs from the server are answered; ours go out every `ping_interval` and the connection is dropped
  after `max_pings_out` unanswered (a broker that hangs).
- A lost connection is reported, a subclass hook runs (the requester fails what is pending), and the client
  reconnects through the server list with exponential backoff and jitter, subscribing again. What is published
  while disconnected is dropped (`publish` returns False): a reply sent then could reach nobody anyway.

Supported: `nats://` URLs with `user:password@` or `token@` credentials (comma-separated list, as LF_NATS_URL
holds them); servers the cluster announces in INFO `connect_urls` join the list (with the credentials of the
server that announced them). Not supported: TLS, websockets, nkeys/JWT credentials, and acting on lame-duck mode
(INFO `ldm` is reported; messages keep flowing until the server closes the connection, then the usual reconnect
applies).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
from collections.abc import Callable
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

from lf_native import NatsParser, NatsProtocolError, encode_connect, encode_pub, encode_sub, encode_unsub

from lf_core.bus.errors import AuthorizationError, BrokerUnavailable, PayloadTooLarge

log = logging.getLogger(__name__)

REPLY, MSG = NatsParser.REPLY, NatsParser.MSG
PING, PONG, INFO, ERR = NatsParser.PING, NatsParser.PONG, NatsParser.INFO, NatsParser.ERR
PING_BYTES = b"PING\r\n"
PONG_BYTES = b"PONG\r\n"
WRITE_BUFFER_HIGH = 64 * 1024 * 1024
"""Past this many bytes waiting in the socket's send buffer the link counts as `paused` (see NatsRequester)."""
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 2.0

Events = list[tuple[int, int, Any, str | None, bytes | None, int, bytes | None]]
MessageCallback = Callable[[str | None, bytes], None]
"""`callback(reply, payload)`: called on the loop for each message of a subscription (what it raises is
reported, not propagated)."""
Report = Callable[[int, str, dict[str, Any]], None]
"""`report(level, event, fields)`: connection events (`nats_disconnected`, ...) at `logging` levels."""


def log_report(level: int, event: str, fields: dict[str, Any]) -> None:
    """The default `Report`: the module's `logging` logger, event `nats_disconnected` as "nats disconnected"."""
    log.log(level, event.replace("_", " "), extra={"fields": fields})


class Server(NamedTuple):
    """One broker address with the credentials to send it. (A NamedTuple rather than a frozen dataclass: the
    runtime imports this module at start-up, and a dataclass costs a millisecond to define.)"""

    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def parse(cls, url: str) -> Server:
        """`nats://[user:password@|token@]host[:port]` (the scheme may be omitted)."""
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.scheme != "nats":
            raise ValueError(f"unsupported NATS URL scheme {parts.scheme!r} in {url!r} (only nats://)")
        if not parts.hostname:
            raise ValueError(f"no host in NATS URL {url!r}")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if user is not None and password is None:
            return cls(parts.hostname, parts.port or 4222, token=user)
        return cls(parts.hostname, parts.port or 4222, user=user, password=password)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    def credentials(self) -> dict[str, str]:
        if self.token is not None:
            return {"auth_token": self.token}
        if self.user is not None:
            return {"user": self.user, "pass": self.password or ""}
        return {}


class _Subscription:
    __slots__ = ("callback", "live", "queue", "subject")

    def __init__(self, subject: str, queue: str, callback: MessageCallback) -> None:
        self.subject = subject
        self.queue = queue
        self.callback = callback
        self.live = True
        """False once unsubscribed: not sent again on reconnect, messages still delivered until the round trip."""


class _Link(asyncio.Protocol):
    """One TCP connection: parses what arrives, batches what leaves, answers PINGs, matches PONGs to PINGs."""

    def __init__(self, conn: NatsConnection, server: Server) -> None:
        self.conn = conn
        self.server = server
        self.loop = conn.loop
        self.parser = NatsParser(conn.inbox_prefix)
        self.on_ops = conn.on_ops
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.paused = False
        self.pings_out = 0
        self.info: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pongs: collections.deque[asyncio.Future[None] | None] = collections.deque()
        """One entry per PING sent, in order: the waiter of a round trip, or None for a keepalive PING."""
        self.lost: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass asyncio's
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except NatsProtocolError as exc:
            self.conn.report(logging.WARNING, "nats_protocol_error", {"server": self.server.label, "error": str(exc)})
            self.abort()
            return
        self.on_ops(self, events)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        failure = BrokerUnavailable(f"connection to {self.server.label} lost: {exc!r}")
        self.fail_waiters(failure)
        if not self.lost.done():
            self.lost.set_result(None)
        self.conn.link_lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # -- ops --------------------------------------------------------------------------------------------------------

    def control(self, kind: int, key: Any) -> None:
        """Every op but messages: PING, PONG, INFO, -ERR (+OK never comes: verbose is off)."""
        if kind == PING:
            self.write(PONG_BYTES)
            self.conn.server_pings += 1
        elif kind == PONG:
            self.pings_out = 0
            self.conn.pongs_received += 1
            if self.pongs:
                waiter = self.pongs.popleft()
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        elif kind == INFO:
            info = json.loads(key)
            if not self.info.done():
                self.info.set_result(info)
            else:
                self.conn.info_update(self, info)
        elif kind == ERR:
            self.on_err(str(key))

    def on_err(self, text: str) -> None:
        if "authorization" in text.lower() or "authentication" in text.lower():
            error: BrokerUnavailable = AuthorizationError(f"{self.server.label} refused the credentials: {text}")
        else:
            error = BrokerUnavailable(f"{self.server.label}: {text}")
        if not self.fail_waiters(error):
            self.conn.report(logging.WARNING, "nats_error", {"server": self.server.label, "error": text})

    def fail_waiters(self, error: Exception) -> bool:
        """Fail the handshake and every round trip in progress; True if something was waiting."""
        waiters: list[asyncio.Future[Any]] = [w for w in self.pongs if w is not None]
        if not self.info.done():
            waiters.append(self.info)
        self.pongs.clear()
        failed = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
                failed = True
        return failed

    def ping(self) -> asyncio.Future[None]:
        """Send a PING; the future resolves on its PONG."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.pongs.append(waiter)
        self.write(PING_BYTES)
        return waiter

    def keepalive_ping(self) -> None:
        self.pings_out += 1
        self.pongs.append(None)
        self.write(PING_BYTES)

    # -- writing ----------------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """One socket write for everything queued in this loop turn."""
        self.flush_scheduled = False
        out, self.out = self.out, []
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class NatsConnection:
    """A NATS connection that reconnects by itself once `connect()` has succeeded.

    Args:
        servers: `nats://` URLs, tried in order (see the module docs for credentials).
        name: the connection name the server shows.
        ping_interval: seconds between our PINGs.
        max_pings_out: unanswered PINGs after which the connection is dropped as stale.
        connect_timeout: seconds for the TCP connect and for each step of the handshake.
        inbox_prefix: messages on subjects `<inbox_prefix><decimal token>` come to `on_ops` as REPLY ops.
        report: where connection events go (default: this module's `logging` logger).
    """

    def __init__(
        self,
        servers: list[str],
        *,
        name: str,
        ping_interval: float = 10.0,
        max_pings_out: int = 2,
        connect_timeout: float = 2.0,
        inbox_prefix: str = "",
        report: Report = log_report,
    ) -> None:
        if not servers:
            raise ValueError("no NATS server given")
        self.servers = [Server.parse(url) for url in servers]
        self.name = name
        self.ping_interval = ping_interval
        self.max_pings_out = max_pings_out
        self.connect_timeout = connect_timeout
        self.inbox_prefix = inbox_prefix
        self.report = report
        self.max_payload = 0
        self.ldm = False
        self.server_pings = 0
        """PINGs from the server answered, over all connections."""
        self.pongs_received = 0
        """PONGs received (handshakes, round trips and keepalive)."""
        self.reconnects = 0
        self._subs: dict[int, _Subscription] = {}
        self._callbacks: dict[int, MessageCallback] = {}
        """sid → callback of every subscription whose messages are delivered (the hot path's lookup)."""
        self._next_sid = 1
        self._link: _Link | None = None
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._pinger: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def server(self) -> Server | None:
        """The server of the current connection."""
        return self._link.server if self._link is not None else None

    # -- messages ---------------------------------------------------------------------------------------------------

    def on_ops(self, link: _Link, events: Events) -> None:
        """Everything one read parsed, in order. Subclasses that use the inbox override this (REPLY ops)."""
        callbacks = self._callbacks
        for kind, sid, key, reply, payload, _status, _headers in events:
            if kind == MSG:
                callback = callbacks.get(sid)
                if callback is not None:
                    try:
                        callback(reply, payload)  # type: ignore[arg-type]  # a MSG always has a payload
                    except Exception as exc:  # a bug in the callback must not cost the connection
                        self.report(logging.ERROR, "nats_callback_failed", {"sid": sid, "error": repr(exc)})
            elif kind != REPLY:
                link.control(kind, key)

    def publish(self, subject: str, payload: bytes) -> bool:
        """Queue a message for this loop turn's write; False (dropped) while disconnected.

        Raises:
            PayloadTooLarge: the payload is over the server's max_payload (the server would drop the connection).
        """
        link = self._link
        if link is None:
            return False
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(f"{len(payload)} bytes over the server's max_payload {self.max_payload}")
        link.write(encode_pub(subject, "", payload))
        return True

    def subscribe(self, subject: str, callback: MessageCallback, queue: str = "") -> int:
        """Subscribe now (if connected) and after every reconnect; return the sid. See `flush` to know the server
        has it."""
        sid = self._next_sid
        self._next_sid = sid + 1
        self._subs[sid] = _Subscription(subject, queue, callback)
        self._callbacks[sid] = callback
        if self._link is not None:
            self._link.write(encode_sub(subject, sid, queue))
        return sid

    async def drain(self, sid: int, timeout: float | None = None) -> None:
        """Unsubscribe, then wait until every message the server sent before the UNSUB went to the callback.

        Raises:
            BrokerUnavailable: not connected, or the connection was lost before the round trip completed.
            TimeoutError: no PONG within `timeout`.
        """
        sub = self._subs.get(sid)
        if sub is None:
            return
        sub.live = False
        try:
            link = self._link
            if link is None:
                raise BrokerUnavailable("not connected to NATS")
            link.write(encode_unsub(sid))
            await self.flush(timeout)
        finally:
            del self._subs[sid]
            self._callbacks.pop(sid, None)

    async def flush(self, timeout: float | None = None) -> None:
        """A PING/PONG round trip: the server processed everything sent before, and every message it sent before
        its PONG went to its callback.

        Raises:
            BrokerUnavailable: not connected, or the connection was lost before the PONG.
            TimeoutError: no PONG within `timeout`.
        """
        link = self._link
        if link is None:
            raise BrokerUnavailable("not connected to NATS")
        async with asyncio.timeout(timeout):
            await link.ping()

    # -- connecting -------------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, trying the servers in rounds with backoff until one accepts; then stay connected.

        Raises:
            AuthorizationError: every server of a round refused the credentials (a configuration error).
        """
        self._closing = False
        await self._connect_until_up(give_up_on_auth=True)

    async def _connect_until_up(self, *, give_up_on_auth: bool) -> None:
        attempt = 0
        while not self._closing:
            refused: list[AuthorizationError] = []
            for server in list(self.servers):
                try:
                    await self._connect_once(server)
                    return
                except AuthorizationError as exc:
                    refused.append(exc)
                    self.report(logging.WARNING, "nats_refused_the_credentials", {"error": str(exc)})
                except (OSError, TimeoutError, BrokerUnavailable, NatsProtocolError, ValueError) as exc:
                    self.report(logging.DEBUG, "nats_connect_failed", {"server": server.label, "error": repr(exc)})
            if give_up_on_auth and len(refused) == len(self.servers):
                raise refused[0]
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def _connect_once(self, server: Server) -> None:
        timeout = self.connect_timeout
        link = _Link(self, server)
        async with asyncio.timeout(timeout):
            await self.loop.create_connection(lambda: link, server.host, server.port)
        try:
            async with asyncio.timeout(timeout):
                info = await link.info
                self._check_info(server, info)
                link.write(encode_connect(json.dumps(self._connect_options(server), separators=(",", ":"))))
                for sid, sub in self._subs.items():
                    if sub.live:
                        link.write(encode_sub(sub.subject, sid, sub.queue))
                await link.ping()
        except BaseException:
            link.abort()
            raise
        self._established(link, info)

    def _check_info(self, server: Server, info: dict[str, Any]) -> None:
        if info.get("tls_required"):
            raise BrokerUnavailable(f"{server.label} requires TLS, which this client does not support")
        if not info.get("headers", False):
            raise BrokerUnavailable(f"{server.label} does not support headers (no-responders needs them)")

    def _connect_options(self, server: Server) -> dict[str, Any]:
        return {
            "verbose": False, "pedantic": False, "tls_required": False, "name": self.name, "lang": "python-lf",
            "version": "0.1.0", "protocol": 1, "headers": True, "no_responders": True, **server.credentials(),
        }  # fmt: skip

    def _established(self, link: _Link, info: dict[str, Any]) -> None:
        self._link = link
        self.max_payload = link.parser.max_payload
        self.info_update(link, info)
        if self.servers[0] != link.server:  # next time, start with the server that worked
            self.servers.remove(link.server)
            self.servers.insert(0, link.server)
        self._schedule_ping()

    def info_update(self, link: _Link, info: dict[str, Any]) -> None:
        """INFO after the handshake (cluster changes, lame duck): learn servers, note lame duck."""
        if link is not self._link:
            return
        self.max_payload = link.parser.max_payload
        for url in info.get("connect_urls") or ():
            self._learn(url, link.server)
        if info.get("ldm") and not self.ldm:
            self.report(logging.WARNING, "nats_server_entering_lame_duck_mode", {"server": link.server.label})
        self.ldm = bool(info.get("ldm"))

    def _learn(self, url: str, via: Server) -> None:
        try:
            found = Server.parse(url)
        except ValueError:
            return
        if all(s.label != found.label for s in self.servers):
            self.servers.append(Server(found.host, found.port, via.user, via.password, via.token))

    # -- keepalive --------------------------------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        self._pinger = self.loop.call_later(self.ping_interval, self._ping_tick)

    def _ping_tick(self) -> None:
        link = self._link
        if link is None:
            return
        if link.pings_out >= self.max_pings_out:
            self.report(logging.WARNING, "nats_connection_stale", {"server": link.server.label})
            link.abort()
            return
        link.keepalive_ping()
        self._schedule_ping()

    # -- losing the connection --------------------------------------------------------------------------------------

    def link_lost(self, link: _Link) -> None:
        if link is not self._link:
            return  # a handshake that failed: its connect attempt reports it
        self._link = None
        if self._pinger is not None:
            self._pinger.cancel()
        self.lost(BrokerUnavailable(f"connection to {link.server.label} lost"))
        if not self._closing:
            self.report(logging.WARNING, "nats_disconnected", {"server": link.server.label})
            self._reconnecting = self.loop.create_task(self._reconnect())

    def lost(self, error: BrokerUnavailable) -> None:
        """The connection is gone (or closed): a subclass fails what waits on it."""

    async def _reconnect(self) -> None:
        await self._connect_until_up(give_up_on_auth=False)
        if self._link is not None:
            self.reconnects += 1
            self.report(logging.INFO, "nats_reconnected", {"server": self._link.server.label})

    async def close(self) -> None:
        """Stop reconnecting, fail what waits (`lost`), write what is queued and disconnect."""
        self._closing = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        link = self._link
        self._link = None
        if self._pinger is not None:
            self._pinger.cancel()
        self.lost(BrokerUnavailable("client closed"))
        if link is not None and link.transport is not None:
            link.flush()
            link.transport.close()
            await link.lost


def _backoff(attempt: int) -> float:
    """Seconds to wait after `attempt` failed rounds: doubling from 50 ms to 2 s, ±50% jitter so a fleet of
    clients does not reconnect in lockstep."""
    return min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2.0**attempt) * (0.5 + random.random())  # noqa: S311 (jitter)
