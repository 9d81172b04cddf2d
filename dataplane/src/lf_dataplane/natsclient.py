"""A lean NATS request-reply client on the event loop: the ingestor's `Bus`.

Why not nats-py: measured on our 2-core machine (wrk on core 0, ingestor + nats-server + runtime on core 1), the
ingestor spent ~140 µs of CPU per call and the chain reached ~21% of the bare granian canary; a py-spy profile
put 21% of the worker's samples in nats-py's `_flusher` (one socket write per request) and ~7% in the rest of its
request machinery. DESIGN §7 measured a minimal same-thread client at 40-50% of the canary and a Rust client on
its own threads below nats-py (crossing threads per request costs more than it saves). So this client stays on
the running loop (uvloop under granian), with native code only as a sans-IO codec on the loop's thread:

- One TCP connection, an `asyncio.Protocol`; no threads, no tasks per request.
- One wildcard reply subscription `_INBOX.<random>.*`. Each request gets an int token, its future waits in a
  dict, and `lf_native.NatsParser` hands replies back as `(REPLY, token, payload, status)` tuples: no subject
  string, no message object per reply. `lf_native.encode_inbox_pub` builds the PUB in one allocation.
- Writes are appended to a list and flushed once per loop turn (`loop.call_soon`): the requests of one turn cost
  one socket write.
- Limits and failures: a payload over the server's `max_payload` is refused before sending (PayloadTooLarge); a
  503 status reply is NoResponders; a timeout (one loop timer per request) is BusTimeout; a lost connection
  fails every pending request at once with BrokerUnavailable (a request already sent may still run on a
  replica: the caller owns that ambiguity), then the client reconnects through the server list with exponential
  backoff and jitter and subscribes its inbox again. PINGs from the server are answered; ours go out every
  `ping_interval` and the connection is dropped after `max_pings_out` unanswered (a broker that hangs).

Supported: `nats://` URLs with `user:password@` or `token@` credentials (comma-separated list, as LF_NATS_URL
holds them); servers the cluster announces in INFO `connect_urls` join the list (with the credentials of the
server that announced them). Not supported: TLS, nkeys/JWT credentials, and acting on lame-duck mode (INFO `ldm`
is logged; requests keep flowing until the server closes the connection, then the usual reconnect applies).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import secrets
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from lf_native import (
    NatsParser,
    NatsProtocolError,
    encode_connect,
    encode_inbox_pub,
    encode_sub,
)

from lf_dataplane.forwarding import BrokerUnavailable, BusTimeout, NoResponders, PayloadTooLarge

log = logging.getLogger(__name__)

REPLY, PING, PONG, INFO, ERR = NatsParser.REPLY, NatsParser.PING, NatsParser.PONG, NatsParser.INFO, NatsParser.ERR
STATUS_NO_RESPONDERS = 503
INBOX_SID = 1
PING_BYTES = b"PING\r\n"
PONG_BYTES = b"PONG\r\n"
WRITE_BUFFER_HIGH = 64 * 1024 * 1024
"""Refuse new requests (BrokerUnavailable) while more than this waits in the socket's send buffer."""
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 2.0


class AuthorizationError(BrokerUnavailable):
    """The broker refused the credentials (or their absence)."""


@dataclass(frozen=True)
class Server:
    """One broker address with the credentials to send it."""

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


