"""The runtime's NATS connection: surviving a broker restart, draining under load, async handlers run eagerly,
and the nats-py fallback used for tls:// and ws:// servers."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.protocol import ErrorKind
from lf_runtime.natspy import NatsPyConnection
from nats.aio.client import Client
from runtime_harness import Start, call

from tests.harness.natsserver import running_nats

pytestmark = pytest.mark.integration

CONTEXT_HANDLER = """
import asyncio, contextvars

seen = contextvars.ContextVar("seen", default="unset")


async def handle(req):
    before = seen.get()
    seen.set(req.call_id)  # must not leak into the next call, eager or not
    if req.path == "/await":
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        if seen.get() != req.call_id:
            raise RuntimeError("the context changed across an await")
    if req.path == "/raise-after-await":
        await asyncio.sleep(0)
        raise KeyError("late")
    return before
"""


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path / "own-nats", jetstream=False) as server:
        yield server


async def test_serves_again_after_the_broker_restarts(start_runtime: Start, own_nats: NatsServer) -> None:
    runtime = start_runtime(env={"LF_NATS_URL": own_nats.url})
    client = await nats.connect(own_nats.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1)
    try:
        assert (await call(client, runtime.function, "/text")).body == b"hello"
        own_nats.stop()
        await asyncio.to_thread(runtime.wait_for, "nats_disconnected")
        own_nats.start()
        await asyncio.to_thread(runtime.wait_for, "nats_reconnected", 15)
        for _ in range(200):  # our client reconnects on its own schedule
            if client.is_connected:
                break
            await asyncio.sleep(0.05)
        for _ in range(100):  # the replica subscribed again in its handshake; retry only our own reconnect race
            try:
                answer = await call(client, runtime.function, "/text", budget_ms=2000)
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.05)
        assert (answer.status, answer.body) == (200, b"hello")
        assert runtime.process.poll() is None
    finally:
        await client.close()


async def test_sigterm_under_load_answers_every_call_it_took(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(is_async=True, env={"LF_CONCURRENCY": "100", "LF_QUEUE_DEPTH": "100"})
    fn = runtime.function

    async def one(i: int) -> object:
        try:
            return await call(nc, fn, "/sleep", query="s=0.2", call_id=f"c{i}", budget_ms=5000)
        except nats.errors.NoRespondersError as exc:
            return exc

    calls = [asyncio.ensure_future(one(i)) for i in range(150)]
    await asyncio.sleep(0.05)
    runtime.signal(signal.SIGTERM)
    results = await asyncio.gather(*calls)
    answered = [r for r in results if not isinstance(r, Exception)]
    assert all(isinstance(r, nats.errors.NoRespondersError) for r in results if isinstance(r, Exception))
    assert answered, "the calls sent before SIGTERM were taken"
    assert {(a.status, a.error_kind) for a in answered} <= {(200, ErrorKind.NONE), (503, ErrorKind.BUSY)}
    assert await asyncio.to_thread(runtime.exit_code) == 0


async def test_async_handlers_keep_their_own_context(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(is_async=True, env={"LF_HANDLER": "ctx.handle"}, files={"ctx.py": CONTEXT_HANDLER})
    fn = runtime.function
    answers = await asyncio.gather(*(call(nc, fn, p) for p in ["/", "/await", "/"] * 20))
    assert {(a.status, a.body) for a in answers} == {(200, b"unset")}
    failed = await call(nc, fn, "/raise-after-await")
    assert (failed.status, failed.error_kind, failed.error) == (500, ErrorKind.HANDLER, "KeyError: 'late'")


async def test_the_nats_py_fallback_subscribes_answers_and_drains(nats_url: str, nc: Client) -> None:
    conn = NatsPyConnection([nats_url], name="fallback", report=lambda level, event, fields: None)
    await conn.connect()
    got: list[bytes] = []

    def on_msg(reply: str | None, payload: bytes) -> None:
        got.append(payload)
        if reply:
            conn.publish(reply, b"re:" + payload)

    sid = conn.subscribe("t.fallback", on_msg, "q")
    await conn.flush(2)
    assert conn.max_payload > 0
    assert (await nc.request("t.fallback", b"x", timeout=5)).data == b"re:x"
    await conn.drain(sid, 2)
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("t.fallback", b"y", timeout=2)
    await conn.close()
    assert got == [b"x"]
