"""The ingestor's RSGI application: a thin shell that routes, checks, forwards and answers.

Per request it does one native lookup, a header-size sum, an optional body read, one native encode, one bus
request, one native decode and one response; everything per function (subject, timeout, limits) was computed when
the route table was built. A function with a `rateLimit` adds one token-bucket take (in-process; with Valkey the
buckets are synced in the background), one with a `cache` a key build and a dict lookup that answers a hit
before any gate, body read or bus request. Calls then pass the function's in-flight gate and the worker's
(`overload.Gate`: fast path a counter, beyond the cap a bounded queue, beyond that 429 / 503).
The decisions live in pure modules: `http.mapping` (what to answer), `lf_core.bus.invoking` (how to reach a replica),
`calls.routetable` (which function). granian loads it with `create_app` (factory, RSGI, uvloop).

Shutdown, as granian 2.8 does it: the main process turns SIGTERM into SIGTERM for each worker; a worker stops
accepting, waits for its in-flight requests, then calls `__rsgi_del__`. Our server (`server.py`) first sends
SIGUSR1 to the workers and waits LF_DRAIN_DELAY, so `/readyz` answers 503 while the listener is still open.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from lf_core import tracing as _tracing
from lf_core.bus.errors import AuthorizationError, BrokerUnavailable, BusTimeout, NoResponders, PayloadTooLarge
from lf_core.bus.invoking import BadResponse, Bus, invoke
from lf_core.bus.requester import NatsRequester
from lf_core.stores.interface import RateLimiter
from lf_core.stores.local import LocalRateLimiter
from lf_native import MethodNotAllowed, RouteNotFound, encode_request
from nats.aio.client import Client as NatsClient
from nats.errors import AuthorizationError as NatsAuthorizationError

from lf_dataplane.calls.caching import ResponseCache
from lf_dataplane.calls.callids import CallIds
from lf_dataplane.calls.overload import FairGate
from lf_dataplane.calls.replies import Header, Reply
from lf_dataplane.calls.routetable import Defaults, FunctionTarget, Routes, watch_routes
from lf_dataplane.http import cloudevents as ce
from lf_dataplane.http import mapping as hm
from lf_dataplane.http.asyncapi import AsyncCalls
from lf_dataplane.http.bodies import BodyBudget
from lf_dataplane.http.ratelimits import RateLimits
from lf_dataplane.observability import callspans
from lf_dataplane.observability.functionlogs import ensure_logs_stream
from lf_dataplane.observability.metrics import WorkerStats
from lf_dataplane.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


_JSON: list[Header] = [("content-type", "application/json")]
_PROBE_METHODS = ("GET", "HEAD")
_SAFE_METHODS = ("GET", "HEAD")
_TRACING = _tracing.ENABLED  # read once at import; off, OpenTelemetry is never imported


class _Call:
    """One request's facts on their way `_call` → `_cached` → `_forward` → `_invoke`, instead of eight arguments.

    `items` is the header list built once (size check, then envelope); `fn_ns` the runtime's time from the
    response envelope (for the overhead header); `span` the call's SERVER span with tracing on; `stats` the
    function's counters in this worker with metrics on (looked up once per call).
    """

    __slots__ = ("scope", "proto", "call_id", "start", "items", "target", "rest", "params", "fn_ns", "span", "stats")

    scope: Any
    proto: Any
    call_id: str
    start: float
    items: Any
    target: FunctionTarget
    rest: str
    params: Any
    fn_ns: int
    span: callspans.CallSpan | None
    stats: Any

    def __init__(self, scope: Any, proto: Any, call_id: str, start: float) -> None:
        self.scope = scope
        self.proto = proto
        self.call_id = call_id
        self.start = start
        self.fn_ns = 0
        self.span = None
        self.stats = None


class Ingestor:
    """The RSGI app over a bus and a route table (tests pass their own). `background` runs for the worker's life
    (connect, watch routes); `close` runs at exit; the cache and the rate limiter default to in-process ones."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        routes: Routes,
        *,
        background: Callable[[], Coroutine[Any, Any, None]] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
        cache: ResponseCache | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.routes = routes
        if cache is None:  # (an empty cache is falsy: it has a length)
            cache = ResponseCache(max_bytes=settings.cache_max_bytes, max_entry_bytes=settings.cache_max_entry_bytes)
        self.cache = cache
        if routes.on_redeploy is None:
            routes.on_redeploy = self.cache.drop_function
        self.limiter: RateLimiter = LocalRateLimiter() if limiter is None else limiter
        self.rates = RateLimits(self.limiter, settings.client_ip_header)  # sync and async calls alike
        self.gate = FairGate(settings.max_inflight, settings.max_queue, settings.namespace_inflight_cap)
        self.bodies = BodyBudget(settings.max_inflight_body_bytes, settings.body_timeout_s)  # sync and async alike
        self._queue_timeout_s = settings.queue_timeout_s
        self.draining = False
        self.broker_problem = ""  # why the background task cannot connect (said by /readyz), "" when it can
        self._background = background
        self._close = close
        self._task: asyncio.Task[None] | None = None
        self._next_call_id = CallIds().next_id
        self._max_header_bytes = settings.max_header_bytes
        self._probes: dict[str, Callable[[], Reply]] = {"/healthz": self._healthz, "/readyz": self._readyz}
        self.metrics: WorkerStats | None = None
        self._stats: dict[str, Any] | None = None
        self._flusher: asyncio.Task[None] | None = None
        if settings.metrics:
            self.metrics = WorkerStats(settings.metrics_dir or None)
            self.metrics.sources.update(cache=self.cache, gate=self.gate, app=self)
            self._stats = self.metrics.functions  # served by the admin listener, not here (observability/admin.py)
        self.asyncs = AsyncCalls(
            bus.request_headers,
            publish_timeout_s=settings.async_publish_timeout_s,
            allow_private_callbacks=settings.callback_allow_private,
            resolve_timeout_s=settings.callback_resolve_timeout_s,
            stream_replicas=settings.stream_replicas,
            rates=self.rates,
            bodies=self.bodies,
            namespace_backlog=settings.namespace_async_backlog,
        )

    # -- lifecycle (granian calls these in each worker) -----------------------------------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGUSR1, self.begin_drain)
        if self._background is not None:
            self._task = loop.create_task(self._background())
        if self.metrics is not None and self.metrics.directory is not None:
            self._flusher = loop.create_task(self.metrics.run_flusher(self.settings.metrics_flush_s))
        log.info("worker started", extra={"fields": {"pid": os.getpid()}})

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.draining = True
        if self._task is not None:
            self._task.cancel()
            loop.run_until_complete(asyncio.gather(self._task, return_exceptions=True))
        if self._flusher is not None:  # writes the last snapshot as it stops
            self._flusher.cancel()
            loop.run_until_complete(asyncio.gather(self._flusher, return_exceptions=True))
        if self._close is not None:
            loop.run_until_complete(self._close())
        log.info("worker stopped", extra={"fields": {"pid": os.getpid()}})

    def begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            log.info("worker draining", extra={"fields": {"pid": os.getpid()}})

    @property
    def rate_limited(self) -> int:
        """Calls refused by a function's rate limit in this worker, sync and async."""
        return self.rates.refused

    @property
    def ready(self) -> bool:
        return not self.draining and self.bus.connected and self.routes.loaded

    # -- requests --------------------------------------------------------------------------------------------------

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        start = time.perf_counter()
        call = _Call(scope, proto, self._next_call_id(), start)
        path = scope.path
        try:
            probe = self._probes.get(path)
            if probe is None:
                status, headers, body = await self._call(call, path)
            elif scope.method in _PROBE_METHODS:
                status, headers, body = probe()
            else:
                raise hm.method_not_allowed(_PROBE_METHODS)
        except hm.HttpError as err:
            status, headers, body = err.status, err.headers(), err.body()
        elapsed = time.perf_counter() - start
        headers.append((hm.CALL_ID_HEADER, call.call_id))
        headers.append((hm.DURATION_HEADER, f"{elapsed:.6f}"))
        headers.append((hm.OVERHEAD_HEADER, f"{elapsed - call.fn_ns / 1e9:.6f}"))
        headers.append(hm.SERVER)  # else granian adds `server: granian`
        proto.response_bytes(status, headers, body)

    def _route(self, call: _Call, table: Any, path: str) -> FunctionTarget | None:
        """Check the headers' size and look the function up (filling `call`); None when no function route matches."""
        if table is None:
            raise hm.not_ready()
        scope = call.scope
        headers = scope.headers
        items = call.items = headers.items()
        hm.check_headers_size(items, self._max_header_bytes)
        try:
            target, rest, call.params = table.lookup(scope.method, scope.authority or headers.get("host", ""), path)
        except MethodNotAllowed as exc:
            raise hm.method_not_allowed(exc.args[1]) from None
        except RouteNotFound:
            return None
        call.target = target
        call.rest = rest or "/"
        return target  # type: ignore[no-any-return]

    async def _call(self, call: _Call, path: str) -> Reply:
        table = self.routes.table
        scope = call.scope
        target = self._route(call, table, path)
        if target is None:  # /async-function/..., /invocations/...: after the lookup, so sync calls pay nothing
            answered = await self.asyncs.handle(scope, call.proto, path, call.call_id, table)
            call.call_id = answered.call_id  # an async answer names its call (an Idempotency-Key's first one)
            return answered.reply
        method = scope.method
        headers = scope.headers
        rest = call.rest
        span = None
        if _TRACING:  # the function call's SERVER span (observability/callspans.py); probes and unknown paths get none
            span = call.span = callspans.CallSpan.start(method, headers, call.call_id, target.namespace, target.name)
        stats = self._stats
        if stats is not None:  # metrics: a dict lookup and a few increments (see metrics.py)
            fstats = call.stats = stats.get(target.label) or self._new_stats(target)
            fstats.inflight += 1
        try:
            limit_headers = None if target.rate is None else await self.rates.take(scope, headers, target)
            policy = target.cache
            if policy is None or method not in policy.methods:
                reply = await self._forward(call, None)
            elif (
                method == "GET"
                and (key := policy.key(method, rest, scope.query_string, headers)) is not None
                and (hit := self.cache.hit(key))
            ):
                reply = hit  # the hot case of a cached function, without another coroutine
            else:
                reply = await self._cached(call)
        except BaseException as exc:
            if stats is not None and isinstance(exc, hm.HttpError):
                fstats.failed(exc.status, exc.layer, exc.code, time.perf_counter() - call.start)
            if span is not None:
                span.fail(exc)
            raise
        finally:
            if stats is not None:
                fstats.inflight -= 1
        if stats is not None:
            fstats.answered(reply[0], len(reply[2]), time.perf_counter() - call.start)
        if span is not None:
            span.end(reply[0])
        if limit_headers is not None:
            reply[1].extend(limit_headers)
        return reply

    async def _cached(self, call: _Call) -> Reply:
        """A call to a function that caches this method: a tier-1 hit answers at once, a miss fills the key."""
        target = call.target
        policy = target.cache
        assert policy is not None
        scope = call.scope
        method = scope.method
        headers = scope.headers
        if method in _SAFE_METHODS:
            key = policy.key(method, call.rest, scope.query_string, headers)
            return await self._lookup(call, key, None)
        # opted in: the body is part of the key, read (and held in the budget) before the lookup
        body = await self.bodies.read(scope, call.proto, headers, target.max_request_bytes)
        try:
            return await self._lookup(call, policy.key(method, call.rest, scope.query_string, headers, body), body)
        finally:
            self.bodies.release(len(body))

    async def _lookup(self, call: _Call, key: str | None, body: bytes | None) -> Reply:
        target = call.target
        policy = target.cache
        assert policy is not None
        method = call.scope.method
        if key is None:
            return await self._forward(call, body)
        reply = self.cache.hit(key)
        if reply is None:

            def forward() -> Awaitable[Reply]:
                return self._forward(call, body)

            wait_s = call.start + target.timeout_s - time.perf_counter()
            reply = await self.cache.fill(key, policy, forward, store=method != "HEAD", wait_s=wait_s)
        if method == "HEAD":
            return reply[0], reply[1], b""
        return reply

    async def _forward(self, call: _Call, body: bytes | None) -> Reply:
        """The body first (unless the caller read it), then the function's in-flight gate, then the worker's (its
        namespace's share of it), to the function. Reading first means a slow body holds no slot while it trickles
        in, only its bytes in the worker's body budget, for at most LF_BODY_TIMEOUT; a GET reads nothing."""
        target = call.target
        held = 0
        if body is None:
            scope = call.scope
            headers = scope.headers
            if "content-length" in headers or "transfer-encoding" in headers or scope.http_version == "2":
                body = await self.bodies.read(scope, call.proto, headers, target.max_request_bytes)
                held = len(body)
            else:  # HTTP/1.x without either has no body: no read, no coroutine (the GET hot path)
                body = b""
        try:
            fgate = target.gate
            if fgate is not None and not fgate.try_enter():
                if not await fgate.enter(call.start + target.timeout_s - time.perf_counter()):
                    raise hm.function_overloaded(target.label)
            try:
                gate = self.gate
                namespace = target.namespace
                if not gate.try_enter(namespace) and not await gate.enter(namespace, self._queue_timeout_s):
                    if gate.held(namespace) >= gate.namespace_limit:
                        raise hm.namespace_overloaded(namespace, gate.namespace_limit)
                    raise hm.overloaded()
                try:
                    return await self._invoke(call, body)
                finally:
                    gate.leave(namespace)
            finally:
                if fgate is not None:
                    fgate.leave()
        finally:
            if held:
                self.bodies.release(held)

    async def _invoke(self, call: _Call, body: bytes) -> Reply:
        scope = call.scope
        target = call.target
        headers = scope.headers
        if _TRACING:  # the call's span's context (a child of the incoming one)
            traceparent, tracestate = callspans.outgoing(call.span, headers)
        else:  # the caller's, its sampled flag cleared unless trusted
            traceparent, tracestate = callspans.untraced(headers)
        call_id, method, rest, query, items, params = (
            call.call_id, scope.method, call.rest, scope.query_string, call.items, call.params
        )  # fmt: skip
        if "ce-specversion" in headers or body and headers.get("content-type", "")[:23].lower() == ce.MEDIA_PREFIX:
            items, body = ce.to_binary(items, body)  # a CloudEvent, checked; structured mode becomes binary mode

        def encode(budget_ms: int) -> bytes:
            return encode_request(call_id, method, rest, query, items, body, budget_ms, params, traceparent, tracestate)

        start = call.start
        try:
            response = await invoke(self.bus, target.subject, encode, start + target.timeout_s, clock=time.perf_counter)
        except NoResponders:
            raise hm.no_replica(target.label) from None
        except BusTimeout:
            raise hm.ingestor_timeout(target.label, target.timeout_s) from None
        except BrokerUnavailable:
            raise hm.broker_unavailable() from None
        except PayloadTooLarge:
            raise hm.broker_refused_payload(len(body)) from None
        except BadResponse as exc:
            raise hm.bad_response(f"the runtime's answer is not a response envelope: {exc}") from None
        duration_ns = call.fn_ns = response.duration_ns
        if _TRACING and (span := call.span) is not None:
            span.coldstart(response.cold_start)
        if (fstats := call.stats) is not None:
            fstats.ran(duration_ns, response.cold_start, len(body), time.perf_counter() - start)
        return _reply_of(response, target)

    def _new_stats(self, target: FunctionTarget) -> Any:
        assert self.metrics is not None
        return self.metrics.of(target.label, target.namespace, target.name)

    def _healthz(self) -> Reply:
        return 200, list(_JSON), b'{"status":"alive"}'

    def _readyz(self) -> Reply:
        if self.ready:
            return 200, list(_JSON), b'{"status":"ready"}'
        if self.draining:
            reason = "draining"
        elif self.broker_problem:
            reason = self.broker_problem
        elif not self.bus.connected:
            reason = "not connected to the broker"
        else:
            reason = "route table not loaded yet"
        err = hm.HttpError(503, "not_ready", reason, hm.LAYER_INGESTOR, retry_after=hm.RETRY_AFTER_S)
        return err.status, err.headers(), err.body()


