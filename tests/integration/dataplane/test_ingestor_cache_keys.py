"""The response cache's key against a real ingestor (issue 14, item 10): the Host a request names is part of it
(a function routed for two hosts keeps two entries), and an answer whose `Vary` names a request header the
function's `spec.cache.vary` does not list is not stored, so it is never served to a request that differs there."""

from __future__ import annotations

import httpx
import msgspec
from lf_core.contract.specs import CacheRule
from lf_native import RequestEnvelope, encode_response
from nats.aio.client import Client
from test_ingestor import client as client
from test_ingestor import ingestor as ingestor
from test_ingestor import nc as nc
from test_ingestor import responder, unique

from tests.harness.ingestor import Ingestor, wait_routed
from tests.harness.routes import Routes, function_route


def answer_per(header: str, vary: str = ""):  # type: ignore[no-untyped-def]
    """A replica answering with the request's `header` (and a `Vary` header when given); it counts its calls."""
    calls: list[str] = []

    def handler(request: RequestEnvelope) -> bytes:
        value = dict(request.headers).get(header, "")
        calls.append(value)
        headers = [("vary", vary)] if vary else []
        return encode_response(200, headers, f"for {value}".encode(), request.call_id)

    return handler, calls


async def cached_function(routes: Routes, client: httpx.AsyncClient, base: str, vary: tuple[str, ...] = ()) -> str:
    name = unique("cache")
    await routes.put(msgspec.structs.replace(function_route(name), cache=CacheRule(ttl_s=60, vary=vary)))
    url = f"{base}/function/{name}"
    await wait_routed(client, url)
    return url


async def test_two_hosts_are_two_entries(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    url = await cached_function(routes, client, ingestor.url)
    handler, calls = answer_per("host")
    async with responder(nc, url.rsplit("/", 1)[1], handler):
        first = [await client.get(url, headers={"host": host}) for host in ("a.example", "b.example")]
        again = [await client.get(url, headers={"host": host}) for host in ("a.example", "B.EXAMPLE")]
    assert [r.text for r in first] == ["for a.example", "for b.example"]
    assert [r.headers["x-cache"] for r in first] == ["MISS", "MISS"]
    assert [(r.text, r.headers["x-cache"]) for r in again] == [("for a.example", "HIT"), ("for b.example", "HIT")]
    assert calls == ["a.example", "b.example"]


async def test_an_answer_varying_on_an_unlisted_header_is_not_served_to_another_value(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    url = await cached_function(routes, client, ingestor.url)
    handler, calls = answer_per("x-tenant", vary="Accept-Encoding, X-Tenant")
    async with responder(nc, url.rsplit("/", 1)[1], handler):
        a = await client.get(url, headers={"x-tenant": "a"})
        b = await client.get(url, headers={"x-tenant": "b"})
        a_again = await client.get(url, headers={"x-tenant": "a"})
    assert [r.text for r in (a, b, a_again)] == ["for a", "for b", "for a"]
    assert [r.headers["x-cache"] for r in (a, b, a_again)] == ["MISS", "MISS", "MISS"]  # not stored
    assert calls == ["a", "b", "a"]


async def test_an_answer_varying_on_listed_headers_is_cached_per_value(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    url = await cached_function(routes, client, ingestor.url, vary=("x-tenant",))
    handler, calls = answer_per("x-tenant", vary="X-Tenant")
    async with responder(nc, url.rsplit("/", 1)[1], handler):
        answers = [await client.get(url, headers={"x-tenant": t}) for t in ("a", "b", "a", "b")]
    assert [(r.text, r.headers["x-cache"]) for r in answers] == [
        ("for a", "MISS"), ("for b", "MISS"), ("for a", "HIT"), ("for b", "HIT"),
    ]  # fmt: skip
    assert calls == ["a", "b"]
