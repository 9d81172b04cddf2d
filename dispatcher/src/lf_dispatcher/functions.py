"""The functions the dispatcher pulls for: one `Puller` per `fn.{ns}.{name}` entry of LF_ROUTES, started when the
entry appears, adjusted when it changes (timeout, concurrency, replicas, spec.async), stopped when it goes.

The bucket is watched over a nats-py connection of its own (as the ingestor's route table does,
`lf_dataplane.calls.routetable`): every (re)start of the watch reads the whole current content, then applies
changes one by one, so a function deleted while the watch was down is stopped too. Entries that are not function
routes (`tr.*`: triggers) are skipped here. Pulled calls arrive on the lean connection's inbox
(`NatsRequester.deliveries`) and are routed to their puller by the consumer name in their ack subject.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec
from lf_core.asynccalls import streams as js
from lf_core.bus.requester import NatsRequester
from lf_core.contract.names import InvalidName, check_name
from lf_core.contract.routes import FunctionRoute, decode_route
from lf_core.contract.subjects import ROUTES_BUCKET
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from lf_dispatcher.calls import CallRunner
from lf_dispatcher.metrics import Metrics
from lf_dispatcher.pulling import Capacity, Puller

log = logging.getLogger(__name__)

FUNCTION_PREFIX = "fn."
_DELETES = ("DEL", "PURGE")
TICK_S = 0.5


def parse_function_entry(key: str, value: bytes) -> FunctionRoute | None:
    """The function route under `key`, or None (not a function entry, or malformed: logged)."""
    if not key.startswith(FUNCTION_PREFIX):
        return None
    try:
        route = decode_route(value)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        log.warning("route_entry_skipped", extra={"fields": {"key": key, "reason": str(exc)}})
        return None
    if key != f"{FUNCTION_PREFIX}{route.namespace}.{route.name}":
        log.warning("route_entry_skipped", extra={"fields": {"key": key, "reason": "key and names differ"}})
        return None
    try:
        check_name(route.namespace, "namespace")
        check_name(route.name)
    except InvalidName as exc:
        log.warning("route_entry_skipped", extra={"fields": {"key": key, "reason": str(exc)}})
        return None
    return route


def ack_parts(reply: str) -> tuple[str, int, float, int]:
    """`(consumer, delivered, published at, pending)` of a JetStream ack subject (v1 and v2 formats)."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return tokens[3], int(tokens[4]), int(tokens[7]) / 1e9, int(tokens[8])
    if len(tokens) >= 11:  # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<r>
        return tokens[5], int(tokens[6]), int(tokens[9]) / 1e9, int(tokens[10])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


class Functions:
    """Every puller of this dispatcher, keyed by route key, and the router of what the pulls deliver."""

    def __init__(
        self,
        conn: NatsRequester,
        runner: CallRunner,
        metrics: Metrics,
        *,
        capacity: Capacity,
        ack_grace_s: float,
        default_concurrency: int,
    ) -> None:
        self.conn = conn
        self.runner = runner
        self.metrics = metrics
        self.capacity = capacity
        self.ack_grace_s = ack_grace_s
        self.default_concurrency = default_concurrency
        self.pullers: dict[str, Puller] = {}
        self.by_consumer: dict[str, Puller] = {}
        self.stopped = False
        self.loaded = asyncio.Event()
        conn.deliveries = self._deliver

    # -- routes -----------------------------------------------------------------------------------------------------

    def replace_all(self, routes: dict[str, FunctionRoute]) -> None:
        for key in [k for k in self.pullers if k not in routes]:
            self.remove(key)
        for key, route in routes.items():
            self.put(key, route)
        self.loaded.set()

    def put(self, key: str, route: FunctionRoute) -> None:
        if self.stopped:
            return
        puller = self.pullers.get(key)
        if puller is not None:
            if puller.route != route:
                puller.update(route)
            return
        puller = Puller(
            route, conn=self.conn, capacity=self.capacity,
            counts=self.metrics.of(route.namespace, route.name), ack_grace_s=self.ack_grace_s,
            default_concurrency=self.default_concurrency,
        )  # fmt: skip
        self.pullers[key] = puller
        self.by_consumer[puller.consumer] = puller
        puller.start()

    def remove(self, key: str) -> None:
        puller = self.pullers.pop(key, None)
        if puller is not None:
            puller.stop()
            self.by_consumer.pop(puller.consumer, None)
            log.info("async_stopped", extra={"fields": {"consumer": puller.consumer}})

    def stop_pulling(self) -> None:
        self.stopped = True
        for puller in self.pullers.values():
            puller.stop()

    # -- deliveries -------------------------------------------------------------------------------------------------

    def _deliver(self, reply: str | None, payload: bytes, _status: int, headers: bytes | None) -> None:
        if not reply:
            return
        try:
            consumer, delivered, published, pending = ack_parts(reply)
        except ValueError:
            log.warning("async_unexpected_message", extra={"fields": {"reply": reply[:200]}})
            return
        puller = self.by_consumer.get(consumer)
        if puller is None or puller.stopping:
            self.runner.hand_back(reply)
            return
        puller.counts.pending = pending
        self.runner.start(puller, reply, delivered, published, payload, headers)

    async def tick_forever(self, clock: Callable[[], float] = time.monotonic) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = clock()
            for puller in list(self.pullers.values()):
                puller.tick(now)

    @property
    def held(self) -> int:
        return self.capacity.used


async def open_routes(nc: NatsClient, *, replicas: int = 1) -> KeyValue:
    js_ctx = nc.jetstream()
    try:
        return await js_ctx.key_value(ROUTES_BUCKET)
    except BucketNotFoundError:
        return await js_ctx.create_key_value(KeyValueConfig(bucket=ROUTES_BUCKET, history=1, replicas=replicas))


async def watch_routes(
    nc: NatsClient, functions: Functions, *, replicas: int = 1, restart_after_s: float = 1.0
) -> None:
    """Keep `functions` in step with LF_ROUTES until cancelled."""
    while True:
        try:
            await _watch_once(nc, functions, replicas)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker went away, the watch's consumer was lost...: start over
            log.warning("route_watch_failed", extra={"fields": {"error": repr(exc)}})
        await asyncio.sleep(restart_after_s)


async def _watch_once(nc: NatsClient, functions: Functions, replicas: int) -> None:
    kv = await open_routes(nc, replicas=replicas)
    watcher = await kv.watchall()
    try:
        initial: dict[str, FunctionRoute] = {}
        live = False
        async for entry in watcher:
            if entry is None:  # the end of the bucket's current content
                functions.replace_all(initial)
                log.info("routes_loaded", extra={"fields": {"functions": len(initial)}})
                live = True
                continue
            deleted = entry.operation in _DELETES
            route = None if deleted else parse_function_entry(entry.key, entry.value or b"")
            if live:
                if route is not None:
                    functions.put(entry.key, route)
                elif deleted or entry.key.startswith(FUNCTION_PREFIX):
                    functions.remove(entry.key)
            elif route is None:
                initial.pop(entry.key, None)
            else:
                initial[entry.key] = route
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]


async def ensure_streams(conn: NatsRequester, *, replicas: int) -> None:
    """LF_ASYNC, LF_DEAD, LF_RESULTS and LF_IDEMPOTENCY, created unless they exist; retried while the broker is away."""
    delay = 0.2
    while True:
        try:
            await js.ensure_all(conn.request_headers, replicas=replicas)
            return
        except Exception as exc:  # BusError, JetStreamError, TimeoutError: the broker is starting or away
            log.warning("async_setup_failed", extra={"fields": {"error": repr(exc)}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