def _reply_of(response: Any, target: FunctionTarget) -> Reply:
    if response.error_kind:
        raise hm.error_for_kind(response.error_kind, response.error, expose=target.expose_errors)
    body = response.body
    if len(body) > target.max_response_bytes:
        raise hm.response_too_large(len(body), target.max_response_bytes)
    return hm.check_status(response.status), hm.response_headers(response.headers), body


def create_app() -> Ingestor:
    """granian's factory: settings from the environment, the lean NATS client for calls, routes watched in
    LF_ROUTES over a separate nats-py connection (off the hot path, and JetStream KV needs a full client)."""
    settings = Settings.from_env(os.environ)
    if _TRACING:  # in each worker: the exporter's thread does not survive a fork
        _tracing.setup(_tracing.INGESTOR_SERVICE)
    callspans.configure(trust_incoming=settings.trace_trust_incoming)  # traced or not: the caller's sampled flag
    bus = NatsRequester(settings.nats_servers)
    routes = Routes(
        Defaults(
            timeout_s=settings.default_timeout_s,
            max_request_bytes=settings.default_max_request_bytes,
            max_response_bytes=settings.default_max_response_bytes,
            function_queue=settings.function_queue,
        )
    )
    watcher_nc = NatsClient()
    cache, limiter, valkey, sync = _limits_of(settings)

    async def background() -> None:
        syncing = asyncio.ensure_future(sync()) if sync is not None else None
        await _until_connected(app, "nats", bus.connect)
        log.info("connected to nats", extra={"fields": {"server": bus.server.label if bus.server else ""}})
        ensuring = asyncio.ensure_future(_ensure_async_streams(app.asyncs))
        await _until_connected(app, "nats (route watcher)", lambda: _connect_watcher(watcher_nc, settings.nats_servers))
        try:  # where runtimes publish what functions print (lf logs); a failure here must not stop serving
            await ensure_logs_stream(
                watcher_nc.jetstream(), settings.logs_max_bytes, settings.logs_max_age_s, settings.stream_replicas
            )
        except Exception as exc:
            log.warning("cannot create LF_LOGS", extra={"fields": {"error": repr(exc)}})
        watcher = asyncio.ensure_future(watch_routes(watcher_nc.jetstream(), routes, replicas=settings.stream_replicas))
        try:
            await routes.wait_loaded()
            log.info("ready", extra={"fields": {"pid": os.getpid()}})
            await watcher
        finally:
            watcher.cancel()
            ensuring.cancel()
            if syncing is not None:
                syncing.cancel()

    async def close() -> None:
        await bus.close()
        if watcher_nc.is_connected or watcher_nc.is_reconnecting:
            await watcher_nc.close()
        if valkey is not None:
            await valkey.aclose()
        if _TRACING:
            _tracing.shutdown()

    app = Ingestor(settings, bus, routes, background=background, close=close, cache=cache, limiter=limiter)
    return app


