"""LF_ROUTES from the tests, written as the control plane writes it (`lf_core.contract.routes`; the bucket opened,
or created, by the ingestor's own `open_bucket`): one writer, async over a nats-py connection, with sync wrappers
that open a connection of their own for tests that are not coroutines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
from lf_core.contract.routes import FunctionRoute, encode_route, route_key
from lf_core.contract.subjects import ROUTES_BUCKET, function_route_key
from lf_dataplane.calls.routetable import open_bucket
from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue


def function_route(
    name: str,
    *,
    namespace: str = "default",
    timeout_ms: int = 5000,
    max_request_bytes: int = 1 << 20,
    max_response_bytes: int = 64 << 10,
) -> FunctionRoute:
    """A route entry with the limits the tests use unless they say otherwise."""
    return FunctionRoute(
        namespace=namespace, name=name, timeout_ms=timeout_ms, max_request_bytes=max_request_bytes,
        max_response_bytes=max_response_bytes,
    )  # fmt: skip


class Routes:
    """The LF_ROUTES bucket: put and delete function routes, write raw bytes under a function's key, read entries."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, nc: Client) -> Routes:
        """The bucket, created as the ingestor creates it if it is not there yet."""
        return cls(await open_bucket(nc.jetstream()))

    async def put(self, route: FunctionRoute) -> None:
        await self.kv.put(route_key(route), encode_route(route))

    async def put_raw(self, name: str, value: bytes, namespace: str = "default") -> None:
        await self.kv.put(function_route_key(namespace, name), value)

    async def delete(self, name: str, namespace: str = "default") -> None:
        await self.kv.delete(function_route_key(namespace, name))


@asynccontextmanager
async def connected_routes(nats_url: str) -> AsyncIterator[Routes]:
    """`Routes` on a connection of its own, closed at the end."""
    nc = await nats.connect(nats_url)
    try:
        yield await Routes.open(nc)
    finally:
        await nc.close()


def put_routes(nats_url: str, *routes: FunctionRoute) -> None:
    """Write `routes` from sync code."""

    async def put() -> None:
        async with connected_routes(nats_url) as bucket:
            for route in routes:
                await bucket.put(route)

    asyncio.run(put())


async def _read(nats_url: str, key: str) -> tuple[dict[str, Any], int] | None:
    nc = await nats.connect(nats_url)
    try:
        entry = await (await nc.jetstream().key_value(ROUTES_BUCKET)).get(key)
        return dict(json.loads(entry.value or b"null")), int(entry.revision or 0)
    except (KeyNotFoundError, BucketNotFoundError):  # reading never creates the bucket
        return None
    finally:
        await nc.close()


def route_entry(nats_url: str, key: str) -> dict[str, Any] | None:
    """The decoded entry under `key`, or None."""
    found = asyncio.run(_read(nats_url, key))
    return None if found is None else found[0]


def route_revision(nats_url: str, key: str) -> int | None:
    """The KV sequence of the entry under `key`: it moves on every write, even of the same value."""
    found = asyncio.run(_read(nats_url, key))
    return None if found is None else found[1]
