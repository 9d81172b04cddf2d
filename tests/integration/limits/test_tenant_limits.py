"""What one client or one tenant can take from the others at the ingestor (issue 14, items 3, 4 and 11), against a
real ingestor, a real nats-server and real Python runtime replicas:

- a slow request body gets 408 after LF_BODY_TIMEOUT and holds no concurrency slot meanwhile (item 3);
- async submissions take tokens from the function's rateLimit like sync calls (item 4);
- request bodies, sync and async, share one in-flight byte budget per worker: 503 + Retry-After beyond it, and what
  was accepted before is not lost (item 4);
- one namespace's flood takes at most its share of the worker's gate, another namespace's calls go on (item 11);
- a namespace's async backlog is capped (item 11).

One ingestor for the module, configured small enough to reach every limit in seconds; every test has namespaces
of its own, so none sees another's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.specs import RateRule

from tests.harness.dispatcher import Dispatcher, start_dispatcher
from tests.harness.ingestor import Ingestor, start_ingestor, wait_routed
from tests.harness.routes import Routes, function_route
from tests.harness.runtime import RuntimeProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration

BODY_TIMEOUT_S = 3.0
BODY_BUDGET = 64 * 1024
WORKER_INFLIGHT = 8
NAMESPACE_INFLIGHT = 4
ASYNC_BACKLOG = 3

HANDLER = """
import os, time

LOG = os.environ.get("CALLS_LOG")


def note(what):
    if LOG:
        with open(LOG, "a") as f:
            f.write(f"{what} {time.monotonic()}\\n")


def handle(req):
    note("start")
    mode = req.path.strip("/")
    if mode.startswith("sleep"):
        time.sleep(float(mode[5:]))
    note("end")
    return {"len": len(req.body), "namespace": os.environ.get("LF_NAMESPACE", "")}
"""


@pytest.fixture(scope="module")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingestor]:
    log = tmp_path_factory.mktemp("tenant-limits") / "ingestor.log"
    ingestor = start_ingestor(
        nats_server.url,
        log,
        LF_BODY_TIMEOUT=f"{BODY_TIMEOUT_S}s",
        LF_MAX_INFLIGHT_BODY_BYTES=str(BODY_BUDGET),
        LF_MAX_INFLIGHT=str(WORKER_INFLIGHT),
        LF_NAMESPACE_MAX_INFLIGHT=str(NAMESPACE_INFLIGHT),
        LF_QUEUE_TIMEOUT="300ms",
        LF_NAMESPACE_ASYNC_BACKLOG=str(ASYNC_BACKLOG),
    )
    yield ingestor
    assert ingestor.stop() == 0, ingestor.logs()


@pytest.fixture
def dispatcher(nats_server: NatsServer, tmp_path: Path) -> Iterator[Dispatcher]:
    """A dispatcher, for a test whose accepted async calls must run (the replicas only answer them)."""
    started = start_dispatcher(nats_server.url, tmp_path / "dispatcher.log")
    yield started
    started.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as http:
        yield http


@contextlib.contextmanager
def replica(
    nats_url: str, tmp: Path, namespace: str, name: str, concurrency: int = 1, calls_log: Path | None = None
) -> Iterator[RuntimeProcess]:
    """A Python runtime replica of `name` in `namespace`, running HANDLER (each call noted in `calls_log`)."""
    env = {"LF_NAMESPACE": namespace, "LF_CONCURRENCY": str(concurrency), "LF_QUEUE_DEPTH": str(concurrency)}
    if calls_log is not None:
        env["CALLS_LOG"] = str(calls_log)
    folder = tmp / f"{namespace}-{name}"
    runtime = RuntimeProcess.start_python(nats_url, name, folder, {"handler.py": HANDLER}, ready_timeout=20, **env)
    try:
        yield runtime
    finally:
        runtime.stop(timeout=10)


def namespace(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def open_body(port: int, path: str, declared: int, sent: bytes) -> socket.socket:
    """A request whose head declares `declared` body bytes, of which only `sent` are sent (for now)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode() + sent)
    return sock


