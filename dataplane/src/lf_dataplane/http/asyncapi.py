"""The ingestor's async endpoints (docs/protocol.md, "Async calls"): `ANY /async-function/{name}[.{ns}][/{path}]`,
`GET` and `DELETE /invocations/{id}`. Reached only for paths the native table does not route, so the sync path pays
nothing.

Submit: the same request envelope as a sync call, published to `lf.async.{ns}.{fn}.{call id}` with
`Nats-Msg-Id` = call id; `202` only after the PubAck (the stream stored it), `503` + `Retry-After` when the broker
is down, the stream refuses or no PubAck comes within LF_ASYNC_PUBLISH_TIMEOUT. A PubAck lost on the way back is
answered 503 although the call was stored: it may run although the client retries it (at-least-once). An
`Idempotency-Key` makes retries safe: it maps to one call id (create-only KV write, 24 h) and the publish of a
known call is deduplicated by the stream (same `Nats-Msg-Id`) or skipped when the call already has a record. The
claim stores a digest of the request (method, path, query, body) next to the id: the same key with another request
is refused with 422 and does not learn the first call's id.

A submission passes the same limits as a sync call where they apply before the function runs: the function's
`rateLimit` (the same buckets, `http.ratelimits`: 429), the worker's body budget and body timeout
(`http.bodies`: 503, 408), and the namespace's async backlog cap (`http.backlogs`, LF_NAMESPACE_ASYNC_BACKLOG:
429). The in-flight gates do not apply: a submission waits for a PubAck, not for a replica, and the calls run
as the function's consumer pulls them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from lf_core import tracing as _tracing
from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.bus.errors import BusError
from lf_core.ssrf import UnsafeUrl, resolve_target, system_resolver
from lf_native import MethodNotAllowed, RouteNotFound, encode_request

from lf_dataplane.calls.replies import Header, Reply
from lf_dataplane.http import cloudevents as ce
from lf_dataplane.http import mapping as hm
from lf_dataplane.http.backlogs import Backlogs
from lf_dataplane.http.bodies import BodyBudget
from lf_dataplane.http.ratelimits import RateLimits
from lf_dataplane.observability import callspans

ASYNC_PREFIX = "/async-function/"
INVOCATIONS_PREFIX = "/invocations/"
IDEMPOTENCY_HEADER = "idempotency-key"
CALLBACK_HEADER = "x-callback-url"
MAX_IDEMPOTENCY_KEY = 256

CALLBACK_RESOLVE_TIMEOUT_S = 2.0
"""How long the callback host's lookup may take at submit; then 503 (the call is not stored)."""

_TRACING = _tracing.ENABLED
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lf-callback-lookup")
"""Callback host lookups: at most 4 at once per worker (a lookup that hangs holds a thread until the system
resolver gives up; the caller's answer does not wait for it)."""
log = logging.getLogger(__name__)
_JSON: list[Header] = [("content-type", "application/json")]


class Answered(NamedTuple):
    """An async endpoint's answer and the call it names, sent as `X-Call-Id` (an `Idempotency-Key` duplicate answers
    with the original call's id, not the request's). Refusals (400, 413, 503, ...) are raised as `HttpError`s."""

    reply: Reply
    call_id: str

    @property
    def status(self) -> int:
        return self.reply[0]


def _answer(status: int, payload: dict[str, Any], call_id: str, extra: list[Header] | None = None) -> Answered:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Answered((status, [*_JSON, *(extra or [])], body), call_id)


def unavailable(detail: str) -> hm.HttpError:
    return hm.HttpError(
        503, "broker_unavailable", f"the call was not stored: {detail}", hm.LAYER_INGESTOR, retry_after=hm.RETRY_AFTER_S
    )


