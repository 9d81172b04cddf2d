"""The lean NATS clients against real nats-servers, with nats-py on the other side: the ingestor's requester and
the connection underneath it that the runtime subscribes with.

Servers that a test stops, freezes or configures (auth, ping interval) are its own; the rest share the session's.
Every wait is on a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from lf_controlplane.natsserver import MAX_PAYLOAD, NatsServer
from lf_core.bus.errors import AuthorizationError, BrokerUnavailable, BusTimeout, NoResponders, PayloadTooLarge
from lf_core.bus.link import NatsConnection, Server
from lf_core.bus.requester import NatsRequester
from nats.aio.client import Client

from tests.harness.natsserver import running_nats

pytestmark = pytest.mark.integration


async def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """Start servers private to the test (config extras allowed); stopped at the end."""
    numbers = itertools.count()
    with contextlib.ExitStack() as started:

        def start(extra: str = "") -> NatsServer:
            state = tmp_path / f"nats-{next(numbers)}"
            return started.enter_context(running_nats(state, jetstream=False, extra_config=extra))

        yield start


@pytest.fixture
async def requester(nats_url: str) -> AsyncIterator[NatsRequester]:
    client = NatsRequester([nats_url])
    await client.connect()
    yield client
    await client.close()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def serve(nc: Client, subject: str, answer: Callable[[bytes], bytes | None]) -> None:
    """A nats-py responder on `subject` replying `answer(data)`, or never when it returns None."""

    async def on_message(msg: Any) -> None:
        reply = answer(msg.data)
        if reply is not None:
            await msg.respond(reply)

    await nc.subscribe(subject, cb=on_message)
    # nats-py writes a flush's PING ahead of the SUB still in its buffer; the second PING leaves after it, so
    # once it returns the server has the subscription (one run in ~6 answered "no responders" with one flush).
    await nc.flush()
    await nc.flush()


async def test_request_gets_the_responders_reply(requester: NatsRequester, nc: Client) -> None:
    await serve(nc, "t.echo", lambda data: b"echo:" + data)
    assert await requester.request("t.echo", b"hi", 2.0) == b"echo:hi"
    assert await requester.request("t.echo", b"", 2.0) == b"echo:"
    assert requester.pending == {}


async def test_many_concurrent_requests_each_get_their_own_reply(requester: NatsRequester, nc: Client) -> None:
    await serve(nc, "t.many", lambda data: data[::-1])
    payloads = [f"request-{i}".encode() for i in range(2000)]
    replies = await asyncio.gather(*(requester.request("t.many", p, 10.0) for p in payloads))
    assert replies == [p[::-1] for p in payloads]
    assert requester.pending == {}


async def test_no_responders_fails_fast(requester: NatsRequester) -> None:
    start = time.monotonic()
    with pytest.raises(NoResponders):
        await requester.request("t.nobody.home", b"x", 5.0)
    assert time.monotonic() - start < 1.0
    assert requester.pending == {}


async def test_timeout_fails_the_request_and_forgets_it(requester: NatsRequester, nc: Client) -> None:
    await serve(nc, "t.silent", lambda data: None)
    start = time.monotonic()
    with pytest.raises(BusTimeout):
        await requester.request("t.silent", b"x", 0.2)
    assert 0.15 < time.monotonic() - start < 2.0
    assert requester.pending == {}


async def test_payload_over_max_payload_is_refused_before_sending(requester: NatsRequester, nc: Client) -> None:
    await serve(nc, "t.size", lambda data: str(len(data)).encode())
    assert requester.max_payload == MAX_PAYLOAD
    with pytest.raises(PayloadTooLarge):
        await requester.request("t.size", bytes(MAX_PAYLOAD + 1), 2.0)
    assert requester.connected
    assert await requester.request("t.size", bytes(MAX_PAYLOAD), 10.0) == str(MAX_PAYLOAD).encode()


async def test_server_restart_fails_pending_then_reconnects(own_server: Callable[..., NatsServer]) -> None:
    server = own_server()
    client = NatsRequester([server.url], ping_interval=0.2)
    await client.connect()
    responder = await nats.connect(server.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1)
    try:
        await serve(responder, "t.restart", lambda data: None if data == b"hang" else b"ok")
        assert await client.request("t.restart", b"x", 2.0) == b"ok"
        hanging = [asyncio.ensure_future(client.request("t.restart", b"hang", 30.0)) for _ in range(20)]
        await wait_for(lambda: len(client.pending) == 20, 5, "the requests to be sent")
        server.stop()
        results = await asyncio.gather(*hanging, return_exceptions=True)
        assert all(isinstance(r, BrokerUnavailable) for r in results), results
        assert not client.connected
        with pytest.raises(BrokerUnavailable):
            await client.request("t.restart", b"x", 2.0)
        server.start()
        await wait_for(lambda: client.connected and responder.is_connected, 15, "both clients to reconnect")
        assert client.reconnects == 1
        assert await retry_while_no_responders(lambda: client.request("t.restart", b"x", 2.0)) == b"ok"
    finally:
        await responder.close()
        await client.close()


async def retry_while_no_responders(call: Callable[[], Any], timeout: float = 10) -> Any:
    """The responder's subscription comes back with its own reconnect; until then NoResponders is right."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except NoResponders:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def test_server_pings_are_answered_and_ours_get_pongs(own_server: Callable[..., NatsServer]) -> None:
    server = own_server('ping_interval: "50ms"\nping_max: 2')
    # The server skips its PING to a client that sent something lately, so one client stays quiet and one pings.
    quiet = NatsRequester([server.url], ping_interval=60)
    pinging = NatsRequester([server.url], ping_interval=0.05, max_pings_out=2)
    await quiet.connect()
    await pinging.connect()
    try:
        # The server drops a client that misses 2 of its PINGs, so 10 answered ones mean the answers work.
        await wait_for(lambda: quiet.server_pings >= 10, 10, "the server's pings")
        await wait_for(lambda: pinging.pongs_received >= 10, 10, "pongs to our pings")
        assert quiet.connected and pinging.connected
        assert quiet.reconnects == pinging.reconnects == 0
    finally:
        await quiet.close()
        await pinging.close()


