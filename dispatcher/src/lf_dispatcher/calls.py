"""One async call, from its delivery to its ack: the record moved on by compare-and-set, the function invoked over
the same subject sync calls use, retries, dead letters, callbacks (docs/architecture.md, "An async call"). The
logic the runtimes' async workers had (`lf_runtime/asyncworker.py` and its Go and Rust twins), moved here once.

- The record (`LF_RESULTS[{call id}]`) is moved on only by compare-and-set on the revision this dispatcher read or
  wrote: before invoking (→ running), after (→ succeeded | failed (retry scheduled) | dead). A zombie — a
  dispatcher paused past the ack wait whose call was redelivered and run elsewhere — finds the revision moved and
  drops its result without acking (an ack would acknowledge the other delivery of the same message).
- The attempt number is the record's: one more than the attempts it counts (a delivery whose record says
  `running` is one whose dispatcher died mid-call: that attempt counted). Not JetStream's delivery count, because a
  busy answer is not an attempt: the record goes back to `queued` with its count unchanged and the call is NAKed
  with a short delay (BUSY_DELAY_S; NO_REPLICA_DELAY_S when nothing serves the function, e.g. at zero replicas).
- The first delivery of a call that was never redriven has no record yet: the `running` record is written
  create-only at once (one round trip instead of a read and a write); only if that finds a record (a cancel, a
  duplicate) is it read.
- Retries: `lf_core.asynccalls.policy` decides (retryable statuses, backoff with jitter, maxAttempts, maxAge); a
  retry is a NAK with that delay. The last failure, a 4xx, a delivery past maxAttempts (a dispatcher died on the
  last attempt) or a call past maxAge goes to LF_DEAD (`Nats-Msg-Id` = `{call id}.d{redrives}`, so a repeat
  after a crash is deduplicated), then TERM.
- A call running longer than half its ack wait sends in-progress acks (`+WPI`) so it is not redelivered meanwhile.
- Callbacks: after the final record, `Callbacks.deliver` (lf_dispatcher.callbacks: bounded, signed) takes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from lf_core.asynccalls import policy as policies
from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.bus.errors import BrokerUnavailable, BusError, BusTimeout, NoResponders, PayloadTooLarge
from lf_core.bus.invoking import BadResponse, invoke
from lf_core.bus.requester import NatsRequester
from lf_core.contract.protocol import ErrorKind
from lf_native import EnvelopeError, RequestEnvelope, decode_request, encode_request, parse_nats_headers

from lf_dispatcher.pulling import Puller

log = logging.getLogger(__name__)

STORE_RETRIES = 20
"""Broker calls of one call (record, dead letter) retried this often while the connection comes back."""
BUSY_DELAY_S = 0.05
NO_REPLICA_DELAY_S = 1.0
BROKER_DELAY_S = 0.5
_ACK = b"+ACK"
_TERM = b"+TERM"
_WPI = b"+WPI"


class _PubAck(msgspec.Struct):
    seq: int = 0
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


class CallbackSink(Protocol):
    """What the dispatcher needs of `lf_dispatcher.callbacks.Callbacks`."""

    def deliver(self, record: js.CallRecord, url: str, *, result_ttl_s: float) -> None: ...

    def deliver_event(self, record: js.CallRecord, url: str, *, result_ttl_s: float) -> None: ...


class Outcome:
    """What one invoke came back with: a status and error text, or back-pressure (`delay_s` > 0, not an attempt)."""

    __slots__ = ("delay_s", "error", "reason", "result")

    def __init__(self, result: js.CallResult | None, error: str = "", delay_s: float = 0.0, reason: str = "") -> None:
        self.result = result
        self.error = error
        self.delay_s = delay_s
        self.reason = reason


class CallRunner:
    """Runs the calls every puller hands it; one per dispatcher."""

    def __init__(self, conn: NatsRequester, *, worker_id: str, callbacks: CallbackSink | None = None) -> None:
        self.conn = conn
        self.request = conn.request_headers
        self.worker_id = worker_id
        self.callbacks = callbacks
        self.tasks: set[asyncio.Task[None]] = set()

    # -- deliveries -------------------------------------------------------------------------------------------------

    def start(self, puller: Puller, reply: str, delivered: int, published: float, payload: bytes,
              headers: bytes | None) -> None:  # fmt: skip
        puller.delivered()
        task = asyncio.get_running_loop().create_task(
            self.process(puller, reply, delivered, published, payload, headers)
        )
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._processed(t, puller))

    def _processed(self, task: asyncio.Task[None], puller: Puller) -> None:
        self.tasks.discard(task)
        puller.finished()
        if not task.cancelled() and task.exception() is not None:
            log.error("async_call_failed", extra={"fields": {"error": repr(task.exception())}})

    def hand_back(self, reply: str) -> None:
        """A call delivered to a puller that stopped: another dispatcher takes it now."""
        self._ack(reply, b"-NAK")

    # -- one call ---------------------------------------------------------------------------------------------------

    async def process(self, p: Puller, reply: str, delivered: int, published: float, payload: bytes,
                      raw_headers: bytes | None) -> None:  # fmt: skip
        try:  # a message nothing can run (only a writer of LF_ASYNC other than ours makes one) is terminated
            headers = dict(parse_nats_headers(raw_headers)[2]) if raw_headers else {}
            submitted = float(headers.get(js.SUBMITTED_HEADER) or published)
            redrives = int(headers.get(js.REDRIVE_HEADER) or 0)
            callback = headers.get(js.CALLBACK_HEADER, "")
            envelope = decode_request(payload)
        except (EnvelopeError, ValueError) as exc:
            log.warning("async_bad_envelope", extra={"fields": {"function": p.consumer, "error": str(exc)}})
            self._ack(reply, _TERM)
            return
        started = await self._begin(
            p, reply, payload, headers, envelope.call_id, submitted, redrives, callback, first=delivered == 1
        )
        if started is None:
            return
        base, revision = started
        policy = p.policy
        attempt = base.attempts
        outcome = await self._invoke(p, reply, envelope, payload)
        now = time.time()
        base.updated_at = now
        if outcome.result is None:  # busy, or no replica: back-pressure, not an attempt
            p.counts.busy += 1
            base.status, base.attempts, base.worker = "queued", attempt - 1, ""
            if not await self._store_final(p, base, revision):
                return
            self._nak(reply, outcome.delay_s * (0.5 + random.random()))  # noqa: S311 (jitter)
            return
        p.counts.runs += 1
        p.window.answered(time.monotonic())
        result = outcome.result
        decision = policies.after_attempt(attempt, result.status, submitted, now, policy)
        if decision.action == "done":
            base.status, base.result, base.last_error = "succeeded", result, ""
            if not await self._store_final(p, base, revision):
                return
            self._ack(reply, _ACK)
            self._callback(p, base, callback)
            return
        error = outcome.error or f"status {result.status}"
        if decision.action == "retry":
            base.status, base.result, base.last_error = "failed", result, error
            base.next_attempt_at = now + decision.delay_s
            if not await self._store_final(p, base, revision):
                return
            p.counts.retries += 1
            self._nak(reply, decision.delay_s)
            return
        base.result = result
        await self._finish_dead(p, reply, payload, headers, base, revision, f"{decision.reason}: {error}", callback)

    async def _begin(
        self, p: Puller, reply: str, payload: bytes, headers: dict[str, str], call_id: str, submitted: float,
        redrives: int, callback: str, *, first: bool,
    ) -> tuple[js.CallRecord, int] | None:  # fmt: skip
        """Move the record to `running` for the next attempt: `(record, revision)`; None when the call is not to
        run here (final already, taken by another delivery, or dead before this attempt: each handled)."""
        policy = p.policy
        now = time.time()
        if redrives == 0 and first and policies.before_attempt(1, submitted, now, policy).action == "run":
            record = js.CallRecord(
                call_id=call_id, namespace=p.namespace, function=p.function, status="running", attempts=1,
                submitted_at=submitted, updated_at=now, worker=self.worker_id, callback="pending" if callback else "",
                sink="pending" if p.route.async_rule.sink else "",
            )  # fmt: skip
            try:
                return record, await self._put(record, 0, policy)
            except jetstream.WrongSequence:
                pass  # it has a record already (cancelled, or a duplicate): read it
        found = await self._retrying(jetstream.kv_get, self.request, js.RESULTS_BUCKET, call_id)
        current = js.decode_record(found[0]) if found is not None else None
        revision = found[1] if found is not None else 0
        if current is not None and current.status in js.TERMINAL:
            if current.status == "dead" and current.redrives == redrives:  # died after the record, before the letter
                await self._dead_letter(payload, headers, current)
                self._ack(reply, _TERM)
            else:
                self._ack(reply, _ACK)
            return None
        base = current or js.CallRecord(
            call_id=call_id, namespace=p.namespace, function=p.function, status="queued", submitted_at=submitted
        )
        attempt = base.attempts + 1
        base.submitted_at = base.submitted_at or submitted
        base.redrives = redrives
        base.callback = "pending" if callback else ""
        base.sink = "pending" if p.route.async_rule.sink else ""
        before = policies.before_attempt(attempt, submitted, now, policy)
        if before.action == "dead":
            await self._finish_dead(p, reply, payload, headers, base, revision, before.reason, callback)
            return None
        base.status, base.attempts, base.updated_at, base.worker = "running", attempt, now, self.worker_id
        try:
            return base, await self._put(base, revision, policy)
        except jetstream.WrongSequence:
            log.info("async_call_taken", extra={"fields": {"call_id": call_id, "attempt": attempt}})
            return None  # another delivery of this call moved the record first: it owns the call

    async def _invoke(self, p: Puller, reply: str, envelope: RequestEnvelope, payload: bytes) -> Outcome:
        """The function's answer over `lf.invoke.{ns}.{fn}`, with in-progress acks while it runs long."""

        def encode(budget_ms: int) -> bytes:
            if envelope.budget_ms <= budget_ms + 20:  # the stored envelope's budget still holds: send it as is
                return payload
            return encode_request(
                envelope.call_id, envelope.method, envelope.path, envelope.query, envelope.headers, envelope.body,
                budget_ms, envelope.params, envelope.traceparent, envelope.tracestate,
            )  # fmt: skip

        keepalive = _Keepalive(self, reply, max(p.ack_wait_s / 2, 0.5)) if p.timeout_s > p.ack_wait_s / 2 else None
        try:
            response = await invoke(self.conn, p.subject, encode, time.monotonic() + p.timeout_s, retry_busy=False)
        except NoResponders:
            p.window.busy(p.held, time.monotonic())
            return Outcome(None, delay_s=NO_REPLICA_DELAY_S, reason="no replica")
        except BrokerUnavailable:
            return Outcome(None, delay_s=BROKER_DELAY_S, reason="broker unavailable")
        except BusTimeout:
            return Outcome(js.CallResult(status=504), "no answer within the function's timeout")
        except PayloadTooLarge as exc:
            return Outcome(js.CallResult(status=413), str(exc))
        except BadResponse as exc:
            return Outcome(js.CallResult(status=502), f"bad response: {exc}")
        except BusError as exc:
            return Outcome(js.CallResult(status=502), repr(exc))
        finally:
            if keepalive is not None:
                keepalive.cancel()
        if response.error_kind == ErrorKind.BUSY:
            p.window.busy(p.held, time.monotonic())
            return Outcome(None, delay_s=BUSY_DELAY_S, reason="busy")
        result = js.CallResult(status=response.status, headers=list(response.headers), body=response.body)
        return Outcome(result, response.error)

    async def _finish_dead(
        self, p: Puller, reply: str, payload: bytes, headers: dict[str, str], record: js.CallRecord, revision: int,
        reason: str, callback: str,
    ) -> None:  # fmt: skip
        record.status, record.last_error, record.updated_at = "dead", reason, time.time()
        if not await self._store_final(p, record, revision):
            return
        await self._dead_letter(payload, headers, record)
        p.counts.dead += 1
        self._ack(reply, _TERM)
        log.warning(
            "async_dead_letter",
            extra={"fields": {"call_id": record.call_id, "attempts": record.attempts, "error": reason}},
        )
        self._callback(p, record, callback)

    async def _dead_letter(self, payload: bytes, headers: dict[str, str], record: js.CallRecord) -> None:
        letter = [
            (jetstream.MSG_ID, f"{record.call_id}.d{record.redrives}"),
            (js.ERROR_HEADER, record.last_error.replace("\r", " ").replace("\n", " ")[:1024] or "unknown"),
            (js.ATTEMPTS_HEADER, str(record.attempts)),
            (js.SUBMITTED_HEADER, f"{record.submitted_at:.6f}"),
            (js.DEAD_AT_HEADER, f"{record.updated_at:.6f}"),
            (js.REDRIVE_HEADER, str(record.redrives)),
        ]
        if record.result is not None:
            letter.append((js.STATUS_HEADER, str(record.result.status)))
        if headers.get(js.CALLBACK_HEADER):
            letter.append((js.CALLBACK_HEADER, headers[js.CALLBACK_HEADER]))
        subject = js.dead_subject(record.namespace, record.function, record.call_id)
        await self._retrying(jetstream.publish, self.request, subject, payload, letter)

    async def _store_final(self, p: Puller, record: js.CallRecord, revision: int) -> bool:
        """CAS the record; False (and nothing acked) when a newer delivery of the call moved it: we are a zombie."""
        try:
            await self._put(record, revision, p.policy)
            return True
        except jetstream.WrongSequence:
            p.counts.zombie_results_dropped += 1
            log.warning(
                "async_stale_result_dropped", extra={"fields": {"call_id": record.call_id, "status": record.status}}
            )
            return False

    async def _put(self, record: js.CallRecord, revision: int, policy: policies.AsyncPolicy) -> int:
        """`jetstream.kv_put` of the record (compare-and-set on `revision`, the result TTL), on the hot path: one
        request and a typed decode of the PubAck, retried while the connection comes back.

        Raises:
            WrongSequence: another delivery moved the record on.
        """
        headers = (
            ("Nats-Expected-Last-Subject-Sequence", str(revision)),
            ("Nats-TTL", f"{max(1, int(policy.result_ttl_s))}s"),
        )
        subject = f"$KV.{js.RESULTS_BUCKET}.{record.call_id}"
        reply = await self._retrying(self.request, subject, js.encode_record(record), headers, jetstream.API_TIMEOUT_S)
        ack = _decode_ack(reply)
        if ack.error is not None:
            code, err_code = int(ack.error.get("code", 0)), int(ack.error.get("err_code", 0))
            cls = jetstream.WrongSequence if err_code == jetstream.ERR_WRONG_LAST_SEQUENCE else jetstream.JetStreamError
            raise cls(code, err_code, str(ack.error.get("description", "")))
        return ack.seq

    async def _retrying(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Broker calls survive a broker restart: retried while the connection comes back (CAS errors are not)."""
        delay = 0.1
        for attempt in range(STORE_RETRIES):
            try:
                return await func(*args, **kwargs)
            except (BusError, TimeoutError):
                if attempt == STORE_RETRIES - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _ack(self, reply: str, what: bytes) -> None:
        if not self.conn.publish(reply, what):
            log.warning("async_ack_lost", extra={"fields": {"reply": reply}})

    def _nak(self, reply: str, delay_s: float) -> None:
        self._ack(reply, b"-NAK " + json.dumps({"delay": int(delay_s * 1e9)}).encode())

    def _callback(self, p: Puller, record: js.CallRecord, url: str) -> None:
        """The call's X-Callback-Url and the function's spec.async.sink get the final record (`callbacks`)."""
        sink = p.route.async_rule.sink
        if not url and not sink:
            return
        if self.callbacks is None:
            log.warning("async_callback_not_sent", extra={"fields": {"call_id": record.call_id}})
            return
        if url:
            self.callbacks.deliver(record, url, result_ttl_s=p.policy.result_ttl_s)
        if sink:
            self.callbacks.deliver_event(record, sink, result_ttl_s=p.policy.result_ttl_s)

    async def close(self, timeout: float) -> None:
        """Wait for the calls in hand to be recorded and acked."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


class _Keepalive:
    """`+WPI` on a call's ack subject every `interval` while it runs: JetStream does not redeliver it meanwhile."""

    __slots__ = ("handle", "interval", "reply", "runner")

    def __init__(self, runner: CallRunner, reply: str, interval: float) -> None:
        self.runner, self.reply, self.interval = runner, reply, interval
        self.handle = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        self.runner._ack(self.reply, _WPI)
        self.handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def cancel(self) -> None:
        self.handle.cancel()