class AsyncCalls:
    """The async endpoints of one ingestor worker, whose JetStream calls go through `request` (the worker's lean
    connection: `NatsRequester.request_headers`)."""

    def __init__(
        self,
        request: jetstream.Requester,
        *,
        publish_timeout_s: float = 5.0,
        allow_private_callbacks: bool = False,
        resolve: Any = system_resolver,
        resolve_timeout_s: float = CALLBACK_RESOLVE_TIMEOUT_S,
        stream_replicas: int = 1,
        rates: RateLimits | None = None,
        bodies: BodyBudget | None = None,
        namespace_backlog: int = 0,
    ) -> None:
        self.request = request
        self.rates = rates
        """The worker's rate limits (the Ingestor's, shared with sync calls); None: none applied."""
        self.bodies = bodies if bodies is not None else BodyBudget(64 * 1024 * 1024, 10.0)
        """The worker's body budget and timeout (the Ingestor's, shared with sync calls)."""
        self.backlogs = Backlogs(self._count_backlog, namespace_backlog)
        self.stream_replicas = stream_replicas
        self.publish_timeout_s = publish_timeout_s
        self.allow_private_callbacks = allow_private_callbacks
        self.resolve = resolve
        self.resolve_timeout_s = resolve_timeout_s
        self.accepted = 0
        self.refused = 0
        self._ensured = False

    async def ensure(self) -> None:
        """Create the streams and buckets unless they exist (at start-up, and again after a refusal)."""
        await js.ensure_all(self.request, replicas=self.stream_replicas)
        self._ensured = True

    async def handle(self, scope: Any, proto: Any, path: str, call_id: str, table: Any) -> Answered:
        if path.startswith(ASYNC_PREFIX):
            return await self.submit(scope, proto, path, call_id, table)
        if path.startswith(INVOCATIONS_PREFIX):
            asked = path[len(INVOCATIONS_PREFIX) :]
            if not _TRACING:
                return await self.invocation(scope.method, asked)
            span = callspans.CallSpan.endpoint(scope.method, INVOCATIONS_PREFIX + "{id}", scope.headers, asked)
            return await _traced(span, self.invocation(scope.method, asked))
        raise hm.unrouted(path)

    # -- submit -----------------------------------------------------------------------------------------------------

    async def submit(self, scope: Any, proto: Any, path: str, call_id: str, table: Any) -> Answered:
        method = scope.method
        headers = scope.headers
        sync_path = "/function/" + path[len(ASYNC_PREFIX) :]
        try:
            target, rest, params = table.lookup(method, "", sync_path)
        except MethodNotAllowed as exc:
            raise hm.method_not_allowed(exc.args[1]) from None
        except RouteNotFound:
            raise hm.unrouted(path) from None
        limit_headers = None
        if target.rate is not None and self.rates is not None:  # the same buckets as the function's sync calls
            limit_headers = await self.rates.take(scope, headers, target)
        if not _TRACING:
            answered = await self._submit(scope, proto, call_id, target, rest, params, None)
        else:
            span = callspans.CallSpan.start(method, headers, call_id, target.namespace, target.name, queued=True)
            if span is None:  # sampled out by the caller: its trace context goes on as it came
                answered = await self._submit(scope, proto, call_id, target, rest, params, None)
            else:
                answered = await _traced(span, self._submit(scope, proto, call_id, target, rest, params, span))
        if limit_headers is not None:
            answered.reply[1].extend(limit_headers)
        return answered

    async def _submit(
        self,
        scope: Any,
        proto: Any,
        call_id: str,
        target: Any,
        rest: str,
        params: Any,
        span: callspans.CallSpan | None,
    ) -> Answered:
        headers = scope.headers
        callback = headers.get(CALLBACK_HEADER) or ""
        if callback:
            await self._check_callback(callback)
        key = headers.get(IDEMPOTENCY_HEADER) or ""
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise hm.HttpError(
                400, "bad_idempotency_key", f"Idempotency-Key longer than {MAX_IDEMPOTENCY_KEY}", "ingestor"
            )
        await self.backlogs.check(target.namespace)  # before the body is read: a refusal costs no bytes
        bodies = self.bodies
        body = await bodies.read(scope, proto, headers, target.max_request_bytes)  # the same rules as a sync call
        try:  # the body's bytes stay in the worker's budget until the publish is answered
            return await self._publish(scope, call_id, target, rest, params, span, body, key, callback)
        finally:
            bodies.release(len(body))

    async def _publish(
        self,
        scope: Any,
        call_id: str,
        target: Any,
        rest: str,
        params: Any,
        span: callspans.CallSpan | None,
        body: bytes,
        key: str,
        callback: str,
    ) -> Answered:
        method = scope.method
        headers = scope.headers
        ns, fn = target.namespace, target.name
        duplicate = False
        items = [(k, v) for k, v in headers.items() if k not in (CALLBACK_HEADER, IDEMPOTENCY_HEADER)]
        if "ce-specversion" in headers or body and headers.get("content-type", "")[:23].lower() == ce.MEDIA_PREFIX:
            items, body = ce.to_binary(items, body)  # a CloudEvent, checked before any key is claimed
        try:
            if key:
                digest = request_digest(method, rest, scope.query_string, body)
                call_id, duplicate = await self._claim(ns, fn, key, call_id, digest)
                if span is not None and span.recording:
                    span.span.set_attribute("faas.invocation_id", call_id)
                if duplicate and await self._known(call_id):
                    return self._accepted(call_id, ns, fn, duplicate=True)
            traceparent, tracestate = (
                callspans.outgoing(span, headers) if span is not None else callspans.untraced(headers)
            )
            envelope = encode_request(
                call_id, method, rest or "/", scope.query_string, items, body, int(target.timeout_s * 1000), params,
                traceparent, tracestate,
            )  # fmt: skip
            msg_headers = [(jetstream.MSG_ID, call_id), (js.SUBMITTED_HEADER, f"{time.time():.6f}")]
            if callback:
                msg_headers.append((js.CALLBACK_HEADER, callback))
            ack = await jetstream.publish(
                self.request, js.async_subject(ns, fn, call_id), envelope, msg_headers, self.publish_timeout_s
            )
        except (BusError, TimeoutError) as exc:
            self.refused += 1
            raise unavailable(type(exc).__name__) from None
        except jetstream.JetStreamError as exc:
            self.refused += 1
            if exc.err_code == jetstream.ERR_STREAM_NOT_FOUND or exc.code == 503:
                self._ensured = False
                asyncio.ensure_future(self._ensure_quietly())
            raise unavailable(exc.description) from None
        self.accepted += 1
        return self._accepted(call_id, ns, fn, duplicate=duplicate or bool(ack.get("duplicate")))

    def _accepted(self, call_id: str, ns: str, fn: str, *, duplicate: bool) -> Answered:
        payload: dict[str, Any] = {
            "callId": call_id,
            "status": "queued",
            "function": fn,
            "namespace": ns,
            "statusUrl": f"{INVOCATIONS_PREFIX}{call_id}",
        }
        if duplicate:
            payload["duplicate"] = True
        return _answer(202, payload, call_id, [("location", f"{INVOCATIONS_PREFIX}{call_id}")])

    async def _claim(self, ns: str, fn: str, key: str, call_id: str, digest: str) -> tuple[str, bool]:
        """The call id of an idempotency key: ours if we wrote it first (create-only), else the stored one, whose
        request must have the same `digest` (`request_digest`): another request under a used key is a 422."""
        kv_key = js.idempotency_key(ns, fn, key)
        for _ in range(3):
            try:
                claim = f"{call_id} {digest}".encode()
                await jetstream.kv_put(self.request, js.IDEMPOTENCY_BUCKET, kv_key, claim, revision=0)
                return call_id, False
            except jetstream.WrongSequence:
                found = await jetstream.kv_get(self.request, js.IDEMPOTENCY_BUCKET, kv_key)
                if found is not None:
                    first, _, first_digest = found[0].decode().partition(" ")
                    if first_digest and first_digest != digest:  # (a claim from before digests: taken as is)
                        raise hm.HttpError(
                            422,
                            "idempotency_key_reused",
                            "this Idempotency-Key was already used with a different request (method, path, query "
                            "or body) to this function; send the same request again, or use a new key",
                            hm.LAYER_INGESTOR,
                        ) from None
                    return first, True
        raise unavailable("the idempotency key could not be claimed")

    async def _known(self, call_id: str) -> bool:
        """The call was stored (it has a record or still waits in LF_ASYNC): a duplicate needs no publish."""
        if await jetstream.kv_get(self.request, js.RESULTS_BUCKET, call_id) is not None:
            return True
        return await js.find_queued(self.request, call_id) is not None

    async def _check_callback(self, url: str) -> None:
        """Refuse a callback URL that is malformed or whose host is not public (400), within
        `resolve_timeout_s` (then 503: the lookup did not answer, the call is not stored). The lookup runs on a
        small pool of its own, so lookups that hang cannot starve the loop's default executor; the 400 does not
        say which address an internal name resolves to (that stays in the log)."""
        loop = asyncio.get_running_loop()
        check = loop.run_in_executor(
            _LOOKUPS, lambda: resolve_target(url, allow_private=self.allow_private_callbacks, resolve=self.resolve)
        )
        try:
            await asyncio.wait_for(check, self.resolve_timeout_s)
        except UnsafeUrl as exc:
            if exc.detail:
                log.info("callback refused", extra={"fields": {"url": url[:256], "detail": exc.detail}})
            raise hm.HttpError(400, "bad_callback_url", str(exc), hm.LAYER_INGESTOR) from None
        except TimeoutError:
            host = urlsplit(url).hostname or ""
            log.warning("callback lookup timed out", extra={"fields": {"host": host[:256]}})
            raise hm.HttpError(
                503,
                "callback_lookup_timeout",
                f"the callback host {host[:256]!r} did not resolve within {self.resolve_timeout_s:g} s; "
                "the call was not stored",
                hm.LAYER_INGESTOR,
                retry_after=hm.RETRY_AFTER_S,
            ) from None

    async def _count_backlog(self, namespace: str) -> int:
        return await js.queued_in_namespace(self.request, namespace)

    async def _ensure_quietly(self) -> None:
        try:
            await self.ensure()
        except Exception:  # noqa: S110 (the next refusal tries again)
            pass

    # -- status and cancel ------------------------------------------------------------------------------------------

    async def invocation(self, method: str, call_id: str) -> Answered:
        try:
            js.check_call_id(call_id)
        except ValueError:
            raise hm.HttpError(404, "unknown_call", "no such call", hm.LAYER_INGESTOR) from None
        try:
            if method in ("GET", "HEAD"):
                return await self._status(call_id)
            if method == "DELETE":
                return await self._cancel(call_id)
        except (BusError, TimeoutError) as exc:
            raise unavailable(type(exc).__name__) from None
        except jetstream.JetStreamError as exc:
            raise unavailable(exc.description) from None
        raise hm.method_not_allowed(("GET", "HEAD", "DELETE"))

    async def _status(self, call_id: str) -> Answered:
        found = await jetstream.kv_get(self.request, js.RESULTS_BUCKET, call_id)
        if found is not None:
            view = js.record_view(js.decode_record(found[0]))
        else:
            queued = await js.find_queued(self.request, call_id)
            if queued is None:
                return _answer(
                    404, _error("unknown_call", "no such call (never accepted, or its result expired)"), call_id
                )
            _, _, ns, fn, _ = queued[0].split(".", 4)
            view = {"callId": call_id, "function": fn, "namespace": ns, "status": "queued", "attempts": 0}
        return _answer(200, view, call_id)

    async def _cancel(self, call_id: str) -> Answered:
        """Cancel a call that has not started: its record becomes `cancelled` (create-only, so a replica that
        started it first wins) and its message is removed from LF_ASYNC."""
        queued = await js.find_queued(self.request, call_id)
        found = await jetstream.kv_get(self.request, js.RESULTS_BUCKET, call_id)
        if found is not None:
            record = js.decode_record(found[0])
            if record.status != "queued":
                return _answer(409, _error("not_cancellable", f"the call is {record.status}"), call_id)
            revision: int = found[1]
        elif queued is None:
            return _answer(404, _error("unknown_call", "no such call"), call_id)
        else:
            revision = 0
        ns, fn = ("", "")
        if queued is not None:
            _, _, ns, fn, _ = queued[0].split(".", 4)
        now = time.time()
        cancelled = js.CallRecord(call_id=call_id, namespace=ns, function=fn, status="cancelled", updated_at=now)
        try:
            await jetstream.kv_put(
                self.request, js.RESULTS_BUCKET, call_id, js.encode_record(cancelled), revision=revision
            )
        except jetstream.WrongSequence:
            return _answer(409, _error("not_cancellable", "the call has started"), call_id)
        await js.remove_queued(self.request, call_id)
        return _answer(200, {"callId": call_id, "status": "cancelled"}, call_id)


async def _traced(span: callspans.CallSpan, answer: Awaitable[Answered]) -> Answered:
    """Await an endpoint's answer inside `span` (a refusal, raised as an HttpError, fails the span)."""
    try:
        answered = await answer
    except BaseException as exc:
        span.fail(exc)
        raise
    span.end(answered.status)
    return answered


def request_digest(method: str, path: str, query: str, body: bytes) -> str:
    """What an `Idempotency-Key` is bound to: a SHA-256 of method, path, query and body (each part length-prefixed,
    so no two requests share a digest by moving bytes between parts)."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(body)
    return digest.hexdigest()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "layer": hm.LAYER_INGESTOR}}
