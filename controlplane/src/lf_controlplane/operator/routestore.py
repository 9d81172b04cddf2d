"""The operator's side of LF_ROUTES: put and delete route entries, skipping writes that change nothing (a restart
that reconciles every object rewrites no entry, so ingestors rebuild nothing)."""

from __future__ import annotations

import contextlib

import msgspec
from lf_core.contract.routes import (
    EventTriggerRoute,
    FunctionRoute,
    HttpTriggerRoute,
    decode_trigger_route,
    encode_event_trigger_route,
    encode_route,
    encode_trigger_route,
    event_trigger_key,
    route_key,
    trigger_key,
)
from lf_core.contract.subjects import (
    ROUTES_BUCKET,
    TRIGGERS_BUCKET,
    event_trigger_route_key,
    function_route_key,
    trigger_route_key,
    trigger_state_key,
)
from lf_core.contract.triggerstate import TriggerState, decode_state
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

_TRIGGER_PREFIX = "tr."


class RouteStore:
    def __init__(self, nc: NatsClient, kv: KeyValue) -> None:
        self.nc = nc
        self.kv = kv

    @classmethod
    async def connect(cls, servers: str, *, replicas: int = 1) -> RouteStore:
        """Connect and open LF_ROUTES, creating it with `replicas` (LF_STREAM_REPLICAS) when no ingestor has yet."""
        nc = NatsClient()
        await nc.connect(
            servers=servers.split(","),
            name="lf-operator",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=5,
            allow_reconnect=True,
        )
        js = nc.jetstream()
        try:
            kv = await js.key_value(ROUTES_BUCKET)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(bucket=ROUTES_BUCKET, history=1, replicas=replicas))
        return cls(nc, kv)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def _put(self, key: str, value: bytes) -> bool:
        try:
            if (await self.kv.get(key)).value == value:
                return False
        except KeyNotFoundError:
            pass
        await self.kv.put(key, value)
        return True

    async def put_function(self, route: FunctionRoute) -> bool:
        """Write the entry; False when it already held exactly this."""
        return await self._put(route_key(route), encode_route(route))

    async def put_trigger(self, route: HttpTriggerRoute) -> bool:
        return await self._put(trigger_key(route), encode_trigger_route(route))

    async def _delete(self, key: str) -> bool:
        try:
            await self.kv.get(key)
        except KeyNotFoundError:
            return False
        await self.kv.delete(key)
        return True

    async def delete_function(self, namespace: str, name: str) -> bool:
        return await self._delete(function_route_key(namespace, name))

    async def delete_trigger(self, namespace: str, name: str) -> bool:
        return await self._delete(trigger_route_key(namespace, name))

    async def put_event_trigger(self, route: EventTriggerRoute) -> bool:
        """A cron or NATS Trigger's entry (`et.`), which the dispatcher runs."""
        return await self._put(event_trigger_key(route), encode_event_trigger_route(route))

    async def delete_event_trigger(self, namespace: str, name: str) -> bool:
        return await self._delete(event_trigger_route_key(namespace, name))

    async def trigger_state(self, namespace: str, name: str) -> TriggerState | None:
        """What the dispatcher recorded of a cron or NATS Trigger in LF_TRIGGERS (None: nothing yet)."""
        try:
            kv = await self.nc.jetstream().key_value(TRIGGERS_BUCKET)
            value = (await kv.get(trigger_state_key(namespace, name))).value
        except (BucketNotFoundError, KeyNotFoundError):
            return None
        try:
            return decode_state(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def trigger_routes(self) -> list[HttpTriggerRoute]:
        """Every HTTP Trigger entry in the bucket (one watch over `tr.>`, read to its end); malformed ones are left
        out, as the ingestors leave them out."""
        routes: list[HttpTriggerRoute] = []
        watcher = await self.kv.watch(f"{_TRIGGER_PREFIX}>", ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:  # the end of the current content
                    break
                if entry.operation is not None or not entry.value:  # a delete marker
                    continue
                try:
                    routes.append(decode_trigger_route(entry.value))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return routes

    async def get(self, key: str) -> bytes | None:
        try:
            return (await self.kv.get(key)).value
        except KeyNotFoundError:
            return None