class _Link(asyncio.Protocol):
    """One TCP connection: parses what arrives, batches what leaves, answers PINGs, counts ours."""

    def __init__(self, client: NatsRequester, server: Server) -> None:
        self.client = client
        self.server = server
        self.loop = client.loop
        self.parser = NatsParser(client.inbox_prefix)
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.paused = False
        self.pings_out = 0
        self.info: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pongs: collections.deque[asyncio.Future[None]] = collections.deque()
        self.lost: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass asyncio's
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except NatsProtocolError as exc:
            log.warning("nats protocol error", extra={"fields": {"server": self.server.label, "error": str(exc)}})
            self.abort()
            return
        pending: dict[Any, Any] = self.client.pending
        for kind, _sid, key, _reply, payload, status, _headers in events:
            if kind == REPLY:
                future = pending.pop(key, None)
                if future is not None and not future.done():
                    if status == STATUS_NO_RESPONDERS:
                        future.set_exception(NoResponders("no responders"))
                    else:
                        future.set_result(payload)
            else:
                self.control(kind, key)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        failure = BrokerUnavailable(f"connection to {self.server.label} lost: {exc!r}")
        self._fail_handshake(failure)
        if not self.lost.done():
            self.lost.set_result(None)
        self.client.link_lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # -- ops --------------------------------------------------------------------------------------------------------

    def control(self, kind: int, key: Any) -> None:
        if kind == PING:
            self.write(PONG_BYTES)
            self.client.server_pings += 1
        elif kind == PONG:
            self.pings_out = 0
            self.client.pongs_received += 1
            if self.pongs:
                waiter = self.pongs.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == INFO:
            info = json.loads(key)
            if not self.info.done():
                self.info.set_result(info)
            else:
                self.client.info_update(self, info)
        elif kind == ERR:
            self.on_err(str(key))

    def on_err(self, text: str) -> None:
        if "authorization" in text.lower() or "authentication" in text.lower():
            error: BrokerUnavailable = AuthorizationError(f"{self.server.label} refused the credentials: {text}")
        else:
            error = BrokerUnavailable(f"{self.server.label}: {text}")
        if not self._fail_handshake(error):
            log.warning("nats error", extra={"fields": {"server": self.server.label, "error": text}})

    def _fail_handshake(self, error: Exception) -> bool:
        """Fail whatever the handshake waits on; True if something was waiting."""
        waiters: list[asyncio.Future[Any]] = [*self.pongs]
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


class NatsRequester:
    """`Bus` over one NATS connection that reconnects by itself once `connect()` has succeeded.

    Args:
        servers: `nats://` URLs, tried in order (see the module docs for credentials).
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
        if not servers:
            raise ValueError("no NATS server given")
        self.servers = [Server.parse(url) for url in servers]
        self.name = name
        self.ping_interval = ping_interval
        self.max_pings_out = max_pings_out
        self.connect_timeout = connect_timeout
        self.inbox_prefix = f"_INBOX.{secrets.token_hex(11)}."
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.max_payload = 0
        self.ldm = False
        self.server_pings = 0
        """PINGs from the server answered, over all connections."""
        self.pongs_received = 0
        """PONGs received (handshakes and keepalive)."""
        self.reconnects = 0
        self._link: _Link | None = None
        self._next_token = 1
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

    def _expire(self, token: int) -> None:
        future = self.pending.pop(token, None)
        if future is not None and not future.done():
            future.set_exception(BusTimeout("no reply in time"))

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
                    log.warning("nats refused the credentials", extra={"fields": {"error": str(exc)}})
                except (OSError, TimeoutError, BrokerUnavailable, NatsProtocolError, ValueError) as exc:
                    log.debug("nats connect failed", extra={"fields": {"server": server.label, "error": repr(exc)}})
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
                link.write(encode_sub(self.inbox_prefix + "*", INBOX_SID))
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
            log.warning("nats server entering lame duck mode", extra={"fields": {"server": link.server.label}})
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
            log.warning("nats connection stale", extra={"fields": {"server": link.server.label}})
            link.abort()
            return
        link.pings_out += 1
        link.write(PING_BYTES)
        self._schedule_ping()

    # -- losing the connection --------------------------------------------------------------------------------------

    def link_lost(self, link: _Link) -> None:
        if link is not self._link:
            return  # a handshake that failed: its connect attempt reports it
        self._link = None
        if self._pinger is not None:
            self._pinger.cancel()
        self._fail_pending(BrokerUnavailable(f"connection to {link.server.label} lost"))
        if not self._closing:
            log.warning("nats disconnected", extra={"fields": {"server": link.server.label}})
            self._reconnecting = self.loop.create_task(self._reconnect())

    def _fail_pending(self, error: BrokerUnavailable) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _reconnect(self) -> None:
        await self._connect_until_up(give_up_on_auth=False)
        if self._link is not None:
            self.reconnects += 1
            log.info("nats reconnected", extra={"fields": {"server": self._link.server.label}})

    async def close(self) -> None:
        """Fail what is pending (the ingestor closes only after its in-flight calls), flush and disconnect."""
        self._closing = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        link = self._link
        self._link = None
        if self._pinger is not None:
            self._pinger.cancel()
        self._fail_pending(BrokerUnavailable("client closed"))
        if link is not None and link.transport is not None:
            link.flush()
            link.transport.close()
            await link.lost


def _backoff(attempt: int) -> float:
    """Seconds to wait after `attempt` failed rounds: doubling from 50 ms to 2 s, ±50% jitter so a fleet of
    ingestors does not reconnect in lockstep."""
    return min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2.0**attempt) * (0.5 + random.random())  # noqa: S311 (jitter)
