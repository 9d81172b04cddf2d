"""The ingestor as it runs: a real granian process (`python -m lf_dataplane`) against a real nats-server.

Routes are written to LF_ROUTES by tests/harness/routes.py, and calls are answered by responders written here
(nats-py queue subscriptions that decode with lf_native and reply whatever the test needs).
Every wait is on a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.protocol import ErrorKind
from lf_core.contract.subjects import invoke_subject, queue_group
from lf_native import RequestEnvelope, decode_request, encode_response
from nats.aio.client import Client

from tests.harness.ingestor import Ingestor, start_ingestor, wait_routed
from tests.harness.routes import Routes, function_route

pytestmark = pytest.mark.integration

Reply = bytes | None  # None: never answer
Handler = Callable[[RequestEnvelope], Reply | Awaitable[Reply]]


# -- the ingestor process -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingestor]:
    log = tmp_path_factory.mktemp("ingestor") / "ingestor.log"
    ingestor = start_ingestor(nats_server.url, log, LF_DRAIN_TIMEOUT="20s", LF_MAX_HEADER_BYTES="64Ki")
    yield ingestor
    assert ingestor.stop() == 0, ingestor.logs()


# -- broker side: responders ----------------------------------------------------------------------------------------


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as http:
        yield http


def unique(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def responder(nc: Client, name: str, handler: Handler, received: list[RequestEnvelope] | None = None):  # type: ignore[no-untyped-def]
    """A replica of `name` in its queue group, replying `handler(request)` (bytes) or never (None)."""

    async def on_message(msg: Any) -> None:
        request = decode_request(msg.data)
        if received is not None:
            received.append(request)
        reply = handler(request)
        if asyncio.iscoroutine(reply):
            reply = await reply
        if reply is not None:
            await msg.respond(reply)

    sub = await nc.subscribe(invoke_subject("default", name), queue=queue_group("default", name), cb=on_message)
    await nc.flush()
    try:
        yield sub
    finally:
        await sub.unsubscribe()


def echo(request: RequestEnvelope) -> bytes:
    body = json.dumps(
        {"method": request.method, "path": request.path, "query": request.query, "body": request.body.decode(),
         "headers": dict(request.headers), "budget_ms": request.budget_ms, "call_id": request.call_id}
    ).encode()  # fmt: skip
    return encode_response(200, [("content-type", "application/json"), ("x-fn", "yes")], body)


def error_of(response: httpx.Response) -> tuple[str, str]:
    error = response.json()["error"]
    return error["code"], error["layer"]


def raw_request(port: int, head: bytes, timeout: float = 5.0) -> bytes:
    """Send `head` as is (no body) and return what the server answered before closing or within `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    return data


# -- calls ------------------------------------------------------------------------------------------------------


async def test_a_call_returns_the_functions_answer_with_call_headers(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    await routes.put(function_route(name))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)
    received: list[RequestEnvelope] = []
    async with responder(nc, name, echo, received):
        response = await client.post(f"{url}/a/b%20c?x=1&y=two", content=b"ping", headers={"X-Custom": "v"})
        root = await client.get(f"{ingestor.url}/function/{name}.default")
    assert response.status_code == 200, response.text
    assert response.headers["x-fn"] == "yes"
    assert len(response.headers["x-call-id"]) == 32
    assert float(response.headers["x-duration-seconds"]) > 0
    seen = response.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST",
        "/a/b c",
        "x=1&y=two",
        "ping",
    )  # granian decodes the path
    assert seen["headers"]["x-custom"] == "v"
    assert seen["call_id"] == response.headers["x-call-id"]
    assert 4000 < seen["budget_ms"] <= 5000
    assert root.json()["path"] == "/"
    assert root.headers["x-call-id"] != response.headers["x-call-id"]
    assert len(received) == 2


async def test_every_answer_carries_call_headers_and_json_errors(ingestor: Ingestor, client: httpx.AsyncClient) -> None:
    for path in ("/function/nope-" + uuid.uuid4().hex[:6], "/nowhere", "/healthz"):
        response = await client.get(ingestor.url + path)
        assert response.headers["x-call-id"] and response.headers["x-duration-seconds"], path
    response = await client.get(f"{ingestor.url}/function/not-deployed")
    assert (response.status_code, error_of(response)) == (404, ("function_not_found", "ingestor"))


@pytest.mark.parametrize(
    "path",
    ["/function/*", "/function/>", "/function/a%20b", "/function/" + "a" * 300, "/function/Upper", "/function/x.Y"],
    ids=["star", "gt", "space", "300-chars", "uppercase", "bad-namespace"],
)
async def test_bad_names_are_400(ingestor: Ingestor, client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(ingestor.url + path)
    assert (response.status_code, error_of(response)) == (400, ("invalid_name", "ingestor")), response.text


def test_dot_dot_is_400(ingestor: Ingestor) -> None:
    # httpx would normalize the dot segment away; send it raw.
    answer = raw_request(ingestor.port, b"GET /function/.. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"bad_path"' in answer  # a dot segment is refused before the name is looked at


async def test_probes(ingestor: Ingestor, client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{ingestor.url}/healthz")).status_code == 200
    assert (await client.get(f"{ingestor.url}/readyz")).status_code == 200
    response = await client.post(f"{ingestor.url}/readyz")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")
    assert error_of(response) == ("method_not_allowed", "ingestor")


async def test_body_over_the_limit_is_refused_from_content_length_without_the_body(
    ingestor: Ingestor, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    await routes.put(function_route(name, max_request_bytes=1000))
    await wait_routed(client, f"{ingestor.url}/function/{name}")
    head = f"POST /function/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".encode()
    started = time.monotonic()
    answer = await asyncio.to_thread(raw_request, ingestor.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"body_too_large"' in answer
    assert time.monotonic() - started < 3  # answered without waiting for the 10 MB that never came


async def test_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    await routes.put(function_route(name, max_request_bytes=1000))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 100

    async with responder(nc, name, echo):
        at_limit = await client.post(url, content=chunks())
    assert at_limit.status_code == 200
    assert at_limit.json()["body"] == "x" * 1000
    # 11 chunks of 100 bytes and no end: the 11th passes the limit and is answered at once. (A client that
    # keeps sending after the answer may see a reset instead: the rest of its body is never read.)
    chunk = b"64\r\n" + b"x" * 100 + b"\r\n"
    head = f"POST /function/{name} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    answer = await asyncio.to_thread(raw_request, ingestor.port, head + chunk * 11)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"body_too_large"' in answer


async def test_headers_over_64k_are_431(ingestor: Ingestor, client: httpx.AsyncClient) -> None:
    headers = {f"x-h{i}": "v" * 8000 for i in range(9)}  # 72 KB in total
    response = await client.get(f"{ingestor.url}/function/whatever", headers=headers)
    assert (response.status_code, error_of(response)) == (431, ("headers_too_large", "ingestor"))


@pytest.mark.parametrize(
    ("reply", "status", "code", "layer"),
    [
        (encode_response(500, [], b"", error_kind=ErrorKind.HANDLER, error="ValueError: boom"), 500,
         "function_error", "function"),
        (encode_response(504, [], b"", error_kind=ErrorKind.TIMEOUT, error="overran"), 504, "timeout", "runtime"),
        (encode_response(502, [], b"", error_kind=ErrorKind.BAD_REQUEST), 502, "runtime_bad_request", "runtime"),
        (encode_response(502, [], b"", error_kind=ErrorKind.INTERNAL), 502, "runtime_error", "runtime"),
        (encode_response(502, [], b"", error_kind=ErrorKind.RESPONSE_TOO_LARGE), 502, "response_too_large",
         "runtime"),
        (encode_response(200, [], b"x" * (64 * 1024 + 1)), 502, "response_too_large", "runtime"),
        (b"garbage bytes", 502, "bad_response", "runtime"),
        (None, 504, "timeout", "ingestor"),
    ],
    ids=["handler-raised", "runtime-timeout", "bad-request", "internal", "runtime-too-large", "too-large",
         "garbage", "no-reply"],
)  # fmt: skip
async def test_runtime_outcomes_map_to_status_and_layer(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient,
    reply: bytes | None, status: int, code: str, layer: str,
) -> None:  # fmt: skip
    name = unique()
    await routes.put(function_route(name, timeout_ms=400))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)
    async with responder(nc, name, lambda _: reply):
        response = await client.get(url)
    assert (response.status_code, error_of(response)) == (status, (code, layer)), response.text
    if code == "function_error":
        message = response.json()["error"]["message"]  # the handler's text stays in its logs (issue 14, item 10)
        assert message.startswith("the function raised an exception") and "boom" not in message
    if layer == "ingestor":
        assert 0.4 <= float(response.headers["x-duration-seconds"]) < 2


async def test_no_responders_is_503_with_retry_after(
    ingestor: Ingestor, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    await routes.put(function_route(name))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)
    response = await client.get(url)
    assert (response.status_code, error_of(response)) == (503, ("no_replica", "broker"))
    assert response.headers["retry-after"] == "1"


async def test_busy_is_retried_onto_another_replica(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    await routes.put(function_route(name))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)
    busy_seen: list[RequestEnvelope] = []
    busy = encode_response(503, [], b"", error_kind=ErrorKind.BUSY, error="busy")
    async with responder(nc, name, lambda _: busy, busy_seen), responder(nc, name, echo):
        responses = await asyncio.gather(*(client.get(url) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert busy_seen  # the busy replica was asked (2^-20 odds otherwise), and its calls went elsewhere


async def test_busy_everywhere_until_the_deadline_is_503(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    await routes.put(function_route(name, timeout_ms=300))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)
    busy = encode_response(503, [], b"", error_kind=ErrorKind.BUSY)
    seen: list[RequestEnvelope] = []
    async with responder(nc, name, lambda _: busy, seen):
        response = await client.get(url)
    assert (response.status_code, error_of(response)) == (503, ("busy", "runtime"))
    assert response.headers["retry-after"] == "1"
    assert len(seen) > 2
    assert seen[-1].budget_ms < seen[0].budget_ms


async def test_routes_follow_the_bucket_without_restart(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique()
    url = f"{ingestor.url}/function/{name}"
    assert (await client.get(url)).status_code == 404
    await routes.put(function_route(name))
    await wait_routed(client, url)
    async with responder(nc, name, echo):
        response = await client.get(url)
        assert response.status_code == 200, response.text
    await routes.delete(name)
    await wait_routed(client, url, routed=False)
    assert error_of(await client.get(url)) == ("function_not_found", "ingestor")


async def test_malformed_entries_are_skipped(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    bad, good = unique("bad"), unique("good")
    await routes.put_raw(bad, b"{not json")
    await routes.put(function_route(good))
    await wait_routed(client, f"{ingestor.url}/function/{good}")
    assert (await client.get(f"{ingestor.url}/function/{bad}")).status_code == 404


# -- shutdown ---------------------------------------------------------------------------------------------------


async def test_sigterm_finishes_the_call_in_flight_and_exits_0(
    nats_url: str, nc: Client, routes: Routes, tmp_path: Path
) -> None:
    ingestor = await asyncio.to_thread(
        start_ingestor, nats_url, tmp_path / "ingestor.log", LF_DRAIN_DELAY="2s", LF_DRAIN_TIMEOUT="20s"
    )
    try:
        name = unique()
        await routes.put(function_route(name, timeout_ms=20_000))
        url = f"{ingestor.url}/function/{name}"
        probes = httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_keepalive_connections=0))
        async with probes, httpx.AsyncClient(timeout=30) as caller:
            await wait_routed(probes, url)
            arrived, release = asyncio.Event(), asyncio.Event()

            async def slow(request: RequestEnvelope) -> bytes:
                arrived.set()
                await release.wait()
                return echo(request)

            async with responder(nc, name, slow):
                call = asyncio.create_task(caller.get(f"{url}/slow"))
                await asyncio.wait_for(arrived.wait(), 10)
                ingestor.process.send_signal(signal.SIGTERM)

                # /readyz turns 503 at once, while the listener is still open (LF_DRAIN_DELAY) ...
                async def readyz() -> int:
                    return (await probes.get(f"{ingestor.url}/readyz")).status_code

                await until(lambda: readyz_is(readyz, 503), 2.0, "/readyz 503")
                # ... then the listener closes, with the call still in flight ...
                await until(lambda: refused(probes, f"{ingestor.url}/healthz"), 5.0, "listener closed")
                assert not call.done()
                release.set()
                response = await asyncio.wait_for(call, 10)
            assert response.status_code == 200
            assert response.json()["path"] == "/slow"
        returncode = await asyncio.to_thread(ingestor.process.wait, 20)
        assert returncode == 0, ingestor.logs()
        events = [json.loads(line)["event"] for line in ingestor.logs().splitlines() if line.startswith("{")]
        for expected in ("started", "ready", "draining", "worker stopped", "stopped"):
            assert expected in events, (expected, events)
    finally:
        ingestor.stop()


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def readyz_is(probe: Callable[[], Awaitable[int]], status: int) -> bool:
    return await probe() == status


async def refused(client: httpx.AsyncClient, url: str) -> bool:
    try:
        await client.get(url)
    except httpx.TransportError:
        return True
    return False