async def hold_budget(
    client: httpx.AsyncClient, port: int, path: str, size: int, probe_url: str
) -> tuple[socket.socket, httpx.Response]:
    """A request to `path` whose body of `size` bytes is still arriving, once the worker holds it in its budget,
    and the 503 a small body to `probe_url` got for that. A probe that came first may take the budget from the
    pending request (then answered 503 at once): that one is closed and the pair tried again."""
    for _ in range(10):
        pending = await asyncio.to_thread(open_body, port, path, size, b"a" * 1000)
        deadline = time.monotonic() + BODY_TIMEOUT_S - 1
        while time.monotonic() < deadline:
            probe = await client.post(probe_url, content=b"s" * 8192)
            if probe.status_code == 503:
                return pending, probe
            try:
                lost = pending.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # answered already: it lost
            except BlockingIOError:
                lost = b""
            if lost:
                break
            await asyncio.sleep(0.02)
        pending.close()
    raise AssertionError(f"the worker never held the body of {path} in its budget")


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes or has sent a whole JSON answer (or 10 s pass)."""
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


# -- item 3: slow bodies ------------------------------------------------------------------------------------------


async def test_a_slow_body_gets_408_and_holds_no_slot_of_the_function(
    ingestor: Ingestor, nats_url: str, routes: Routes, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    ns = namespace("slowbody")
    await routes.put(msgspec.structs.replace(function_route("one", namespace=ns), max_inflight=1))  # concurrency 1
    url = f"{ingestor.url}/function/one.{ns}"
    with replica(nats_url, tmp_path, ns, "one"):
        await wait_routed(client, url)
        assert (await client.get(url)).status_code == 200  # the replica answers
        started = time.monotonic()
        slow = await asyncio.to_thread(open_body, ingestor.port, f"/function/one.{ns}", 10, b"abc")
        try:
            answering = asyncio.ensure_future(asyncio.to_thread(answer_of, slow))
            # concurrency 1, a body trickling in: another call still gets the function's only slot at once
            for _ in range(3):
                other = await client.post(url, content=b"quick")
                assert other.status_code == 200, other.text
                assert other.json()["len"] == 5
            assert time.monotonic() - started < BODY_TIMEOUT_S, "the other calls waited for the slow body"
            answer = await answering
        finally:
            slow.close()
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b'"body_timeout"' in answer
    assert BODY_TIMEOUT_S - 0.1 <= elapsed < BODY_TIMEOUT_S + 2, elapsed


# -- item 4: async submissions pass the rate limit; one byte budget for every body -------------------------------


async def test_async_submissions_take_from_the_functions_rate_limit(
    ingestor: Ingestor, routes: Routes, client: httpx.AsyncClient
) -> None:
    ns = namespace("rated")
    rate = RateRule(rps=0.05, burst=2, key="function")  # no token comes back within the test
    await routes.put(msgspec.structs.replace(function_route("limited", namespace=ns), rate_limit=rate))
    await wait_routed(client, f"{ingestor.url}/function/limited.{ns}")  # its one answer (no replica: 503) took a token
    second = await client.post(f"{ingestor.url}/async-function/limited.{ns}", content=b"x")
    assert second.status_code == 202, second.text
    assert second.headers["ratelimit-remaining"] == "0"
    refused = await client.post(f"{ingestor.url}/async-function/limited.{ns}", content=b"x")
    assert refused.status_code == 429, refused.text
    assert error_code(refused) == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["ratelimit-limit"] == "2"
    # the same buckets as sync calls: the function has no token left for them either
    sync = await client.get(f"{ingestor.url}/function/limited.{ns}")
    assert sync.status_code == 429 and error_code(sync) == "rate_limited"


async def test_bodies_share_one_byte_budget_sync_and_async_and_what_was_accepted_is_kept(
    ingestor: Ingestor, nats_url: str, routes: Routes, client: httpx.AsyncClient, tmp_path: Path, dispatcher: Dispatcher
) -> None:
    ns = namespace("budget")
    await routes.put(function_route("echo", namespace=ns, max_request_bytes=1 << 20, max_response_bytes=1 << 20))
    sync_url, async_url = f"{ingestor.url}/function/echo.{ns}", f"{ingestor.url}/async-function/echo.{ns}"
    big = BODY_BUDGET - 4096  # alone within the budget; with any other body over it
    with replica(nats_url, tmp_path, ns, "echo"):
        dispatcher.wait_for("async_ready", 20, consumer=f"{ns}_echo")
        await wait_routed(client, sync_url)
        assert (await client.post(sync_url, content=b"s" * 8192)).status_code == 200  # alone, a small body passes
        # an async submission whose body is still arriving holds `big` bytes of the budget
        pending, sync_refusal = await hold_budget(client, ingestor.port, f"/async-function/echo.{ns}", big, sync_url)
        try:
            assert error_code(sync_refusal) == "body_budget" and sync_refusal.headers["retry-after"] == "1"
            async_refusal = await client.post(async_url, content=b"s" * 8192)
            assert (async_refusal.status_code, error_code(async_refusal)) == (503, "body_budget")
            assert async_refusal.headers["retry-after"] == "1"
            assert (await client.get(sync_url)).status_code == 200  # no body, no budget: still served
            # the rest of the pending body arrives: that submission is accepted, and its call runs whole
            pending.sendall(b"a" * (big - 1000))
            answer = await asyncio.to_thread(answer_of, pending)
        finally:
            pending.close()
        assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
        call_id = answer.split(b'"callId":"')[1].split(b'"')[0].decode()

        def finished() -> dict[str, Any] | None:
            view: dict[str, Any] = httpx.get(f"{ingestor.url}/invocations/{call_id}").json()
            return view if view.get("status") == "succeeded" else None

        view = await asyncio.to_thread(wait_for, finished, 20, "the accepted call to run")
        assert json.loads(view["result"]["body"]) == {"len": big, "namespace": ns}
        # the budget was given back: the same small body passes again
        assert (await client.post(sync_url, content=b"s" * 8192)).status_code == 200


async def wait_until_async(
    probe: Callable[[], Awaitable[httpx.Response | None]], what: str, timeout: float = BODY_TIMEOUT_S - 1
) -> httpx.Response:
    """`await probe()` until it returns something (polled, like tests/harness/waiting.wait_for, for coroutines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- item 11: fair share between namespaces ---------------------------------------------------------------------


async def test_a_namespace_flooding_the_worker_leaves_the_others_their_calls(
    ingestor: Ingestor, nats_url: str, routes: Routes, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    flooder, quiet = namespace("flood-a"), namespace("quiet-b")
    await routes.put(function_route("slow", namespace=flooder, timeout_ms=20_000))
    await routes.put(function_route("fast", namespace=quiet))
    calls_log = tmp_path / "flood-calls.log"
    calls_log.touch()
    flood = 3 * WORKER_INFLIGHT  # three times what the whole worker forwards at once
    with (
        replica(nats_url, tmp_path, flooder, "slow", concurrency=flood, calls_log=calls_log),
        replica(nats_url, tmp_path, quiet, "fast", concurrency=2),
    ):
        await wait_routed(client, f"{ingestor.url}/function/fast.{quiet}")
        await wait_routed(client, f"{ingestor.url}/function/slow.{flooder}/sleep0")
        calls_log.write_text("")
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=flood + 8)) as flooding:
            held = [
                asyncio.ensure_future(flooding.get(f"{ingestor.url}/function/slow.{flooder}/sleep3"))
                for _ in range(flood)
            ]
            try:
                await asyncio.to_thread(
                    wait_for, lambda: calls_log.read_text().count("start") >= NAMESPACE_INFLIGHT, 10, "the flood"
                )
                # the flood holds its share of the worker: B's calls are answered one after another, promptly
                for i in range(10):
                    started = time.monotonic()
                    response = await client.get(f"{ingestor.url}/function/fast.{quiet}")
                    assert response.status_code == 200, (i, response.text)
                    assert response.json()["namespace"] == quiet
                    assert time.monotonic() - started < 1.0, f"call {i} of B waited behind A's flood"
                assert "end" not in calls_log.read_text(), "A's calls ended before B's calls were made"
                answers = await asyncio.gather(*held)
            finally:
                for task in held:
                    task.cancel()
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= NAMESPACE_INFLIGHT, statuses
    refused = [a for a in answers if a.status_code == 503]
    assert refused, "A's excess was not refused"
    assert all(a.headers["retry-after"] == "1" and error_code(a) == "overloaded" for a in refused)
    assert f"namespace {flooder}" in refused[0].json()["error"]["message"]
    assert max_overlap(calls_log.read_text()) <= NAMESPACE_INFLIGHT  # never more than A's share ran at once


