"""Attacks on the platform's own paths through a real ingestor (granian, `python -m lf_dataplane`) and a real
nats-server: a tenant's HTTP Trigger must not capture another tenant's async API, and the paths granian decodes
(`%2F`, `%2e%2e`) must not reach a route or a function they should not.

The Trigger entries are written to LF_ROUTES directly, as a buggy or older operator could have: the operator
refuses them (tests/operator/test_trigger_claims.py), and this is the ingestor's own defence behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.routes import HttpTriggerRoute, encode_trigger_route, trigger_key
from lf_core.contract.subjects import invoke_subject, queue_group
from lf_native import RequestEnvelope, decode_request, encode_response
from nats.aio.client import Client

from tests.harness.ingestor import Ingestor, start_ingestor, wait_routed
from tests.harness.routes import Routes, function_route

pytestmark = pytest.mark.integration

VICTIM, ATTACKER = "team-a", "team-b"


@pytest.fixture(scope="module")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingestor]:
    log = tmp_path_factory.mktemp("ingestor") / "ingestor.log"
    ingestor = start_ingestor(nats_server.url, log)
    yield ingestor
    assert ingestor.stop() == 0, ingestor.logs()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


@contextlib.asynccontextmanager
async def replica(nc: Client, namespace: str, name: str, seen: list[str]) -> AsyncIterator[None]:
    """A replica of `namespace/name` answering 200 with the path it was called at (recorded in `seen`)."""

    async def on_message(msg: Any) -> None:
        request: RequestEnvelope = decode_request(msg.data)
        seen.append(request.path)
        body = json.dumps({"served_by": namespace, "path": request.path}).encode()
        await msg.respond(encode_response(200, [("content-type", "application/json")], body))

    sub = await nc.subscribe(invoke_subject(namespace, name), queue=queue_group(namespace, name), cb=on_message)
    await nc.flush()
    try:
        yield
    finally:
        await sub.unsubscribe()


async def put_trigger(routes: Routes, route: HttpTriggerRoute) -> None:
    await routes.kv.put(trigger_key(route), encode_trigger_route(route))


async def served_by_attacker(client: httpx.AsyncClient, url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = await client.get(url)
        if response.status_code == 200 and response.json().get("served_by") == ATTACKER:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never reached the attacker's function: the trigger is not in the table")


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (httpx would normalise dot segments and re-encode)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
async def captured(ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient) -> AsyncIterator[Any]:
    """The victim's function, and the attacker's with Triggers `/{*rest}` and `/invocations/{id}` on any host,
    both serving; yields (victim's name, the paths the attacker's function was called at)."""
    victim, thief = f"fn-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:8]}"
    await routes.put(function_route(victim, namespace=VICTIM))
    await routes.put(function_route(thief, namespace=ATTACKER))
    await wait_routed(client, f"{ingestor.url}/function/{victim}.{VICTIM}")
    grabs = [
        HttpTriggerRoute(namespace=ATTACKER, name=f"ids-{thief}", function=thief, path="/invocations/{id}"),
        HttpTriggerRoute(namespace=ATTACKER, name=f"all-{thief}", function=thief, path="/{*rest}"),
        HttpTriggerRoute(namespace=ATTACKER, name=f"two-{thief}", function=thief, path="/{a}/{b}", methods=("GET",)),
    ]
    for grab in grabs:
        await put_trigger(routes, grab)
    seen: list[str] = []
    async with replica(nc, ATTACKER, thief, seen):
        await served_by_attacker(client, f"{ingestor.url}/elsewhere-{thief}")  # the catch-all is live
        seen.clear()
        yield victim, seen
    for grab in grabs:
        await routes.kv.delete(trigger_key(grab))


async def test_a_catch_all_trigger_cannot_capture_another_namespaces_async_submit_and_status(
    ingestor: Ingestor, client: httpx.AsyncClient, captured: Any
) -> None:
    victim, seen = captured
    submitted = await client.post(f"{ingestor.url}/async-function/{victim}.{VICTIM}/orders", content=b"secret")
    assert submitted.status_code == 202, submitted.text
    call_id = submitted.json()["callId"]
    assert submitted.json()["namespace"] == VICTIM
    status = await client.get(f"{ingestor.url}/invocations/{call_id}")
    assert status.status_code == 200, status.text
    assert status.headers["content-type"].startswith("application/json") and "served_by" not in status.json()
    cancelled = await client.delete(f"{ingestor.url}/invocations/{call_id}")
    assert "served_by" not in cancelled.text, cancelled.text
    assert seen == [], f"the attacker's function was called at {seen}"


async def test_reserved_paths_stay_the_platforms_under_every_spelling(
    ingestor: Ingestor, client: httpx.AsyncClient, captured: Any
) -> None:
    victim, seen = captured
    # An unknown function, an unknown call, a percent-encoded prefix or separator (granian decodes them first):
    # all answered by the platform, none by the attacker's catch-all.
    unknown = await client.get(f"{ingestor.url}/function/nope-{uuid.uuid4().hex[:6]}")
    assert unknown.json()["error"]["code"] == "function_not_found", unknown.text
    status, body = raw_get(ingestor.port, "/invocations/0123456789abcdef")
    assert status == 404 and b"served_by" not in body, body
    status, body = raw_get(ingestor.port, "/%69nvocations%2F0123456789abcdef")
    assert status == 404 and b"served_by" not in body, body
    status, body = raw_get(ingestor.port, f"/async-function%2F{victim}.{VICTIM}")
    assert b"served_by" not in body, body
    for path in ("/api/v1/functions", "/metrics/x", "/healthz/x"):
        response = await client.get(f"{ingestor.url}{path}")
        assert response.status_code == 404 and "served_by" not in response.text, (path, response.text)
    assert seen == [], f"the attacker's function was called at {seen}"


async def test_encoded_slash_is_a_separator_and_dot_segments_are_400(
    ingestor: Ingestor, client: httpx.AsyncClient, captured: Any
) -> None:
    victim, seen = captured
    # %2F is decoded by granian before routing: `/x%2Fy` is `/x/y`, which the attacker's `/{a}/{b}` serves.
    response = await client.get(f"{ingestor.url}/x%2Fy")
    assert response.url.raw_path == b"/x%2Fy"
    assert response.status_code == 200 and response.json() == {"served_by": ATTACKER, "path": "/x/y"}, response.text
    # Dot segments, plain or encoded, never reach a function or a route: 400.
    for target in (
        f"/function/{victim}.{VICTIM}/%2e%2e/other",
        f"/function/{victim}.{VICTIM}/../x",
        "/files/%2E%2E/etc/passwd",
        "/files/./x",
        f"/async-function/{victim}.{VICTIM}/%2e%2e",
    ):
        status, body = raw_get(ingestor.port, target)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_path", (target, body)
    assert seen == ["/x/y"], f"the attacker's function was called at {seen}"
