"""Request: lazy views over the envelope (query, headers, params, body, JSON, deadline)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from lf_runtime import Headers, QueryParams, Request, RequestError


@dataclass
class FakeEnvelope:
    """The envelope fields Request reads (lf_native.RequestEnvelope in production)."""

    call_id: str = "call-1"
    method: str = "GET"
    path: str = "/"
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    traceparent: str = ""
    tracestate: str = ""


def request(**fields: object) -> Request:
    return Request(FakeEnvelope(**fields), time.monotonic() + 10)  # type: ignore[arg-type]


def test_plain_fields() -> None:
    req = request(method="POST", path="/a/b", call_id="c9", traceparent="00-ab-cd-01")
    assert (req.method, req.path, req.call_id, req.traceparent) == ("POST", "/a/b", "c9", "00-ab-cd-01")


def test_query_is_a_multidict() -> None:
    req = request(query="a=1&b=x%20y&a=2&empty=&flag")
    assert req.query_string == "a=1&b=x%20y&a=2&empty=&flag"
    assert req.query["a"] == "1"
    assert req.query.get_all("a") == ["1", "2"]
    assert req.query.get("b") == "x y"
    assert req.query.get("empty") == ""
    assert req.query.get("flag") == ""
    assert req.query.get("missing") is None
    assert req.query.get("missing", "d") == "d"
    assert req.query.get_all("missing") == []
    assert list(req.query) == ["a", "b", "empty", "flag"]
    assert req.query_params == {"a": "1", "b": "x y", "empty": "", "flag": ""}


def test_query_names_are_case_sensitive() -> None:
    query = QueryParams.parse("A=1")
    assert "A" in query
    assert "a" not in query


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    req = request(headers=[("Content-Type", "text/plain"), ("X-Tag", "a"), ("x-tag", "b")])
    headers = req.headers
    assert headers["content-type"] == "text/plain"
    assert headers.get("CONTENT-TYPE") == "text/plain"
    assert headers.get_all("X-TAG") == ["a", "b"]
    assert "x-Tag" in headers
    assert headers.get("missing") is None
    assert sorted(headers) == ["content-type", "x-tag"]
    assert len(headers) == 2
    assert headers.multi_items() == [("Content-Type", "text/plain"), ("X-Tag", "a"), ("x-tag", "b")]
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_are_parsed_once() -> None:
    req = request(headers=[("a", "1")])
    assert req.headers is req.headers


def test_headers_object_is_a_mapping() -> None:
    assert dict(Headers([("A", "1"), ("a", "2")])) == {"a": "1"}


def test_params() -> None:
    assert request(params=[("id", "42")]).params == {"id": "42"}


def test_body_and_text() -> None:
    req = request(body="héllo".encode())
    assert req.body == "héllo".encode()
    assert req.text == "héllo"
    assert request(body=b"\xff").text == "\ufffd"


def test_json() -> None:
    assert request(body=b'{"a": [1, null]}').json() == {"a": [1, None]}


@pytest.mark.parametrize(
    ("body", "fragment"), [(b"", "body is empty"), (b"{nope", "not valid JSON"), (b"[1]x", "not valid JSON")]
)
def test_json_errors_are_clear(body: bytes, fragment: str) -> None:
    with pytest.raises(RequestError, match=fragment):
        request(body=body).json()


def test_json_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        request(body=b"x").json()


def test_remaining_counts_down_and_stops_at_zero() -> None:
    req = Request(FakeEnvelope(), time.monotonic() + 5)  # type: ignore[arg-type]
    assert 4 < req.remaining() <= 5
    past = Request(FakeEnvelope(), time.monotonic() - 1)  # type: ignore[arg-type]
    assert past.remaining() == 0.0


def test_repr() -> None:
    assert repr(request(method="PUT", path="/x", call_id="c1")) == "<Request PUT /x call_id=c1>"
