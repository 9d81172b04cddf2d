"""The RSGI shell over fakes of granian's scope and protocol and of the bus: no sockets, no sleeps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import pytest
from lf_core.bus.errors import BrokerUnavailable, BusTimeout, NoResponders
from lf_core.contract.protocol import ErrorKind
from lf_core.contract.routes import FunctionRoute
from lf_dataplane.calls.routetable import Routes
from lf_dataplane.http.app import Ingestor
from lf_dataplane.settings import Settings
from lf_native import decode_request, encode_response


class Headers:
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def get(self, key: str, default: str | None = None) -> str | None:
        return next((v for k, v in self._items if k == key), default)

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self._items)


class Scope:
    def __init__(self, method: str, path: str, query: str = "", headers: list[tuple[str, str]] | None = None):
        self.method = method
        self.path = path
        self.query_string = query
        self.headers = Headers([("host", "localhost"), *(headers or [])])
        self.authority = None
        self.http_version = "1.1"


class Proto:
    def __init__(self, chunks: list[bytes] = ()) -> None:  # type: ignore[assignment]
        self.chunks = list(chunks)
        self.read = 0
        self.response: tuple[int, dict[str, str], bytes] | None = None

    async def __call__(self) -> bytes:
        self.read += 1
        return b"".join(self.chunks)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.response = (status, dict(headers), body)


class Bus:
    connected = True

    def __init__(self, *replies: bytes | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        self.requests.append(payload)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def request_headers(
        self, subject: str, payload: bytes, headers: Sequence[tuple[str, str]], timeout: float
    ) -> bytes:
        raise BrokerUnavailable("no JetStream here: the async endpoints are tested against a real nats-server")


def app_with(bus: Bus, *, loaded: bool = True, max_request_bytes: int = 100) -> Ingestor:
    routes = Routes()
    if loaded:
        entry = FunctionRoute(
            namespace="default", name="echo", timeout_ms=1000, max_request_bytes=max_request_bytes,
            max_response_bytes=10,
        )  # fmt: skip
        routes.replace_all({"fn.default.echo": entry})
    return Ingestor(Settings(max_header_bytes=1024), bus, routes)


async def call(app: Ingestor, scope: Scope, proto: Proto | None = None) -> tuple[int, dict[str, str], bytes]:
    proto = proto or Proto()
    await app.__rsgi__(scope, proto)
    assert proto.response is not None
    status, headers, body = proto.response
    assert len(headers["x-call-id"]) == 32
    assert float(headers["x-duration-seconds"]) >= 0
    return status, headers, body


def error_of(body: bytes) -> tuple[str, str]:
    error = json.loads(body)["error"]
    return error["code"], error["layer"]


async def test_a_call_carries_method_rest_query_headers_and_body() -> None:
    bus = Bus(encode_response(201, [("content-type", "text/plain"), ("content-length", "99")], b"made"))
    scope = Scope("POST", "/function/echo/a/b", "x=1&y=2", [("content-length", "4"), ("x-k", "v")])
    status, headers, body = await call(app_with(bus), scope, Proto([b"ping"]))
    assert (status, body, headers["content-type"]) == (201, b"made", "text/plain")
    assert "content-length" not in headers  # framing is the server's business
    request = decode_request(bus.requests[0])
    assert (request.method, request.path, request.query, request.body) == ("POST", "/a/b", "x=1&y=2", b"ping")
    assert ("x-k", "v") in request.headers
    assert request.call_id == headers["x-call-id"]
    assert 900 < request.budget_ms <= 1000


async def test_the_function_root_path_is_slash() -> None:
    bus = Bus(encode_response(200, [], b""))
    await call(app_with(bus), Scope("GET", "/function/echo"))
    assert decode_request(bus.requests[0]).path == "/"


async def test_body_over_the_limit_is_refused_from_content_length_unread() -> None:
    proto = Proto([b"x" * 101])
    status, _, body = await call(
        app_with(Bus()), Scope("POST", "/function/echo", headers=[("content-length", "101")]), proto
    )
    assert (status, error_of(body)) == (413, ("body_too_large", "ingestor"))
    assert proto.read == 0


async def test_chunked_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    proto = Proto([b"x" * 60, b"x" * 60, b"x" * 60])
    scope = Scope("POST", "/function/echo", headers=[("transfer-encoding", "chunked")])
    status, _, _ = await call(app_with(Bus()), scope, proto)
    assert status == 413
    assert proto.read == 2


async def test_headers_over_the_limit_are_431() -> None:
    status, _, body = await call(app_with(Bus()), Scope("GET", "/function/echo", headers=[("x-big", "v" * 1024)]))
    assert (status, error_of(body)) == (431, ("headers_too_large", "ingestor"))


@pytest.mark.parametrize(
    ("reply", "status", "code", "layer"),
    [
        (encode_response(500, [], b"", error_kind=ErrorKind.HANDLER, error="boom"), 500, "function_error", "function"),
        (encode_response(504, [], b"", error_kind=ErrorKind.TIMEOUT), 504, "timeout", "runtime"),
        (encode_response(502, [], b"", error_kind=ErrorKind.INTERNAL), 502, "runtime_error", "runtime"),
        (encode_response(200, [], b"x" * 11), 502, "response_too_large", "runtime"),
        (b"garbage", 502, "bad_response", "runtime"),
        (NoResponders("s"), 503, "no_replica", "broker"),
        (BusTimeout("s"), 504, "timeout", "ingestor"),
        (BrokerUnavailable("down"), 503, "broker_unavailable", "broker"),
    ],
    ids=["handler", "timeout", "internal", "too-large", "garbage", "no-responders", "no-reply", "broker-down"],
)
async def test_outcomes(reply: bytes | Exception, status: int, code: str, layer: str) -> None:
    got, headers, body = await call(app_with(Bus(reply)), Scope("GET", "/function/echo"))
    assert (got, error_of(body)) == (status, (code, layer))
    assert ("retry-after" in headers) == (status == 503)


async def test_misses_and_probes() -> None:
    app = app_with(Bus())
    assert (await call(app, Scope("GET", "/function/nope")))[0] == 404
    assert (await call(app, Scope("GET", "/function/No")))[0] == 400
    assert (await call(app, Scope("GET", "/healthz")))[0] == 200
    assert (await call(app, Scope("GET", "/readyz")))[0] == 200
    status, headers, _ = await call(app, Scope("POST", "/readyz"))
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    app.begin_drain()
    assert (await call(app, Scope("GET", "/readyz")))[0] == 503
    assert (await call(app, Scope("GET", "/healthz")))[0] == 200


async def test_before_the_routes_load_calls_and_readyz_are_503() -> None:
    app = app_with(Bus(), loaded=False)
    status, headers, body = await call(app, Scope("GET", "/function/echo"))
    assert (status, error_of(body), headers["retry-after"]) == (503, ("not_ready", "ingestor"), "1")
    assert (await call(app, Scope("GET", "/readyz")))[0] == 503


async def test_readyz_is_503_while_the_broker_is_disconnected() -> None:
    bus = Bus()
    app = app_with(bus)
    bus.connected = False
    status, _, body = await call(app, Scope("GET", "/readyz"))
    assert (status, json.loads(body)["error"]["message"]) == (503, "not connected to the broker")
    bus.connected = True
    assert (await call(app, Scope("GET", "/readyz")))[0] == 200
