"""One replica serving one function over NATS: subscription, concurrency limit, deadlines, busy answers, drain.

Flow of a call (all bookkeeping happens on the event loop thread, so it needs no locks):

1. `_on_msg` (the subscription callback) decodes the envelope and admits the call: it starts if fewer than
   `concurrency` handlers run, waits in a queue of at most `queue_depth` calls otherwise, or is answered BUSY.
   Each admitted call gets one timer at its deadline (budget minus the protocol's margin).
2. A sync handler runs on a `WorkerPool` thread, which also maps and encodes the answer, then hands the bytes
   back through a deque and a wake-up (one wake-up per loop turn, not per call). An async handler runs as a task.
3. Whoever comes first wins: the answer (the timer is cancelled) or the timer (TIMEOUT is answered, the slot is
   freed, an async handler is cancelled, a sync handler's thread is counted as stuck until it returns).
4. `stuck_limit` stuck threads, SIGTERM or SIGINT stop the replica: the subscription is drained (the server
   stops sending, what it already sent is admitted), in-flight calls finish (up to `drain_timeout_s`), the
   connection is flushed and closed. The exit code is 0, or `EX_TEMPFAIL` (75) when stuck handlers forced it.

The callback subscription is deliberate: nats-py's callback path costs about a third of `async for` over
`sub.messages` (DESIGN §7). The callback never awaits a handler, since nats-py runs it once per message in turn.
"""

from __future__ import annotations

import asyncio
import signal
import time
import traceback
from collections import deque
from typing import Any

import nats
from lf_dataplane.protocol import RUNTIME_MARGIN_FRACTION, RUNTIME_MARGIN_MAX_MS, ErrorKind
from lf_dataplane.subjects import invoke_subject, queue_group
from lf_native import RequestEnvelope, decode_request, encode_response
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from lf_runtime import replies
from lf_runtime.handlers import Handler, to_parts
from lf_runtime.logs import Log
from lf_runtime.requests import Request, RequestError
from lf_runtime.settings import Settings, redacted_nats_url
from lf_runtime.workers import WorkerPool

EX_OK = 0
EX_FAILURE = 1
EX_TEMPFAIL = 75  # sysexits.h: "try again later"; the supervisor restarts the replica

_QUEUED, _RUNNING, _DONE, _TIMED_OUT = range(4)
_perf_ns = time.perf_counter_ns
_monotonic = time.monotonic


def usable_budget_s(budget_ms: int) -> float:
    """Seconds the handler may take: the envelope's budget minus the runtime's margin (docs/protocol.md)."""
    margin = min(budget_ms * RUNTIME_MARGIN_FRACTION, RUNTIME_MARGIN_MAX_MS)
    return (budget_ms - margin) / 1000


async def _round_trip(nc: Client) -> None:
    """Return once the server has processed every command sent so far (SUB, UNSUB).

    nats-py 2.16 writes a flush's PING straight to the socket, ahead of commands still in its pending buffer, so
    one `flush()` can return before the server saw the SUB just issued (1 start in 30 answered "no responders"
    right after "ready" here). The second PING leaves after the flusher task wrote that buffer.
    """
    await nc.flush()
    await nc.flush()


class Call:
    """One admitted call, owned by the event loop thread."""

    __slots__ = (
        "budget_ms",
        "cold",
        "deadline",
        "envelope",
        "reply",
        "started_ns",
        "state",
        "stuck",
        "task",
        "timer",
    )

    def __init__(self, reply: str, envelope: RequestEnvelope, started_ns: int, budget_s: float) -> None:
        self.reply = reply
        self.envelope = envelope
        self.started_ns = started_ns
        self.budget_ms = envelope.budget_ms
        self.deadline = _monotonic() + budget_s
        self.state = _QUEUED
        self.cold = False
        self.stuck = False  # a sync handler still running past its deadline
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None


