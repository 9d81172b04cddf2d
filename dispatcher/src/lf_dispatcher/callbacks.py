"""Callbacks and CloudEvents out, delivered once, in the dispatcher (docs/operations.md, "Callbacks").

When a call's record is final, the dispatcher hands it here: `deliver(record, url)` POSTs the record view (what
`GET /invocations/{id}` answers) as JSON to the call's `X-Callback-Url`; `deliver_event(record, sink)` POSTs the
result as a CloudEvent (binary mode, `lf_dispatcher.cloudevents`) to the function's `spec.async.sink`. Both return
at once; the outcome ("delivered", "failed: ...") is written later into the record's `callback` or `sink` field by
compare-and-set, as the runtimes did.

Bounded, so a slow, dead or hostile receiver costs a known amount and never holds the dispatcher:
- a byte budget (LF_CALLBACK_BUDGET) over the bodies queued, in flight and waiting for a retry; a delivery that
  does not fit is not queued: its outcome is "failed: callback budget full";
- LF_CALLBACK_CONCURRENCY deliverers, taken in turn by the namespaces with deliveries waiting, each namespace
  at most LF_CALLBACK_NAMESPACE_CONCURRENCY of them and LF_CALLBACK_NAMESPACE_BUDGET of the bytes (one tenant's
  silent receivers cannot hold every deliverer or fill the budget); a retry waits on a timer, not in a deliverer;
- one deadline per attempt (LF_CALLBACK_TIMEOUT) over everything: resolving the host, connecting, TLS, sending,
  and reading the status line. A host name is looked up on a pool of its own (LF_CALLBACK_RESOLVERS threads): a
  resolver that never answers holds a thread, never a deliverer past its deadline (with every thread stuck, lookups
  wait in the pool's queue and fail at their deadline; URLs with an address need no thread and still go);
- only the status line is read, at most `STATUS_LINE_MAX` bytes (longer: failed); the rest is not read;
- LF_CALLBACK_ATTEMPTS attempts, LF_CALLBACK_BACKOFF doubling (with jitter) between them, for connection
  errors, timeouts, 408, 425, 429 and 5xx; any other status is final (redirects are not followed).

SSRF-guarded: the URL is checked and resolved by `lf_core.ssrf.resolve_target` (every address must be public
unless LF_CALLBACK_ALLOW_PRIVATE; the result is reused for `TARGET_TTL_S`) and the connection goes to a checked
address only, never to a second lookup of the name (DNS rebinding); https verifies the certificate against the
name in the URL (SNI). Why a small hand-written HTTP/1.1 POST and not httpx: httpx (httpcore) resolves the host
itself when it connects, so pinning the checked address would take a custom network backend; one POST with
`Connection: close` that reads a status line is shorter than that.

Signed (`lf_dispatcher.signing`): `Lf-Signature: t=...,v1=...` with every key that signs for the call's namespace
now (`lf_core.callbackkeys.KeyRing`); without a key the callback is not sent, unsigned or otherwise: its outcome
is "failed: no signing key for namespace X".

A dispatcher that stops gives `close(timeout)` to what is queued (pending retries are tried at once, without
further retries); what is still undelivered then keeps `callback: pending` in its record.

| variable | default | meaning |
|---|---|---|
| LF_CALLBACK_KEYS_DIR | (unset: nothing is signed, so nothing is sent) | the signing keys, a file per namespace |
| LF_CALLBACK_ALLOW_PRIVATE | false | `true`: callbacks may go to loopback/private/link-local addresses |
| LF_CALLBACK_TIMEOUT | 10s | one attempt, from the lookup to the status line |
| LF_CALLBACK_ATTEMPTS | 4 | attempts per delivery |
| LF_CALLBACK_BACKOFF | 1s | wait before the second attempt, doubling (x 0.5..1 jitter) |
| LF_CALLBACK_CONCURRENCY | 32 | deliveries in flight at once |
| LF_CALLBACK_BUDGET | 64Mi | bytes of bodies queued, in flight and awaiting a retry |
| LF_CALLBACK_RESOLVERS | 4 | threads resolving callback hosts |
| LF_CALLBACK_NAMESPACE_CONCURRENCY | 8 | deliveries in flight at once for one namespace |
| LF_CALLBACK_NAMESPACE_BUDGET | 16Mi | bytes one namespace's deliveries may hold |
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.bus.errors import BusError
from lf_core.callbackkeys import KeyRing, NoSigningKey
from lf_core.contract.specs import ManifestError, parse_duration, parse_quantity
from lf_core.ssrf import Resolver, Target, UnsafeUrl, check_url, numeric_host, resolve_target, system_resolver

from lf_dispatcher import cloudevents, signing

log = logging.getLogger(__name__)

STATUS_LINE_MAX = 1024
"""The longest status line read from a receiver (bytes, with its CRLF); a longer one fails the attempt."""
USER_AGENT = "litefunctions-callback"
RETRYABLE = frozenset({408, 425, 429})
OUTCOME_WRITERS = 4
OUTCOME_WRITES_MAX = 100_000
"""Outcomes waiting to be written (each a few dozen bytes); beyond it they are dropped (the record keeps
`pending`) and counted."""
STORE_ATTEMPTS = 6
TARGET_TTL_S = 5.0
"""How long a checked, resolved callback URL is reused (a lookup per callback costs a thread hop and, for a
receiver getting thousands, as many DNS queries)."""
TARGETS_CACHED = 4096

Field = Literal["callback", "sink"]
P = ParamSpec("P")
T = TypeVar("T")


class CallbackSettingsError(ValueError):
    """A bad LF_CALLBACK_* value; the message names the variable."""


@dataclass(frozen=True)
class CallbackSettings:
    keys_dir: Path | None = None
    allow_private: bool = False
    timeout_s: float = 10.0
    attempts: int = 4
    backoff_s: float = 1.0
    concurrency: int = 32
    budget_bytes: int = 64 * 1024 * 1024
    resolvers: int = 4
    namespace_concurrency: int = 8
    namespace_budget_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CallbackSettings:
        d = cls()

        def raw(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def duration(name: str, default: float) -> float:
            value = raw(name)
            try:
                return default if value is None else parse_duration(value, name)
            except ManifestError as exc:
                raise CallbackSettingsError(str(exc)) from None

        def count(name: str, default: int, low: int, high: int) -> int:
            value = raw(name)
            if value is None:
                return default
            if not value.isdigit() or not low <= int(value) <= high:
                raise CallbackSettingsError(f"{name}: {value!r} is not a whole number from {low} to {high}")
            return int(value)

        def size(name: str, default: int) -> int:
            value = raw(name)
            try:
                return default if value is None else parse_quantity(value, name)
            except ManifestError as exc:
                raise CallbackSettingsError(str(exc)) from None

        private = (raw("LF_CALLBACK_ALLOW_PRIVATE") or "false").lower()
        if private not in ("true", "false"):
            raise CallbackSettingsError(f"LF_CALLBACK_ALLOW_PRIVATE: {private!r} is not one of true, false")
        keys_dir = raw("LF_CALLBACK_KEYS_DIR")
        return cls(
            keys_dir=Path(keys_dir) if keys_dir else None,
            allow_private=private == "true",
            timeout_s=duration("LF_CALLBACK_TIMEOUT", d.timeout_s),
            attempts=count("LF_CALLBACK_ATTEMPTS", d.attempts, 1, 20),
            backoff_s=duration("LF_CALLBACK_BACKOFF", d.backoff_s),
            concurrency=count("LF_CALLBACK_CONCURRENCY", d.concurrency, 1, 10_000),
            budget_bytes=size("LF_CALLBACK_BUDGET", d.budget_bytes),
            resolvers=count("LF_CALLBACK_RESOLVERS", d.resolvers, 1, 256),
            namespace_concurrency=count("LF_CALLBACK_NAMESPACE_CONCURRENCY", d.namespace_concurrency, 1, 10_000),
            namespace_budget_bytes=size("LF_CALLBACK_NAMESPACE_BUDGET", d.namespace_budget_bytes),
        )


@dataclass(eq=False)
class _Delivery:
    call_id: str
    namespace: str
    redrives: int
    url: str
    body: bytes
    headers: list[tuple[str, str]]
    into: Field
    ttl_s: float
    attempt: int = 0
    started: float = field(default_factory=time.monotonic)


class Callbacks:
    """The dispatcher's callback and CloudEvent deliveries (see the module's docstring). One per process, on the
    dispatcher's event loop: `deliver` and `deliver_event` are called from it and never block."""

    def __init__(
        self,
        request: jetstream.Requester,
        keys: KeyRing,
        settings: CallbackSettings,
        *,
        resolve: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.request = request
        self.keys = keys
        self.settings = settings
        self.resolve = resolve
        self.ssl_context = ssl_context
        self.counts: dict[str, int] = dict.fromkeys(
            ("queued", "delivered", "failed", "refused", "budget_full", "attempts", "retries", "outcomes_dropped"), 0
        )
        self.bytes_held = 0
        """Bytes of bodies queued, in flight or waiting for a retry (what LF_CALLBACK_BUDGET caps)."""
        self._lanes = _Lanes(min(settings.namespace_concurrency, settings.concurrency))
        self._namespace_bytes: dict[str, int] = {}
        self._retries: dict[_Delivery, asyncio.TimerHandle] = {}
        self._outcomes: deque[tuple[_Delivery, str]] = deque()
        self._outcome_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._outstanding = 0  # deliveries not finished + outcomes not written
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closed = False
        self._targets: dict[str, tuple[float, Target]] = {}
        self._lookups: dict[str, asyncio.Future[Target]] = {}
        self._resolvers = _DaemonPool(settings.resolvers, "lf-callback-resolve")

    # -- what the dispatcher calls --------------------------------------------------------------------------------

    def deliver(self, record: js.CallRecord, url: str, *, result_ttl_s: float) -> None:
        """POST the final record's view to `url` (the call's X-Callback-Url); the outcome goes to `record.callback`
        (the caller has stored it as "pending")."""
        body = json.dumps(js.record_view(record), separators=(",", ":")).encode()
        self._submit(record, url, body, [("Content-Type", "application/json")], "callback", result_ttl_s)

    def deliver_event(self, record: js.CallRecord, url: str, *, result_ttl_s: float) -> None:
        """POST the final record's result as a CloudEvent (binary mode) to `url` (the function's spec.async.sink);
        the outcome goes to `record.sink`."""
        headers, body = cloudevents.binary(record)
        self._submit(record, url, body, headers, "sink", result_ttl_s)

    async def close(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` (waiting retries go at once, and are not retried again), then
        stop. What is left undelivered keeps "pending" in its record."""
        self._closing = True
        for delivery, handle in list(self._retries.items()):
            handle.cancel()
            self._retries.pop(delivery)
            self._lanes.put(delivery)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "callbacks left undelivered at shutdown",
                extra={"fields": {"deliveries": len(self._lanes) + len(self._retries), "bytes": self.bytes_held}},
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._closed = True
        self._resolvers.shutdown(wait=False, cancel_futures=True)

    # -- queueing -------------------------------------------------------------------------------------------------

    def _submit(
        self, record: js.CallRecord, url: str, body: bytes, headers: list[tuple[str, str]], into: Field, ttl_s: float
    ) -> None:
        delivery = _Delivery(record.call_id, record.namespace, record.redrives, url, body, headers, into, ttl_s)
        if self._closing:
            self._write_outcome(delivery, "failed: the dispatcher was stopping")
            return
        held = self._namespace_bytes.get(record.namespace, 0)
        if (
            self.bytes_held + len(body) > self.settings.budget_bytes
            or held + len(body) > self.settings.namespace_budget_bytes
        ):
            self.counts["budget_full"] += 1
            log.warning(
                "callback budget full",
                extra={
                    "fields": {
                        "call_id": record.call_id, "namespace": record.namespace, "bytes": len(body),
                        "held": self.bytes_held, "held_by_namespace": held,
                    }
                },
            )  # fmt: skip
            self._write_outcome(delivery, "failed: callback budget full")
            return
        self.bytes_held += len(body)
        self._namespace_bytes[record.namespace] = held + len(body)
        self.counts["queued"] += 1
        self._hold()
        self._start()
        self._lanes.put(delivery)

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._deliverer()) for _ in range(self.settings.concurrency)]
        self._tasks += [loop.create_task(self._outcome_writer()) for _ in range(OUTCOME_WRITERS)]

    def _hold(self) -> None:
        self._outstanding += 1
        self._idle.clear()

    def _release(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    def _retry_now(self, delivery: _Delivery) -> None:
        self._retries.pop(delivery, None)
        self._lanes.put(delivery)

    # -- delivering -----------------------------------------------------------------------------------------------

    async def _deliverer(self) -> None:
        while True:
            delivery = await self._lanes.take()
            try:
                await self._attempt(delivery)
            except Exception as exc:  # a bug must not kill the deliverer, nor keep the bytes
                log.exception("callback delivery crashed", extra={"fields": {"call_id": delivery.call_id}})
                self._finish(delivery, f"failed: {exc!r}")
            finally:
                self._lanes.done(delivery.namespace)

    async def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        self.counts["attempts"] += 1
        try:
            keys = self.keys.signing_keys(delivery.namespace)
        except NoSigningKey as exc:
            self.counts["refused"] += 1
            self._finish(delivery, f"failed: {exc}")
            return
        timestamp = int(time.time())
        headers = [
            *delivery.headers,
            (signing.SIGNATURE_HEADER, signing.sign(delivery.body, [k.hmac_key for k in keys], timestamp)),
            (signing.CALL_ID_HEADER, delivery.call_id),
            ("X-Call-Id", delivery.call_id),
        ]
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                status = await self._post(delivery.url, headers, delivery.body)
        except UnsafeUrl as exc:
            self.counts["refused"] += 1
            log.info("callback refused", extra={"fields": {"call_id": delivery.call_id, "detail": exc.detail}})
            self._finish(delivery, f"failed: refused: {exc}")
            return
        except TimeoutError:
            error = f"no answer within {self.settings.timeout_s:g} s"
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            error = _describe(exc)
        else:
            if 200 <= status < 300:
                self._finish(delivery, "delivered")
                return
            error = f"status {status}"
            if status not in RETRYABLE and status < 500:
                self._finish(delivery, f"failed: {error}")
                return
        if delivery.attempt >= self.settings.attempts or self._closing:
            self._finish(delivery, f"failed: {error} (attempt {delivery.attempt})")
            return
        self.counts["retries"] += 1
        delay = self.settings.backoff_s * 2 ** (delivery.attempt - 1) * random.uniform(0.5, 1.0)  # noqa: S311
        self._retries[delivery] = asyncio.get_running_loop().call_later(delay, self._retry_now, delivery)

    async def _post(self, url: str, headers: list[tuple[str, str]], body: bytes) -> int:
        """One POST within the caller's deadline: resolve (pool), connect to a checked address, send, read the
        status line. Returns the status."""
        target = await self._target(url)
        context = None
        if target.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
        reader, writer = await _connect(target.addresses, target.port, context, target.host)
        try:
            writer.write(_head(target.host, target.port, target.path, headers, len(body)) + body)
            await writer.drain()
            line = await reader.readuntil(b"\n")
        except BaseException:
            writer.transport.abort()
            raise
        writer.transport.abort()  # nothing more is read: no graceful close (a receiver could stall it)
        return parse_status_line(line)

    async def _target(self, url: str) -> Target:
        """The URL checked and resolved, from a short cache (a receiver gets many callbacks): the addresses were
        checked when cached, and the connection goes to them, so the cache cannot be rebound."""
        now = time.monotonic()
        cached = self._targets.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
        lookup = partial(resolve_target, url, allow_private=self.settings.allow_private, resolve=self.resolve)
        if numeric_host(check_url(url, allow_private=self.settings.allow_private)[1]) is not None:
            target = lookup()  # an address already: nothing to look up, no thread (the pool may be all stuck)
        else:
            pending = self._lookups.get(url)
            if pending is None:  # one lookup of a URL at a time, shared by the deliveries waiting for it
                pending = asyncio.get_running_loop().run_in_executor(self._resolvers, lookup)
                self._lookups[url] = pending
                pending.add_done_callback(partial(self._looked_up, url))
            target = await asyncio.shield(pending)  # a waiter's deadline ends its wait, not the others'
        if len(self._targets) >= TARGETS_CACHED:
            self._targets.clear()
        self._targets[url] = (now + TARGET_TTL_S, target)
        return target

    def _looked_up(self, url: str, future: asyncio.Future[Target]) -> None:
        if self._lookups.get(url) is future:
            del self._lookups[url]
        if not future.cancelled():
            future.exception()  # retrieved here: its waiters may all have left at their deadlines

    def _finish(self, delivery: _Delivery, outcome: str) -> None:
        self.bytes_held -= len(delivery.body)
        held = self._namespace_bytes[delivery.namespace] - len(delivery.body)
        if held:
            self._namespace_bytes[delivery.namespace] = held
        else:
            del self._namespace_bytes[delivery.namespace]
        self.counts["delivered" if outcome == "delivered" else "failed"] += 1
        log.info(
            "callback" if delivery.into == "callback" else "sink event",
            extra={
                "fields": {
                    "call_id": delivery.call_id, "outcome": outcome, "attempts": delivery.attempt,
                    "seconds": round(time.monotonic() - delivery.started, 3),
                }
            },
        )  # fmt: skip
        self._write_outcome(delivery, outcome)
        self._release()

    # -- outcomes into the record ---------------------------------------------------------------------------------

    def _write_outcome(self, delivery: _Delivery, outcome: str) -> None:
        if len(self._outcomes) >= OUTCOME_WRITES_MAX or self._closed:
            self.counts["outcomes_dropped"] += 1
            return
        self._hold()
        self._start()
        self._outcomes.append((delivery, outcome[:1024]))
        self._outcome_wakeup.set()

    async def _outcome_writer(self) -> None:
        while True:
            while not self._outcomes:
                self._outcome_wakeup.clear()
                await self._outcome_wakeup.wait()
            delivery, outcome = self._outcomes.popleft()
            try:
                await self._store(delivery, outcome)
            except Exception:
                log.exception("callback outcome not stored", extra={"fields": {"call_id": delivery.call_id}})
            finally:
                self._release()

    async def _store(self, delivery: _Delivery, outcome: str) -> None:
        """Set the record's `callback` (or `sink`) by compare-and-set; a record that moved on is read again, one of
        a later redrive (or gone) is left alone."""
        delay = 0.1
        for _ in range(STORE_ATTEMPTS):
            try:
                found = await jetstream.kv_get(self.request, js.RESULTS_BUCKET, delivery.call_id)
                if found is None:
                    return
                record = js.decode_record(found[0])
                if record.redrives != delivery.redrives or getattr(record, delivery.into) == outcome:
                    return
                setattr(record, delivery.into, outcome)
                await jetstream.kv_put(
                    self.request, js.RESULTS_BUCKET, delivery.call_id, js.encode_record(record),
                    revision=found[1], ttl_s=delivery.ttl_s,
                )  # fmt: skip
                return
            except jetstream.WrongSequence:
                continue
            except (BusError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.warning("callback outcome not stored", extra={"fields": {"call_id": delivery.call_id, "outcome": outcome}})


class _Lanes:
    """The deliveries waiting to be tried, a lane per namespace, taken round-robin across namespaces; a namespace
    has at most `cap` in flight, so one tenant's silent receivers hold `cap` deliverers, never all of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.waiting: dict[str, deque[_Delivery]] = {}
        self.running: dict[str, int] = {}
        self.ready: deque[str] = deque()  # namespaces with a delivery waiting and a free slot, in turn
        self.idle: deque[asyncio.Future[None]] = deque()  # deliverers waiting for a ready namespace

    def __len__(self) -> int:
        return sum(len(lane) for lane in self.waiting.values())

    def put(self, delivery: _Delivery) -> None:
        self.waiting.setdefault(delivery.namespace, deque()).append(delivery)
        self._offer(delivery.namespace)

    async def take(self) -> _Delivery:
        while not self.ready:
            woken = asyncio.get_running_loop().create_future()
            self.idle.append(woken)
            try:
                await woken
            except asyncio.CancelledError:
                if woken.done() and not woken.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise
        namespace = self.ready.popleft()
        lane = self.waiting[namespace]
        delivery = lane.popleft()
        if not lane:
            del self.waiting[namespace]
        self.running[namespace] = self.running.get(namespace, 0) + 1
        self._offer(namespace)
        return delivery

    def done(self, namespace: str) -> None:
        left = self.running[namespace] - 1
        if left:
            self.running[namespace] = left
        else:
            del self.running[namespace]
        self._offer(namespace)

    def _offer(self, namespace: str) -> None:
        if namespace in self.waiting and self.running.get(namespace, 0) < self.cap and namespace not in self.ready:
            self.ready.append(namespace)
            self._wake()

    def _wake(self) -> None:
        while self.idle:
            woken = self.idle.popleft()
            if not woken.done():
                woken.set_result(None)
                return


class _DaemonPool(Executor):
    """The resolver threads: daemon threads, so a lookup that never returns does not hold the process at exit
    (a ThreadPoolExecutor's workers are joined then)."""

    def __init__(self, threads: int, name: str) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._work.put((future, partial(fn, *args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._work.put(None)

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, work = item
            if not future.set_running_or_notify_cancel():
                continue  # its waiter left at its deadline before a thread was free
            try:
                future.set_result(work())
            except BaseException as exc:  # handed to the waiter
                future.set_exception(exc)


# -- the wire ---------------------------------------------------------------------------------------------------------


async def _connect(
    addresses: tuple[str, ...], port: int, context: ssl.SSLContext | None, host: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first checked address that answers (the caller's deadline bounds all of them)."""
    error: OSError | None = None
    for address in addresses:
        try:
            return await asyncio.open_connection(
                address, port, ssl=context, server_hostname=host if context is not None else None,
                limit=STATUS_LINE_MAX,
            )  # fmt: skip
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


def _head(host: str, port: int, path: str, headers: list[tuple[str, str]], length: int) -> bytes:
    authority = f"[{host}]" if ":" in host else host
    if port not in (80, 443):
        authority = f"{authority}:{port}"
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    lines += [f"{name}: {value}" for name, value in headers if _safe_header(name, value)]
    lines += [f"Content-Length: {length}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _safe_header(name: str, value: str) -> bool:
    """Values may come from the function's result (its content type): nothing that could split the request."""
    return (
        name.isascii()
        and value.isascii()
        and "\r" not in value
        and "\n" not in value
        and "\0" not in value
        and name.lower() not in _OURS
    )


_OURS = frozenset({"host", "content-length", "connection", "transfer-encoding", "user-agent"})


def parse_status_line(line: bytes) -> int:
    """The status of an HTTP/1.x status line.

    Raises:
        ValueError: not one.
    """
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(parts[1])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.LimitOverrunError):
        return f"status line longer than {STATUS_LINE_MAX} bytes"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed before a status line"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS: {exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection: {exc.strerror}"
    return str(exc) or type(exc).__name__
