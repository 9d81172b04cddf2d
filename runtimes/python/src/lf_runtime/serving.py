"""One replica serving one function over NATS: subscription, concurrency limit, deadlines, busy answers, drain.

Flow of a call (all bookkeeping happens on the event loop thread, so it needs no locks):

1. `_on_msg` runs inside the connection's read callback, once per message (see `lf_core.bus.link`). It
   decodes the envelope and admits the call: it starts if fewer than `concurrency` handlers run, waits in a
   queue of at most `queue_depth` calls otherwise, or is answered BUSY.
2. An async handler's first step runs right there (`_run_eager`), in its own context, as Python 3.12's
   eager tasks do: a handler that returns without waiting on anything is answered in the same loop turn with no
   task and no timer. Only one that suspends gets a task (resuming where it stopped) and a timer at its deadline
   (the budget minus the protocol's margin). A sync handler runs on a `WorkerPool` thread, which also maps and
   encodes the answer, then hands the bytes back through a deque and one wake-up per loop turn; it has a timer
   from the start, and so has a call waiting in the queue.
3. Whoever comes first wins: the answer (the timer is cancelled) or the timer (TIMEOUT is answered, the slot is
   freed, an async handler is cancelled, a sync handler's thread is counted as stuck until it returns).
4. Answers are queued on the connection and written once per loop turn, whatever their number.
5. `stuck_limit` stuck threads, SIGTERM or SIGINT stop the replica: the subscription is drained (UNSUB and a
   PING/PONG round trip, so every message the server sent before the UNSUB is admitted), in-flight calls finish
   (up to `drain_timeout_s`), the connection writes what is queued and closes. The exit code is 0, or
   `EX_TEMPFAIL` (75) when stuck handlers forced it.

Measured with the bench's trivial async handler (sync-hello): nats-py's callback subscription plus a task and a
timer per call cost the replica about 30-57 µs of CPU per call, a quarter of it in nats-py's flusher alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import time
import traceback
from bisect import bisect_left
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any

from lf_core.bus.errors import PayloadTooLarge
from lf_core.contract.protocol import RUNTIME_MARGIN_FRACTION, RUNTIME_MARGIN_MAX_MS, ErrorKind
from lf_core.contract.subjects import invoke_subject, queue_group
from lf_native import RequestEnvelope, decode_request, encode_response

from lf_runtime import connecting, health, replies
from lf_runtime import metrics as _metrics
from lf_runtime import tracing as _tracing
from lf_runtime.capture import CALL_ID, CallOutput
from lf_runtime.handlers import Handler, to_parts
from lf_runtime.logs import Log
from lf_runtime.metrics import BUCKETS_NS, RuntimeStats
from lf_runtime.requests import Request, RequestError
from lf_runtime.settings import Settings
from lf_runtime.workers import WorkerPool

EX_OK = 0
EX_FAILURE = 1
EX_TEMPFAIL = 75  # sysexits.h: "try again later"; the supervisor restarts the replica
ROUND_TRIP_TIMEOUT_S = 5.0
"""How long the subscribe and unsubscribe round trips (PING/PONG) may take."""

_QUEUED, _RUNNING, _DONE, _TIMED_OUT = range(4)
_perf_ns = time.perf_counter_ns
_monotonic = time.monotonic
_TRACING = _tracing.ENABLED  # read once at import; off, OpenTelemetry is never imported
_LEVELS = {logging.DEBUG: "", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


def usable_budget_s(budget_ms: int) -> float:
    """Seconds the handler may take: the envelope's budget minus the runtime's margin (docs/protocol.md)."""
    margin = min(budget_ms * RUNTIME_MARGIN_FRACTION, RUNTIME_MARGIN_MAX_MS)
    return (budget_ms - margin) / 1000


class Call:
    """One admitted call, owned by the event loop thread."""

    __slots__ = (
        "cold", "deadline", "envelope", "outcome", "reply", "started_ns", "state", "stuck", "task", "timer",
    )  # fmt: skip

    def __init__(self, reply: str, envelope: RequestEnvelope, started_ns: int, deadline: float) -> None:
        self.reply = reply
        self.envelope = envelope
        self.started_ns = started_ns
        self.deadline = deadline
        self.state = _QUEUED
        self.cold = False
        self.outcome = _metrics.OK  # set by whoever encodes a failure (lf_runtime.metrics.OUTCOMES)
        self.stuck = False  # a sync handler still running past its deadline
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None


class _Resumed:
    """`await _Resumed(coro, yielded)` continues a coroutine whose first step already ran and yielded `yielded`.

    The awaiting task sees exactly what the coroutine yields, and throws its cancellation into it.
    """

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # the task's cancellation (or GeneratorExit): the handler gets it
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class Replica:
    """Serves `handler` for the function named in `settings` until stopped; `run()` returns the exit code."""

    def __init__(self, settings: Settings, handler: Handler, log: Log, capture: CallOutput | None = None) -> None:
        self._capture = capture
        """Per-call stdout/stderr (lf_runtime.capture), published to LF_LOGS when the call is answered."""
        self._settings = settings
        self._func = handler.func
        self._log = log
        self._limit = settings.concurrency
        self._depth = settings.queue_depth
        self._max_body = settings.max_response_bytes
        self._pool = None if handler.is_async else WorkerPool(settings.concurrency + settings.stuck_limit)
        self._running = 0
        self._active: set[Call] = set()
        self._waiting: deque[Call] = deque()
        self._stuck = 0
        self._cold = True
        self._releasing = False
        # Sync answers coming back from worker threads; `_wake_pending` keeps it to one wake-up per loop turn.
        self._done: deque[tuple[Call, bytes]] = deque()
        self._wake_pending = False
        self._idle: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set first thing in run()
        # Every call runs in a copy of this one, not of whatever context admits it (a finishing call's task
        # starts the next queued call: copying its context would leak the handler's context variables).
        self._context = contextvars.copy_context()
        self._conn: connecting.Connection = connecting.open_connection(settings, self._report)
        self._tracer: Any = _tracing.setup(_tracing.RUNTIME_SERVICE) if _TRACING else None
        self._spans: dict[Call, Any] = {}
        """With tracing on: each running call's span (lf_runtime.tracing), until the call is answered."""
        self.stats = RuntimeStats()
        """Plain counters for `/metrics` (lf_runtime.metrics), kept whether or not the listener runs."""
        # Readiness (`not_ready`, lf_runtime.health): the subscription is confirmed once `_sid` is set after the
        # first round trip, and again after each reconnect when `_confirmed` catches up with `_links`.
        self._sid: int | None = None
        self._links = 0
        """Connections lost so far."""
        self._confirmed = 0
        """The value of `_links` when the server last confirmed the subscription."""
        self._confirming: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------ metrics (read)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def inflight(self) -> int:
        return self._running + len(self._waiting)

    @property
    def stuck(self) -> int:
        return self._stuck

    @property
    def cold_started(self) -> bool:
        return not self._cold

    # ----------------------------------------------------------------------------------------- life cycle

    async def run(self) -> int:
        """Connect, subscribe, log `ready`, serve until stopped, drain; return the process exit code."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, EX_OK, sig.name)
        settings = self._settings
        subject = invoke_subject(settings.namespace, settings.function)
        group = queue_group(settings.namespace, settings.function)
        conn = self._conn
        health_server = None
        if settings.health_port > 0:  # before connecting: a probe meanwhile is told "connecting to NATS"
            health_server = await health.serve(self.not_ready, settings.health_host, settings.health_port)
            url = f"http://{settings.health_host}:{settings.health_port}/readyz"
            self._log.event("health_listening", url=url)
        try:
            await connecting.connect(conn, settings)
            sid = conn.subscribe(subject, self._on_msg, group)
            await conn.flush(ROUND_TRIP_TIMEOUT_S)  # the server has the SUB: calls reach us from now on
        except BaseException:
            if health_server is not None:
                health_server.close()
            raise
        self._sid = sid
        metrics_server = None
        if settings.metrics_port > 0:
            metrics_server = await _metrics.serve(self, settings.metrics_host, settings.metrics_port)
        self._log.event("ready", subject=subject, queue=group, concurrency=self._limit, queue_depth=self._depth)
        if metrics_server is not None:
            self._log.event("metrics_listening", url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics")
        code = await self._stopped
        await self._drain(sid)
        await conn.close()
        if metrics_server is not None:
            metrics_server.close()
        if health_server is not None:
            health_server.close()
        self._log.event("stopped", exit_code=code)
        return code

    def not_ready(self) -> str | None:
        """Why a call sent now would not be answered, or None when it would (what `/readyz` says)."""
        if self._stopped is not None and self._stopped.done():
            return "draining"
        if self._sid is None:
            return "connecting to NATS"
        if not self._conn.connected:
            return "disconnected from NATS, reconnecting"
        if self._confirmed != self._links:
            return "reconnected to NATS, subscription not confirmed yet"
        return None

    async def _confirm(self, links: int) -> None:
        """After a reconnect: a round trip behind the SUB the client sent again, then the subscription counts."""
        try:
            await self._conn.flush(ROUND_TRIP_TIMEOUT_S)
        except Exception as exc:  # lost again (the next reconnect confirms) or no PONG in time
            self._log.warning("subscription_unconfirmed", error=repr(exc))
            return
        if self._links == links:  # not lost again meanwhile
            self._confirmed = links

    def stop(self, code: int, reason: str) -> None:
        """Begin draining; the first reason wins. Safe to call from signal handlers and timers."""
        if self._stopped is not None and not self._stopped.done():
            self._log.event("stopping", reason=reason, exit_code=code)
            self._stopped.set_result(code)

    async def _drain(self, sid: int) -> None:
        try:  # the server stops sending; what it sent before is admitted by the time this returns
            await self._conn.drain(sid, ROUND_TRIP_TIMEOUT_S)
        except Exception as exc:  # the connection may already be gone
            self._log.warning("unsubscribe_failed", error=repr(exc))
        in_flight = len(self._active) + len(self._waiting)
        self._log.event("draining", in_flight=in_flight, stuck=self._stuck)
        if not in_flight:
            return
        self._idle = self._loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle), self._settings.drain_timeout_s)
        except TimeoutError:
            self._abandon()

    def _abandon(self) -> None:
        """Drain timed out: answer every call still in flight, so none is left waiting for its deadline."""
        calls = [*self._active, *self._waiting]
        self._log.warning("drain_timeout", calls=[c.envelope.call_id for c in calls])
        self._waiting.clear()
        for call in calls:
            call.state = _TIMED_OUT
            if call.timer is not None:
                call.timer.cancel()
            message = "the replica stopped before the handler answered"
            payload = replies.error(call.envelope.call_id, ErrorKind.INTERNAL, message)
            self.stats.calls[_metrics.INTERNAL] += 1
            if _TRACING:
                _tracing.end(self._spans.pop(call, None), payload, "drain_timeout")
            self._publish(call.reply, payload)

    # ------------------------------------------------------------------------------------------ admission

    def _on_msg(self, reply: str | None, payload: bytes) -> None:
        started = _perf_ns()
        try:
            envelope = decode_request(payload)
        except ValueError as exc:  # lf_native.EnvelopeError
            self._log.warning("bad_request", error=str(exc), size=len(payload))
            self.stats.calls[_metrics.BAD_REQUEST] += 1
            if reply:
                self._publish(reply, replies.error("", ErrorKind.BAD_REQUEST, f"bad request envelope: {exc}"))
            return
        if not reply:
            self._log.warning("no_reply_subject", call_id=envelope.call_id)
            return
        # No time left is answered before busy, as in Go and Rust (docs/protocol.md).
        budget_ms = envelope.budget_ms  # usable_budget_s, inlined: min() on a float and an int costs here
        margin = budget_ms * RUNTIME_MARGIN_FRACTION
        budget_s = (budget_ms - (margin if margin < RUNTIME_MARGIN_MAX_MS else RUNTIME_MARGIN_MAX_MS)) / 1000
        if budget_s <= 0:
            message = f"no time left to run the handler (budget {envelope.budget_ms} ms)"
            self.stats.calls[_metrics.TIMEOUT] += 1
            self._refuse(reply, envelope, replies.error(envelope.call_id, ErrorKind.TIMEOUT, message), "timeout")
            return
        running = self._running
        if running >= self._limit and len(self._waiting) >= self._depth:
            message = f"replica busy: {running} running, {len(self._waiting)} queued"
            self.stats.calls[_metrics.BUSY] += 1
            payload = replies.error(envelope.call_id, ErrorKind.BUSY, message, _perf_ns() - started)
            self._refuse(reply, envelope, payload, "busy")
            return
        call = Call(reply, envelope, started, _monotonic() + budget_s)
        if running < self._limit:
            self._start(call)
        else:
            call.timer = self._loop.call_later(budget_s, self._expire, call)
            self._waiting.append(call)

    def _refuse(self, reply: str, envelope: RequestEnvelope, payload: bytes, error: str) -> None:
        """Answer a call no handler will run (`busy`, or `timeout`: no time left)."""
        if _TRACING:
            settings = self._settings
            _tracing.refused(self._tracer, envelope, settings.namespace, settings.function, payload, error)
        self._publish(reply, payload)

    def _start(self, call: Call) -> None:
        self._running += 1
        call.state = _RUNNING
        if self._cold:
            call.cold = True
            self._cold = False
        if self._pool is None:
            self._run_eager(call)  # in `_active` only if it suspends
            return
        self._active.add(call)
        if call.timer is None:
            call.timer = self._loop.call_later(call.deadline - _monotonic(), self._expire, call)
        self._pool.submit(self._run_sync, call)

    def _release(self, call: Call) -> None:
        """Free `call`'s slot and start queued calls in order (their timers keep running).

        A queued call whose async handler answers at once finishes inside `_start` and releases again: the
        outermost release starts the rest, so the queue is walked in a loop rather than by recursion.
        """
        self._running -= 1
        self._active.discard(call)
        if self._releasing:
            return
        self._releasing = True
        try:
            waiting = self._waiting
            while waiting and self._running < self._limit:
                self._start(waiting.popleft())
        finally:
            self._releasing = False
        if self._idle is not None:
            self._check_idle()

    def _check_idle(self) -> None:
        idle = self._idle
        if idle is not None and not self._active and not self._waiting and not idle.done():
            idle.set_result(None)

    # ------------------------------------------------------------------------------------------ execution

    def _run_eager(self, call: Call) -> None:
        """Run an async handler's first step now; give it a task and a timer only if it suspends."""
        context = self._context.copy()
        if self._capture is not None:
            context.run(CALL_ID.set, call.envelope.call_id)
        if _TRACING:
            self._trace(call, context)
        try:
            coro = self._func(Request(call.envelope, call.deadline))
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            payload = self._answer(call, stop.value)
        except asyncio.CancelledError:
            payload = self._failure(call, RuntimeError("the handler was cancelled"))
        except BaseException as exc:
            payload = self._failure(call, exc)
        else:
            self._active.add(call)
            call.task = self._loop.create_task(self._run_async(call, coro, yielded), context=context)
            if call.timer is None:
                call.timer = self._loop.call_later(call.deadline - _monotonic(), self._expire, call)
            return
        self._finish(call, payload)

    async def _run_async(self, call: Call, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        try:
            value = await _Resumed(coro, yielded)
        except asyncio.CancelledError:
            if call.state == _TIMED_OUT:
                return  # _expire answered already
            payload = self._failure(call, RuntimeError("the handler was cancelled"))
        except BaseException as exc:
            payload = self._failure(call, exc)
        else:
            payload = self._answer(call, value)
        self._finish(call, payload)

    def _run_sync(self, call: Call) -> None:
        """On a worker thread: run the handler, encode its answer, hand the bytes to the loop."""
        try:
            context = self._context.copy()
            if self._capture is not None:
                context.run(CALL_ID.set, call.envelope.call_id)
            if _TRACING:
                self._trace(call, context)
            value = context.run(self._func, Request(call.envelope, call.deadline))
        except BaseException as exc:
            payload = self._failure(call, exc)
        else:
            payload = self._answer(call, value)
        self._done.append((call, payload))
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._pump)

    def _pump(self) -> None:
        """On the loop: publish the answers of sync handlers, as many as are ready per wake-up."""
        self._wake_pending = False  # before draining: a thread appending now wakes us again
        done = self._done
        while done:
            call, payload = done.popleft()
            self._finish(call, payload)

    def _finish(self, call: Call, payload: bytes) -> None:
        if self._capture is not None and self._capture.pending:
            self._publish_output(call.envelope.call_id)
        if call.state == _TIMED_OUT:  # answered already; the result is dropped
            if _TRACING:  # (a sync handler that began after its deadline fired started a span since)
                _tracing.end(self._spans.pop(call, None), payload, "timeout")
            if call.stuck:
                call.stuck = False
                self._stuck -= 1
                self._log.event("stuck_returned", call_id=call.envelope.call_id, stuck=self._stuck)
            return
        call.state = _DONE
        if call.timer is not None:
            call.timer.cancel()
        stats = self.stats
        stats.calls[call.outcome] += 1
        duration = _perf_ns() - call.started_ns
        stats.dur[bisect_left(BUCKETS_NS, duration)] += 1
        stats.dur_sum_ns += duration
        if _TRACING:
            _tracing.end(self._spans.pop(call, None), payload)
        self._publish(call.reply, payload)
        self._release(call)

    def _expire(self, call: Call) -> None:
        """The call's deadline passed: answer TIMEOUT now, whatever its handler is doing."""
        state = call.state
        if state == _QUEUED:
            self._waiting.remove(call)
        elif state != _RUNNING:
            return
        call.state = _TIMED_OUT
        budget_ms = call.envelope.budget_ms
        message = f"the handler did not answer within the call's budget ({budget_ms} ms)"
        duration = _perf_ns() - call.started_ns
        stats = self.stats
        stats.calls[_metrics.TIMEOUT] += 1
        stats.dur[bisect_left(BUCKETS_NS, duration)] += 1
        stats.dur_sum_ns += duration
        payload = replies.error(call.envelope.call_id, ErrorKind.TIMEOUT, message, duration, call.cold)
        if _TRACING:
            _tracing.end(self._spans.pop(call, None), payload, "timeout")
        self._publish(call.reply, payload)
        if self._capture is not None and self._capture.pending:
            self._publish_output(call.envelope.call_id)
        if state == _QUEUED:
            self._check_idle()
            return
        if call.task is not None:
            call.task.cancel()
        else:
            call.stuck = True
            self._stuck += 1
            self._log.warning(
                "stuck", call_id=call.envelope.call_id, stuck=self._stuck, limit=self._settings.stuck_limit
            )
            if self._stuck >= self._settings.stuck_limit:
                self.stop(EX_TEMPFAIL, f"{self._stuck} sync handlers are stuck past their deadline")
        self._release(call)

    # ------------------------------------------------------------------------------------------- answers

    def _answer(self, call: Call, value: object) -> bytes:
        """Encode what the handler returned; any failure to do so is the runtime's INTERNAL error."""
        call_id = call.envelope.call_id
        try:
            status, headers, body = to_parts(value)
            if len(body) > self._max_body:
                call.outcome = _metrics.TOO_LARGE
                kind = ErrorKind.RESPONSE_TOO_LARGE
                message = f"response body of {len(body)} bytes exceeds the limit of {self._max_body} bytes"
            else:
                duration = _perf_ns() - call.started_ns
                encoded = encode_response(status, headers, body, call_id, 0, "", duration, call.cold)
                if len(encoded) <= self._conn.max_payload:
                    return encoded
                call.outcome = _metrics.TOO_LARGE
                kind = ErrorKind.RESPONSE_TOO_LARGE
                message = f"response of {len(encoded)} bytes exceeds NATS max_payload {self._conn.max_payload}"
        except Exception as exc:
            call.outcome = _metrics.INTERNAL
            kind, message = ErrorKind.INTERNAL, str(exc)
        self._log.error("call_failed", call_id=call_id, error_kind=kind.name, error=message)
        return replies.error(call_id, kind, message, _perf_ns() - call.started_ns, call.cold)

    def _failure(self, call: Call, exc: BaseException) -> bytes:
        """The handler raised: 400 for an unreadable request, else HANDLER with the exception (not its trace)."""
        duration = _perf_ns() - call.started_ns
        call_id = call.envelope.call_id
        if _TRACING:
            _tracing.fail(self._spans.get(call), exc)
        if isinstance(exc, RequestError):
            call.outcome = _metrics.BAD_REQUEST
            return replies.bad_input(call_id, str(exc), duration, call.cold)
        call.outcome = _metrics.HANDLER_ERROR
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        trace = "".join(traceback.format_exception(exc))
        self._log.error("call_failed", call_id=call_id, error_kind="HANDLER", error=message, traceback=trace)
        return replies.error(call_id, ErrorKind.HANDLER, message, duration, call.cold)

    def _trace(self, call: Call, context: contextvars.Context) -> None:
        """Start the call's span, current in the handler's context (on the loop, or on a worker thread)."""
        settings = self._settings
        self._spans[call] = _tracing.start(
            self._tracer, context, call.envelope, settings.namespace, settings.function, call.cold
        )

    def _publish_output(self, call_id: str) -> None:
        """What the handler printed during the call, to LF_LOGS (best effort: logs never fail a call)."""
        assert self._capture is not None
        message = self._capture.take(call_id)
        if message is None:
            return
        try:
            self._conn.publish(self._capture.subject, message)
        except Exception as exc:  # e.g. over max_payload
            self._log.warning("output_not_published", call_id=call_id, error=str(exc))

    def _publish(self, reply: str, payload: bytes) -> None:
        try:
            sent = self._conn.publish(reply, payload)
        except PayloadTooLarge as exc:  # an error envelope over max_payload: only with a tiny server limit
            self._log.warning("reply_failed", error=str(exc))
        except Exception as exc:  # e.g. a reply subject the codec refuses: the caller times out
            self._log.warning("reply_failed", error=repr(exc))
        else:
            if not sent:
                self._log.warning("reply_failed", error="not connected to NATS")

    # ------------------------------------------------------------------------------------- NATS callbacks

    def _report(self, level: int, event: str, fields: dict[str, Any]) -> None:
        """Connection events (`nats_disconnected`, `nats_reconnected`, `nats_error`, ...) into our log."""
        name = _LEVELS.get(level, "error")
        if name:
            self._log.event(event, name, **fields)
        if event == "nats_disconnected":
            self._links += 1
        elif event == "nats_reconnected" and self._loop is not None:
            task = self._loop.create_task(self._confirm(self._links))
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)
