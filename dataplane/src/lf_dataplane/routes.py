"""Entries of the LF_ROUTES key-value bucket: what an ingestor needs to serve a function.

Written by `lf dev` (and later the operator) as JSON under `fn.{namespace}.{name}`; every ingestor watches the
bucket and rebuilds its native routing table from the entries it holds.
"""

from __future__ import annotations

import msgspec

from lf_dataplane.specs import Function
from lf_dataplane.subjects import function_route_key


class FunctionRoute(msgspec.Struct, frozen=True, kw_only=True):
    namespace: str
    name: str
    timeout_ms: int
    max_request_bytes: int
    max_response_bytes: int


def route_of(function: Function) -> FunctionRoute:
    return FunctionRoute(
        namespace=function.namespace,
        name=function.name,
        timeout_ms=round(function.timeout_s * 1000),
        max_request_bytes=function.max_request_bytes,
        max_response_bytes=function.max_response_bytes,
    )


def route_key(route: FunctionRoute) -> str:
    return function_route_key(route.namespace, route.name)


def encode_route(route: FunctionRoute) -> bytes:
    return msgspec.json.encode(route)


def decode_route(data: bytes) -> FunctionRoute:
    """Raises msgspec.ValidationError / DecodeError on a malformed entry."""
    return msgspec.json.decode(data, type=FunctionRoute)
