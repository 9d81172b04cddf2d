"""Entries of the LF_ROUTES key-value bucket: what an ingestor needs to serve a function.

Written by `lf dev` (and later the operator) as JSON under `fn.{namespace}.{name}`; every ingestor watches the
bucket and rebuilds its native routing table from the entries it holds.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from lf_core.contract.specs import CacheRule, Function, RateRule
from lf_core.contract.subjects import function_route_key, trigger_route_key


class FunctionRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One function as the ingestor sees it. Fields added later have defaults, so older entries still decode;
    older ingestors ignore fields they do not know (msgspec's default)."""

    namespace: str
    name: str
    timeout_ms: int
    max_request_bytes: int
    max_response_bytes: int
    revision: str = ""
    """Changes on every deploy of new code or spec; the ingestors drop the function's cached answers."""
    max_inflight: int = 0
    """Calls one ingestor worker forwards at once (concurrency x replicas); more wait in a bounded queue. 0: no cap."""
    cache: CacheRule | None = None
    rate_limit: RateRule | None = None
    runtime: str = ""
    """The function's runtime ("" in older entries: treated as one that takes async calls)."""


# Runtimes whose replicas pull async calls from LF_ASYNC. An async call to any other is refused (501) rather
# than stored where nothing would ever run it.
ASYNC_RUNTIMES = frozenset({"python", "go", "rust", ""})


def route_of(function: Function, revision: str = "") -> FunctionRoute:
    """The route entry of `function`; `revision` names the deployed code (lf dev: the folder's fingerprint)."""
    return FunctionRoute(
        namespace=function.namespace,
        name=function.name,
        timeout_ms=round(function.timeout_s * 1000),
        max_request_bytes=function.max_request_bytes,
        max_response_bytes=function.max_response_bytes,
        revision=revision,
        max_inflight=function.concurrency * max(function.replicas, 1),
        cache=function.cache,
        rate_limit=function.rate_limit,
        runtime=function.runtime,
    )


def route_key(route: FunctionRoute) -> str:
    return function_route_key(route.namespace, route.name)


def encode_route(route: FunctionRoute) -> bytes:
    return msgspec.json.encode(route)


def decode_route(data: bytes) -> FunctionRoute:
    """Raises msgspec.ValidationError / DecodeError on a malformed entry."""
    return msgspec.json.decode(data, type=FunctionRoute)


class HttpTriggerRoute(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP Trigger, under `tr.{namespace}.{name}`: requests for `methods` (empty: any) on `host` ("" any,
    exact, or "*.suffix") whose path matches `path` go to `function` in the same namespace, with that function's
    timeout and limits. It serves only while the function's own entry exists. Ingestors that predate triggers skip
    these keys (they log the entry as malformed), so the bucket stays readable by them."""

    kind: Literal["http"] = "http"
    namespace: str
    name: str
    function: str
    path: str
    host: str = ""
    methods: tuple[str, ...] = ()


def trigger_key(route: HttpTriggerRoute) -> str:
    return trigger_route_key(route.namespace, route.name)


def encode_trigger_route(route: HttpTriggerRoute) -> bytes:
    return msgspec.json.encode(route)


def decode_trigger_route(data: bytes) -> HttpTriggerRoute:
    """Raises msgspec.ValidationError / DecodeError on a malformed entry."""
    return msgspec.json.decode(data, type=HttpTriggerRoute)