async def test_a_server_that_stops_answering_is_detected(own_server: Callable[..., NatsServer]) -> None:
    server = own_server()
    client = NatsRequester([server.url], ping_interval=0.1, max_pings_out=2)
    await client.connect()
    silent = await nats.connect(server.url, allow_reconnect=False)
    try:
        await serve(silent, "t.frozen", lambda data: None)
        hanging = asyncio.ensure_future(client.request("t.frozen", b"x", 30.0))
        await wait_for(lambda: client.pending, 5, "the request to be sent")
        server.signal(signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await hanging
        assert not client.connected
        assert time.monotonic() - start < 5.0
        server.signal(signal.SIGCONT)
        await wait_for(lambda: client.connected, 15, "the client to reconnect")
        with pytest.raises(NoResponders):
            await client.request("t.nobody", b"x", 2.0)
    finally:
        server.signal(signal.SIGCONT)
        await client.close()
        await silent.close()


def with_credentials(url: str, credentials: str) -> str:
    return url.replace("nats://", f"nats://{credentials}@")


@pytest.mark.parametrize(
    ("config", "good", "bad"),
    [
        ("authorization { user: alice, password: s3cr3t }", "alice:s3cr3t", "alice:wrong"),
        ("authorization { user: alice, password: s3cr3t }", "alice:s3cr3t", ""),
        ("authorization { token: t0k3n }", "t0k3n", "other"),
    ],
    ids=["user-password", "user-password-missing", "token"],
)
async def test_auth_from_the_url(own_server: Callable[..., NatsServer], config: str, good: str, bad: str) -> None:
    server = own_server(config)
    good_url = with_credentials(server.url, good)
    responder = await nats.connect(good_url)
    client = NatsRequester([good_url])
    try:
        await serve(responder, "t.auth", lambda data: b"ok")
        await client.connect()
        assert await client.request("t.auth", b"x", 2.0) == b"ok"
        bad_url = with_credentials(server.url, bad) if bad else server.url
        refused = NatsRequester([bad_url])
        with pytest.raises(AuthorizationError, match="refused the credentials.*[Aa]uthorization"):
            await asyncio.wait_for(refused.connect(), 10)
        assert not refused.connected
    finally:
        await client.close()
        await responder.close()


def test_server_urls_carry_credentials() -> None:
    assert Server.parse("nats://a:b@h:1") == Server("h", 1, user="a", password="b")
    assert Server.parse("nats://tok@h") == Server("h", 4222, token="tok")
    assert Server.parse("h:5") == Server("h", 5)
    assert Server.parse("nats://a%40x:p%3Aq@h:1").credentials() == {"user": "a@x", "pass": "p:q"}
    with pytest.raises(ValueError, match="scheme"):
        Server.parse("tls://h:1")


# -- NatsConnection: the subscriber side the runtime uses -----------------------------------------------------------


class Inbox:
    """A subscription callback that records `(reply, payload)` and can answer through the connection."""

    def __init__(self, conn: NatsConnection | None = None, answer: Callable[[bytes], bytes] | None = None) -> None:
        self.conn = conn
        self.answer = answer
        self.got: list[tuple[str | None, bytes]] = []

    def __call__(self, reply: str | None, payload: bytes) -> None:
        self.got.append((reply, payload))
        if self.conn is not None and self.answer is not None and reply:
            self.conn.publish(reply, self.answer(payload))


@pytest.fixture
async def conn(nats_url: str) -> AsyncIterator[NatsConnection]:
    client = NatsConnection([nats_url], name="test")
    await client.connect()
    yield client
    await client.close()


async def test_subscription_in_a_queue_group_answers_requests(conn: NatsConnection, nc: Client) -> None:
    inbox = Inbox(conn, lambda data: b"re:" + data)
    conn.subscribe("t.sub.echo", inbox, queue="q")
    await conn.flush(2)
    replies = await asyncio.gather(*(nc.request("t.sub.echo", f"{i}".encode(), timeout=5) for i in range(200)))
    assert [r.data for r in replies] == [f"re:{i}".encode() for i in range(200)]
    assert len(inbox.got) == 200 and all(reply for reply, _ in inbox.got)
    await nc.publish("t.sub.echo", b"no reply subject")
    await nc.flush()
    await wait_for(lambda: inbox.got[-1] == (None, b"no reply subject"), 5, "the message without a reply")


async def test_drain_delivers_what_was_sent_before_the_unsubscribe_and_nothing_after(
    conn: NatsConnection, nc: Client, nats_url: str
) -> None:
    inbox = Inbox()
    sid = conn.subscribe("t.sub.drain", inbox)
    await conn.flush(2)
    publisher = NatsConnection([nats_url], name="publisher")  # nats-py's flush() may return before its PUBs left
    await publisher.connect()
    for i in range(500):
        publisher.publish("t.sub.drain", str(i).encode())
    await publisher.flush(2)  # the server has them all, so it sends them to us before it sees our UNSUB
    await publisher.close()
    await conn.drain(sid, 5)
    assert [p for _, p in inbox.got] == [str(i).encode() for i in range(500)], "nothing lost, in order"
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("t.sub.drain", b"after", timeout=2)
    assert len(inbox.got) == 500


async def test_a_callback_that_raises_costs_neither_the_connection_nor_the_next_messages(
    conn: NatsConnection, nc: Client
) -> None:
    inbox = Inbox()

    def flaky(reply: str | None, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("a bug in the callback")
        inbox(reply, payload)

    conn.subscribe("t.sub.flaky", flaky)
    await conn.flush(2)
    for payload in (b"a", b"boom", b"b"):
        await nc.publish("t.sub.flaky", payload)
    await nc.flush()
    await wait_for(lambda: len(inbox.got) == 2, 5, "the messages around the failing one")
    assert [p for _, p in inbox.got] == [b"a", b"b"]
    assert conn.connected and conn.reconnects == 0


async def test_publish_refuses_a_payload_over_max_payload_and_drops_while_disconnected(nats_url: str) -> None:
    client = NatsConnection([nats_url], name="test")
    assert client.publish("t.x", b"x") is False, "not connected yet: dropped"
    await client.connect()
    try:
        with pytest.raises(PayloadTooLarge):
            client.publish("t.x", bytes(client.max_payload + 1))
        assert client.publish("t.x", b"x") is True
        assert client.connected
    finally:
        await client.close()
    assert client.publish("t.x", b"x") is False


async def test_reconnect_after_a_server_restart_subscribes_again_and_serves(
    own_server: Callable[..., NatsServer],
) -> None:
    server = own_server()
    events: list[str] = []
    client = NatsConnection([server.url], name="test", report=lambda level, event, fields: events.append(event))
    await client.connect()
    inbox = Inbox(client, lambda data: b"ok:" + data)
    client.subscribe("t.sub.restart", inbox, queue="q")
    drained = Inbox()
    gone = client.subscribe("t.sub.gone", drained)
    await client.flush(2)
    await client.drain(gone, 2)
    requester = NatsRequester([server.url])
    await requester.connect()
    try:
        assert await requester.request("t.sub.restart", b"1", 2.0) == b"ok:1"
        server.stop()
        await wait_for(lambda: not client.connected, 10, "the client to notice")
        with pytest.raises(BrokerUnavailable):
            await client.flush(1)
        server.start()
        await wait_for(lambda: client.connected and requester.connected, 15, "both clients to reconnect")
        assert client.reconnects == 1
        assert "nats_disconnected" in events and "nats_reconnected" in events
        # The subscription is part of the handshake: served as soon as the client counts as connected.
        assert await requester.request("t.sub.restart", b"2", 2.0) == b"ok:2"
        with pytest.raises(NoResponders):  # a drained subscription is not sent again
            await requester.request("t.sub.gone", b"x", 2.0)
    finally:
        await requester.close()
        await client.close()


async def test_round_trips_wait_for_their_own_pong_between_keepalive_pings(
    own_server: Callable[..., NatsServer],
) -> None:
    server = own_server()
    client = NatsConnection([server.url], name="test", ping_interval=0.01, max_pings_out=5)
    # The publisher is one of ours too: nats-py's flush() can return before its PUB left (see lf_runtime.natspy).
    publisher = NatsConnection([server.url], name="publisher", ping_interval=60)
    await client.connect()
    await publisher.connect()
    inbox = Inbox()
    try:
        for round_trip in range(30):
            sid = client.subscribe(f"t.sub.ping.{round_trip}", inbox)
            await client.flush(2)
            # flush returned on our PONG, not on a keepalive PONG that came first: the SUB is in place.
            publisher.publish(f"t.sub.ping.{round_trip}", b"x")
            await publisher.flush(2)
            await client.drain(sid, 2)
            assert len(inbox.got) == round_trip + 1
            await asyncio.sleep(0.005)
        assert client.pongs_received >= 60 and client.connected and client.reconnects == 0
    finally:
        await publisher.close()
        await client.close()
