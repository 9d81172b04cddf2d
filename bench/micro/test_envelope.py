"""Envelope encode + decode of a 1 KiB request from Python: the native codec against msgspec (msgpack of a Struct
with the same fields) and against carrying the fields as NATS headers (what a headers-only design would do).

    uv run pytest bench/micro --benchmark-only        (off in the normal test run)
"""

from __future__ import annotations

from typing import Any

import msgspec
from lf_native import decode_request, encode_request

BODY = b"x" * 1024
HEADERS = [("host", "example.com"), ("user-agent", "bench/1.0"), ("accept", "*/*"), ("content-type", "text/plain")]
CALL_ID = "6b0b634a1e3f98149e69000000000003"


class MsgspecRequest(msgspec.Struct, array_like=True):
    call_id: str
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    params: list[tuple[str, str]]
    body: bytes
    budget_ms: int
    traceparent: str
    tracestate: str


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MsgspecRequest)


def native_round_trip() -> Any:
    data = encode_request(CALL_ID, "POST", "/orders/1", "a=1", HEADERS, BODY, 30_000)
    return decode_request(data)


def msgspec_round_trip() -> Any:
    req = MsgspecRequest(CALL_ID, "POST", "/orders/1", "a=1", HEADERS, [], BODY, 30_000, "", "")
    return _decoder.decode(_encoder.encode(req))


def nats_headers_round_trip() -> Any:
    """Fields as a NATS/1.0 header block plus the body, built and parsed the way nats-py does."""
    lines = [f"Lf-Call-Id: {CALL_ID}", "Lf-Method: POST", "Lf-Path: /orders/1", "Lf-Query: a=1", "Lf-Budget: 30000"]
    lines += [f"{name}: {value}" for name, value in HEADERS]
    block = ("NATS/1.0\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode()
    data = block + BODY
    head, _, body = data.partition(b"\r\n\r\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        fields.setdefault(name, []).append(value)
    return fields, body


def test_native(benchmark: Any) -> None:
    assert benchmark(native_round_trip).body == BODY


def test_msgspec(benchmark: Any) -> None:
    assert benchmark(msgspec_round_trip).body == BODY


def test_nats_headers(benchmark: Any) -> None:
    assert benchmark(nats_headers_round_trip)[1] == BODY