class Replica:
    """Serves `handler` for the function named in `settings` until stopped; `run()` returns the exit code."""

    def __init__(self, settings: Settings, handler: Handler, log: Log) -> None:
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
        # Sync answers coming back from worker threads; `_wake_pending` keeps it to one wake-up per loop turn.
        self._done: deque[tuple[Call, bytes]] = deque()
        self._wake_pending = False
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump_task: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Client | None = None

    # ----------------------------------------------------------------------------------------- life cycle

    async def run(self) -> int:
        """Connect, subscribe, log `ready`, serve until stopped, drain; return the process exit code."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, EX_OK, sig.name)
        settings = self._settings
        subject = invoke_subject(settings.namespace, settings.function)
        self._nc = nc = await self._connect()
        if self._pool is not None:
            self._pump_task = loop.create_task(self._pump())
        sub = await nc.subscribe(subject, queue=queue_group(settings.namespace, settings.function), cb=self._on_msg)
        await _round_trip(nc)
        self._log.event("ready", subject=subject, queue=sub.queue, concurrency=self._limit, queue_depth=self._depth)
        code = await self._stopped
        await self._drain(sub)
        await self._close(nc)
        self._log.event("stopped", exit_code=code)
        return code

    async def _connect(self) -> Client:
        """Connect, retrying for `connect_timeout_s`; once connected, reconnect for ever (NATS restarts)."""
        settings = self._settings
        connecting = nats.connect(
            servers=[url.strip() for url in settings.nats_url.split(",")],
            name=f"lf-runtime {settings.namespace}.{settings.function}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=self._on_nats_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )
        try:
            return await asyncio.wait_for(connecting, settings.connect_timeout_s)
        except TimeoutError:
            where, window = redacted_nats_url(settings.nats_url), settings.connect_timeout_s
            raise ConnectionError(f"no NATS server reachable at {where} within {window:g}s") from None

    def stop(self, code: int, reason: str) -> None:
        """Begin draining; the first reason wins. Safe to call from signal handlers and timers."""
        if self._stopped is not None and not self._stopped.done():
            self._log.event("stopping", reason=reason, exit_code=code)
            self._stopped.set_result(code)

    async def _drain(self, sub: Subscription) -> None:
        assert self._nc is not None
        try:
            await self._nc._send_unsubscribe(sub._id)  # the server stops sending; nothing is dropped locally
            await _round_trip(self._nc)  # every message the server sent before the UNSUB is read and queued
            await sub.drain()  # type: ignore[no-untyped-call]  # hands the queued messages to _on_msg
        except Exception as exc:  # the connection may already be gone
            self._log.warning("unsubscribe_failed", error=repr(exc))
        in_flight = len(self._active) + len(self._waiting)
        self._log.event("draining", in_flight=in_flight, stuck=self._stuck)
        if not in_flight:
            return
        assert self._loop is not None
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
            self._send(call.reply, replies.error(call.envelope.call_id, ErrorKind.INTERNAL, message))

    async def _close(self, nc: Client) -> None:
        try:
            if nc.is_connected:
                await nc.flush(timeout=2)
        except Exception as exc:
            self._log.warning("flush_failed", error=repr(exc))
        if self._pump_task is not None:
            self._pump_task.cancel()
        await nc.close()

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------------------ admission

    async def _on_msg(self, msg: Msg) -> None:
        started = _perf_ns()
        reply = msg.reply
        try:
            envelope = decode_request(msg.data)
        except ValueError as exc:  # lf_native.EnvelopeError
            self._log.warning("bad_request", error=str(exc), size=len(msg.data))
            if reply:
                await self._publish(reply, replies.error("", ErrorKind.BAD_REQUEST, f"bad request envelope: {exc}"))
            return
        if not reply:
            self._log.warning("no_reply_subject", call_id=envelope.call_id)
            return
        if self._running >= self._limit and len(self._waiting) >= self._depth:
            message = f"replica busy: {self._running} running, {len(self._waiting)} queued"
            await self._publish(reply, replies.error(envelope.call_id, ErrorKind.BUSY, message, _perf_ns() - started))
            return
        budget_s = usable_budget_s(envelope.budget_ms)
        if budget_s <= 0:
            message = f"no time left to run the handler (budget {envelope.budget_ms} ms)"
            await self._publish(reply, replies.error(envelope.call_id, ErrorKind.TIMEOUT, message))
            return
        assert self._loop is not None
        call = Call(reply, envelope, started, budget_s)
        call.timer = self._loop.call_later(budget_s, self._expire, call)
        if self._running < self._limit:
            self._start(call)
        else:
            self._waiting.append(call)

    def _start(self, call: Call) -> None:
        self._running += 1
        self._active.add(call)
        call.state = _RUNNING
        if self._cold:
            call.cold = True
            self._cold = False
        if self._pool is not None:
            self._pool.submit(self._run_sync, call)
        else:
            assert self._loop is not None
            call.task = self._loop.create_task(self._run_async(call))

    def _release(self, call: Call) -> None:
        """Free `call`'s slot and start queued calls in order (their timers keep running)."""
        self._running -= 1
        self._active.discard(call)
        waiting = self._waiting
        while waiting and self._running < self._limit:
            self._start(waiting.popleft())
        self._check_idle()

    def _check_idle(self) -> None:
        idle = self._idle
        if idle is not None and not self._active and not self._waiting and not idle.done():
            idle.set_result(None)

    # ------------------------------------------------------------------------------------------ execution

    def _run_sync(self, call: Call) -> None:
        """On a worker thread: run the handler, encode its answer, hand the bytes to the loop."""
        try:
            value = self._func(Request(call.envelope, call.deadline))
        except BaseException as exc:
            payload = self._failure(call, exc)
        else:
            payload = self._answer(call, value)
        self._done.append((call, payload))
        if not self._wake_pending:
            self._wake_pending = True
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _pump(self) -> None:
        """On the loop: publish the answers of sync handlers, as many as are ready per wake-up."""
        done = self._done
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._wake_pending = False  # before draining: a thread appending now wakes us again
            while done:
                call, payload = done.popleft()
                await self._finish(call, payload)

    async def _run_async(self, call: Call) -> None:
        try:
            value = await self._func(Request(call.envelope, call.deadline))
        except asyncio.CancelledError:
            if call.state == _TIMED_OUT:
                return  # _expire answered already
            payload = self._failure(call, RuntimeError("the handler was cancelled"))
        except BaseException as exc:
            payload = self._failure(call, exc)
        else:
            payload = self._answer(call, value)
        await self._finish(call, payload)

    async def _finish(self, call: Call, payload: bytes) -> None:
        if call.state == _TIMED_OUT:  # answered already; the result is dropped
            if call.stuck:
                call.stuck = False
                self._stuck -= 1
                self._log.event("stuck_returned", call_id=call.envelope.call_id, stuck=self._stuck)
            return
        call.state = _DONE
        if call.timer is not None:
            call.timer.cancel()
        try:
            await self._publish(call.reply, payload)
        finally:
            self._release(call)

    def _expire(self, call: Call) -> None:
        """The call's deadline passed: answer TIMEOUT now, whatever its handler is doing."""
        state = call.state
        if state == _QUEUED:
            self._waiting.remove(call)
        elif state != _RUNNING:
            return
        call.state = _TIMED_OUT
        message = f"the handler did not answer within the call's budget ({call.budget_ms} ms)"
        duration = _perf_ns() - call.started_ns
        self._send(call.reply, replies.error(call.envelope.call_id, ErrorKind.TIMEOUT, message, duration, call.cold))
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
                kind = ErrorKind.RESPONSE_TOO_LARGE
                message = f"response body of {len(body)} bytes exceeds the limit of {self._max_body} bytes"
            else:
                return encode_response(status, headers, body, call_id, 0, "", _perf_ns() - call.started_ns, call.cold)
        except Exception as exc:
            kind, message = ErrorKind.INTERNAL, str(exc)
        self._log.error("call_failed", call_id=call_id, error_kind=kind.name, error=message)
        return replies.error(call_id, kind, message, _perf_ns() - call.started_ns, call.cold)

    def _failure(self, call: Call, exc: BaseException) -> bytes:
        """The handler raised: 400 for an unreadable request, else HANDLER with the exception (not its trace)."""
        duration = _perf_ns() - call.started_ns
        call_id = call.envelope.call_id
        if isinstance(exc, RequestError):
            return replies.bad_input(call_id, str(exc), duration, call.cold)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        trace = "".join(traceback.format_exception(exc))
        self._log.error("call_failed", call_id=call_id, error_kind="HANDLER", error=message, traceback=trace)
        return replies.error(call_id, ErrorKind.HANDLER, message, duration, call.cold)

    async def _publish(self, reply: str, payload: bytes) -> None:
        assert self._nc is not None
        try:
            await self._nc.publish(reply, payload)
        except Exception as exc:  # closed or reconnecting with a full buffer: the caller times out
            self._log.warning("reply_failed", error=repr(exc))

    def _send(self, reply: str, payload: bytes) -> None:
        """Publish from a plain callback (timers): rare, so a task per reply is fine."""
        self._spawn(self._publish(reply, payload))

    # ------------------------------------------------------------------------------------- NATS callbacks

    async def _on_nats_error(self, exc: Exception) -> None:
        self._log.warning("nats_error", error=repr(exc))

    async def _on_disconnected(self) -> None:
        if self._stopped is None or not self._stopped.done():  # not our own close
            self._log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        self._log.event("nats_reconnected")

    async def _on_closed(self) -> None:
        self.stop(EX_FAILURE, "the NATS connection closed")