async def _ensure_async_streams(asyncs: AsyncCalls) -> None:
    """LF_ASYNC and its buckets exist once any ingestor or runtime has started (retried until the broker says so)."""
    delay = 0.5
    while True:
        try:
            await asyncs.ensure()
            return
        except Exception as exc:
            log.warning("async streams not ready", extra={"fields": {"error": repr(exc)}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _limits_of(
    settings: Settings,
) -> tuple[ResponseCache, RateLimiter, Redis | None, Callable[[], Coroutine[Any, Any, None]] | None]:
    """In-process cache and buckets; with LF_VALKEY_URL, Valkey as the shared cache tier and the bucket sync.

    redis-py is imported only then: it takes long to import, and (8.x) imports the OpenTelemetry metrics SDK
    whenever that is installed, which tracing-off must not pay for."""
    if not settings.valkey_url:
        cache = ResponseCache(max_bytes=settings.cache_max_bytes, max_entry_bytes=settings.cache_max_entry_bytes)
        return cache, LocalRateLimiter(), None, None
    from lf_valkey.stores import ValkeyRateLimiter, ValkeyStore
    from lf_valkey.stores import connect as valkey_connect

    client = valkey_connect(settings.valkey_url, timeout_s=settings.valkey_timeout_s)
    cache = ResponseCache(
        max_bytes=settings.cache_max_bytes,
        max_entry_bytes=settings.cache_max_entry_bytes,
        shared=ValkeyStore(client),
    )
    limiter = ValkeyRateLimiter(
        client,
        exact=settings.rate_limit_exact,
        sync_interval_s=settings.rate_limit_sync_s,
        fail_open=settings.valkey_fail_open,
    )
    return cache, limiter, client, limiter.run


_CONNECT_RETRY_FIRST_S = 0.5
_CONNECT_RETRY_MAX_S = 30.0


async def _until_connected(app: Ingestor, what: str, connect: Callable[[], Awaitable[None]]) -> None:
    """`connect()` until it succeeds, with backoff: a refusal (wrong credentials, a broker not up yet) must not end
    the worker's background task while /healthz says alive. Meanwhile /readyz answers 503 with the reason (which
    says what failed, not where: the broker's address is not the public's business; the log has it)."""
    delay = _CONNECT_RETRY_FIRST_S
    while True:
        try:
            await connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            refused = isinstance(exc, (AuthorizationError, NatsAuthorizationError))
            app.broker_problem = (
                "the broker refused the ingestor's credentials; retrying" if refused
                else "cannot connect to the broker; retrying"
            )  # fmt: skip
            log.error(f"cannot connect to {what}", extra={"fields": {"error": repr(exc), "retry_in_s": delay}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, _CONNECT_RETRY_MAX_S)
        else:
            app.broker_problem = ""
            return


async def _connect_watcher(nc: NatsClient, servers: list[str]) -> None:
    """The route watcher's nats-py connection, reconnecting forever in the background once up."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats (route watcher) error", extra={"fields": {"error": repr(exc)}})

    await nc.connect(
        servers=servers,
        name="lf-ingestor-routes",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        error_cb=on_error,
    )
