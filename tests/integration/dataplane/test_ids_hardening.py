"""What a client learns from the ingestor, against a real ingestor and nats-server (issue 14, items 1 and 6).

- Call ids (every response names one, even /healthz) carry 96 random bits: none can be derived from another.
- An `Idempotency-Key` is bound to its first request: the same key with another request is 422 and does not learn
  the first call's id; the same request again is the first call (202, duplicate).
- A callback host that resolves to a private address is refused without saying which address.

The async submissions here need no replica: a 202 means the call was stored in LF_ASYNC.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lf_controlplane.natsserver import NatsServer

from tests.harness.ingestor import Ingestor, start_ingestor
from tests.harness.routes import function_route, put_routes
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingestor]:
    log = Path(tmp_path_factory.mktemp("ids")) / "ingestor.log"
    started = start_ingestor(nats_server.url, log, LF_CALLBACK_ALLOW_PRIVATE="false", LF_LOG_LEVEL="info")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def function(ingestor: Ingestor, nats_server: NatsServer) -> str:
    """A routed function (no replica: sync calls get 503, async ones are stored)."""
    name = f"ids-{uuid.uuid4().hex[:8]}"
    put_routes(nats_server.url, function_route(name))
    wait_for(lambda: httpx.get(f"{ingestor.url}/function/{name}").status_code != 404, 20, "the route")
    return name


def test_call_ids_carry_96_random_bits_and_no_counter(ingestor: Ingestor) -> None:
    with httpx.Client(base_url=ingestor.url) as client:
        ids = [client.get("/healthz").headers["x-call-id"] for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    tails = [int(i[8:], 16) for i in ids]  # after the time: 24 hex digits, 96 bits
    for a, b in itertools.pairwise(ids):
        differing = sum(x != y for x, y in zip(a[8:], b[8:], strict=True))
        assert differing >= 6, (a, b)  # a counter changes 1-3 digits; random ones differ in ~22.5 of 24
    for bit in range(96):
        ones = sum(t >> bit & 1 for t in tails)
        assert 700 <= ones <= 1300, (bit, ones)  # about half of 2000 (±13 sd): a constant bit is not random


def submit(ingestor: Ingestor, function: str, key: str, body: bytes, path: str = "/orders") -> httpx.Response:
    return httpx.post(f"{ingestor.url}/async-function/{function}{path}", content=body, headers={"Idempotency-Key": key})


def test_an_idempotency_key_reused_with_another_request_is_422(ingestor: Ingestor, function: str) -> None:
    key = f"order-{uuid.uuid4()}"
    first = submit(ingestor, function, key, b'{"amount": 10}')
    assert first.status_code == 202, first.text
    call_id = first.headers["x-call-id"]

    again = submit(ingestor, function, key, b'{"amount": 10}')
    assert again.status_code == 202, again.text
    assert again.headers["x-call-id"] == call_id and again.json()["duplicate"] is True

    for other in (
        submit(ingestor, function, key, b'{"amount": 10000}'),  # another body
        submit(ingestor, function, key, b'{"amount": 10}', path="/refunds"),  # another path
    ):
        assert other.status_code == 422, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert "Idempotency-Key" in other.json()["error"]["message"]
        assert call_id not in other.text and other.headers["x-call-id"] != call_id  # the first id is not disclosed

    assert submit(ingestor, function, key, b'{"amount": 10}').headers["x-call-id"] == call_id  # still the first


def test_a_private_callback_host_is_refused_without_its_address(ingestor: Ingestor, function: str) -> None:
    response = httpx.post(
        f"{ingestor.url}/async-function/{function}/x", headers={"X-Callback-Url": "http://localhost:9/hook"}
    )
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "localhost" in message and "non-public" in message
    assert "127.0.0.1" not in response.text and "::1" not in response.text
    wait_for(lambda: "callback refused" in ingestor.logs(), 5, "the refusal in the log")
    assert "127.0.0.1" in ingestor.logs() or "::1" in ingestor.logs()  # the operator still sees why
