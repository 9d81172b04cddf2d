"""handlers.to_parts: what a handler returns becomes status, headers and body."""

from __future__ import annotations

import dataclasses
from http import HTTPStatus

import pytest
from lf_runtime import Response
from lf_runtime.handlers import UnsupportedReturnError, to_parts

TEXT = [("content-type", "text/plain; charset=utf-8")]
JSON = [("content-type", "application/json")]
OCTETS = [("content-type", "application/octet-stream")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("héllo", (200, TEXT, "héllo".encode())),
        (b"\x00\x01", (200, OCTETS, b"\x00\x01")),
        (bytearray(b"ab"), (200, OCTETS, b"ab")),
        (memoryview(b"ab"), (200, OCTETS, b"ab")),
        ({"a": [1, 2]}, (200, JSON, b'{"a":[1,2]}')),
        ([1, "x"], (200, JSON, b'[1,"x"]')),
        ({}, (200, JSON, b"{}")),
        (None, (204, [], b"")),
        ("", (200, TEXT, b"")),
    ],
    ids=["str", "bytes", "bytearray", "memoryview", "dict", "list", "empty-dict", "none", "empty-str"],
)
def test_plain_values(value: object, expected: tuple[int, list[tuple[str, str]], bytes]) -> None:
    assert to_parts(value) == expected


def test_response_as_given() -> None:
    response = Response(b"x", status=201, headers={"X-A": "1"}, content_type="image/png")
    assert to_parts(response) == (201, [("X-A", "1"), ("content-type", "image/png")], b"x")


def test_response_keeps_repeated_headers() -> None:
    response = Response(headers=[("set-cookie", "a=1"), ("set-cookie", "b=2")])
    assert to_parts(response) == (200, [("set-cookie", "a=1"), ("set-cookie", "b=2")], b"")


def test_response_str_body_defaults_to_text() -> None:
    assert to_parts(Response("hi", status=HTTPStatus.ACCEPTED)) == (202, TEXT, b"hi")


def test_content_type_replaces_one_from_headers() -> None:
    response = Response(b"{}", headers={"Content-Type": "text/html"}, content_type="application/json")
    assert to_parts(response)[1] == JSON


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (Response.json({"ok": True}, status=201), (201, JSON, b'{"ok":true}')),
        (Response.text("t"), (200, TEXT, b"t")),
        (Response.html("<p>"), (200, [("content-type", "text/html; charset=utf-8")], b"<p>")),
        (Response.redirect("/x"), (302, [("location", "/x")], b"")),
        (Response.empty(), (204, [], b"")),
    ],
    ids=["json", "text", "html", "redirect", "empty"],
)
def test_response_helpers(response: Response, expected: tuple[int, list[tuple[str, str]], bytes]) -> None:
    assert to_parts(response) == expected


class Thing:
    pass


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (42, "handler returned int"),
        ((1, 2), "handler returned tuple"),
        (Thing(), "handler returned test_return_mapping.Thing"),
        ({"a": Thing()}, "not JSON-serializable"),
    ],
    ids=["int", "tuple", "object", "dict-with-object"],
)
def test_unsupported_values_name_the_type(value: object, fragment: str) -> None:
    with pytest.raises(UnsupportedReturnError, match=fragment):
        to_parts(value)


@pytest.mark.parametrize("status", [99, 600, True, "200"])
def test_bad_status(status: object) -> None:
    response = Response()
    response.status = status  # type: ignore[assignment]
    with pytest.raises(UnsupportedReturnError, match="status"):
        to_parts(response)


def test_bad_body() -> None:
    response = Response()
    response.body = 12  # type: ignore[assignment]
    with pytest.raises(UnsupportedReturnError, match="Response.body is int"):
        to_parts(response)


def test_dict_subclasses_and_dataclasses_via_response_json() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    assert to_parts(Response.json(Point(1)))[2] == b'{"x":1}'
