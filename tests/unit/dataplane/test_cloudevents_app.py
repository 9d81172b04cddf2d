"""CloudEvents through the ingestor's RSGI app (fakes of granian and of the bus, as test_ingestor_app): what reaches
the envelope, sync and async, and the refusals that never reach the bus."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from lf_native import decode_request, encode_response

from tests.unit.dataplane.test_ingestor_app import Bus, Proto, Scope, app_with, call, error_of

EVENT = {"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "order.created", "data": {"n": 1}}
BINARY = [("ce-specversion", "1.0"), ("ce-id", "e-1"), ("ce-source", "/orders"), ("ce-type", "order.created")]


def structured_scope(path: str, body: bytes, content_type: str = "application/cloudevents+json") -> Scope:
    headers = [("content-type", content_type), ("content-length", str(len(body))), ("ce-id", "stray")]
    return Scope("POST", path, headers=headers)


class Publishes(Bus):
    """A bus whose JetStream publishes to LF_ASYNC are acknowledged and kept; other API calls (the backlog's
    count) get an answer that says nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[bytes] = []

    async def request_headers(
        self, subject: str, payload: bytes, headers: Sequence[tuple[str, str]], timeout: float
    ) -> bytes:
        if subject.startswith("lf.async."):
            self.published.append(payload)
        return b'{"stream":"LF_ASYNC","seq":1}'


@pytest.mark.parametrize("content_type", ["application/cloudevents+json", "Application/CloudEvents+JSON"])
async def test_a_structured_event_reaches_the_function_in_binary_mode(content_type: str) -> None:
    bus = Bus(encode_response(200, [], b"ok"))
    body = json.dumps(EVENT).encode()
    status, _, _ = await call(app_with(bus), structured_scope("/function/echo", body, content_type), Proto([body]))
    assert status == 200
    request = decode_request(bus.requests[0])
    headers = dict(request.headers)
    assert {k: v for k, v in headers.items() if k.startswith("ce-")} == dict(BINARY)
    assert (headers["content-type"], headers["content-length"]) == ("application/json", str(len(request.body)))
    assert json.loads(request.body) == {"n": 1}


async def test_a_binary_event_reaches_the_function_as_it_came() -> None:
    bus = Bus(encode_response(200, [], b"ok"))
    scope = Scope("POST", "/function/echo", headers=[*BINARY, ("content-type", "text/plain"), ("content-length", "2")])
    status, _, _ = await call(app_with(bus), scope, Proto([b"hi"]))
    request = decode_request(bus.requests[0])
    assert (status, request.body) == (200, b"hi")
    assert [h for h in request.headers if h[0].startswith("ce-") or h[0] == "content-type"] == [
        *BINARY,
        ("content-type", "text/plain"),
    ]


async def test_a_plain_request_is_not_touched() -> None:
    bus = Bus(encode_response(200, [], b"ok"))
    body = json.dumps(EVENT).encode()
    scope = structured_scope("/function/echo", body, content_type="application/json")
    await call(app_with(bus), scope, Proto([body]))
    request = decode_request(bus.requests[0])
    assert request.body == body and ("ce-id", "stray") in request.headers


async def test_an_event_without_an_id_is_400_and_never_reaches_the_bus() -> None:
    bus = Bus()
    body = json.dumps({**EVENT, "id": ""}).encode()
    status, _, answer = await call(app_with(bus), structured_scope("/function/echo", body), Proto([body]))
    assert (status, error_of(answer)) == (400, ("bad_cloudevent", "ingestor"))
    assert "'id'" in json.loads(answer)["error"]["message"] and bus.requests == []
    scope = Scope("GET", "/function/echo", headers=[h for h in BINARY if h[0] != "ce-source"])
    status, _, answer = await call(app_with(bus), scope)
    assert status == 400 and "'source'" in json.loads(answer)["error"]["message"] and bus.requests == []


async def test_a_batch_is_415() -> None:
    bus = Bus()
    scope = structured_scope("/function/echo", b"[]", content_type="application/cloudevents-batch+json")
    status, _, answer = await call(app_with(bus), scope, Proto([b"[]"]))
    assert (status, error_of(answer)) == (415, ("unsupported_cloudevent", "ingestor")) and bus.requests == []


async def test_an_async_structured_event_is_stored_in_binary_mode() -> None:
    bus = Publishes()
    body = json.dumps(EVENT).encode()
    status, _, _ = await call(app_with(bus), structured_scope("/async-function/echo", body), Proto([body]))
    assert status == 202
    request = decode_request(bus.published[0])
    assert dict(request.headers)["ce-id"] == "e-1" and json.loads(request.body) == {"n": 1}


async def test_an_async_event_with_a_bad_time_is_400_and_not_stored() -> None:
    bus = Publishes()
    scope = Scope("POST", "/async-function/echo", headers=[*BINARY, ("ce-time", "today"), ("content-length", "0")])
    status, _, answer = await call(app_with(bus), scope, Proto([]))
    assert (status, error_of(answer)) == (400, ("bad_cloudevent", "ingestor")) and bus.published == []
    assert "'time'" in json.loads(answer)["error"]["message"]