def max_overlap(log: str) -> int:
    running = most = 0
    for what, _ in sorted(((line.split()[0], float(line.split()[1])) for line in log.splitlines()), key=lambda e: e[1]):
        running += 1 if what == "start" else -1
        most = max(most, running)
    return most


async def test_a_namespaces_async_backlog_is_capped(
    ingestor: Ingestor, routes: Routes, client: httpx.AsyncClient
) -> None:
    full, other = namespace("backlog"), namespace("backlog-other")
    await routes.put(function_route("idle", namespace=full))  # no replica: what is accepted stays queued
    await routes.put(function_route("idle", namespace=other))
    await wait_routed(client, f"{ingestor.url}/function/idle.{full}")
    await wait_routed(client, f"{ingestor.url}/function/idle.{other}")
    accepted = []
    for _ in range(ASYNC_BACKLOG):
        response = await client.post(f"{ingestor.url}/async-function/idle.{full}", content=b"x")
        assert response.status_code == 202, response.text
        accepted.append(response.json()["callId"])
    refused = await client.post(f"{ingestor.url}/async-function/idle.{full}", content=b"x")
    assert refused.status_code == 429, refused.text
    assert error_code(refused) == "async_backlog_full" and refused.headers["retry-after"] == "1"
    message = refused.json()["error"]["message"]
    assert f"namespace {full}" in message and str(ASYNC_BACKLOG) in message
    assert (await client.post(f"{ingestor.url}/async-function/idle.{other}", content=b"x")).status_code == 202
    # a cancelled call leaves the backlog (after the next count, at most 250 ms later): room for one more
    assert (await client.delete(f"{ingestor.url}/invocations/{accepted[0]}")).status_code == 200

    async def admitted() -> httpx.Response | None:
        response = await client.post(f"{ingestor.url}/async-function/idle.{full}", content=b"x")
        return response if response.status_code == 202 else None

    again = await wait_until_async(admitted, "room in the backlog after a cancel", timeout=5)
    for call_id in [*accepted[1:], again.json()["callId"]]:
        await client.delete(f"{ingestor.url}/invocations/{call_id}")


async def test_a_client_gone_mid_body_gives_its_reservation_back(
    ingestor: Ingestor, nats_url: str, routes: Routes, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    ns = namespace("gone")
    await routes.put(function_route("echo", namespace=ns, max_request_bytes=1 << 20))
    url = f"{ingestor.url}/function/echo.{ns}"
    with replica(nats_url, tmp_path, ns, "echo"):
        await wait_routed(client, url)
        pending, _ = await hold_budget(client, ingestor.port, f"/function/echo.{ns}", BODY_BUDGET - 4096, url)
        started = time.monotonic()
        pending.close()  # the client leaves before its body is complete

        async def served() -> httpx.Response | None:
            response = await client.post(url, content=b"s" * 8192)
            return response if response.status_code == 200 else None

        # at once, not when the body timeout would have cut it
        await wait_until_async(served, "the reservation to be given back", timeout=BODY_TIMEOUT_S / 2)
        assert time.monotonic() - started < BODY_TIMEOUT_S
