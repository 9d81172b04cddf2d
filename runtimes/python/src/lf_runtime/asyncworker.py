"""A replica's async side (docs/architecture.md, "An async call"): pull calls from the function's durable consumer on
LF_ASYNC, run them like sync calls, store results with compare-and-set, retry with backoff, dead-letter, call back.

- One durable pull consumer per function (`{ns}_{fn}`, filter `lf.async.{ns}.{fn}.*`), shared by its replicas;
  each replica pulls at most its free concurrency (capped by LF_ASYNC_CONCURRENCY), so nothing waits in a busy
  replica while another is idle. `max_ack_pending` (LF_ASYNC_MAX_INFLIGHT) caps the function's async calls in
  flight over all replicas. One pull request at a time, expiring after `PULL_EXPIRES_S`; the next is sent as soon
  as it is satisfied or expired and a slot is free.
- ack wait = timeout + LF_ASYNC_ACK_GRACE: a replica that dies mid-call (kill -9) has its call redelivered to
  another one after that; a call that runs long sends in-progress acks (`+WPI`) every half ack wait.
- The call's record (`LF_RESULTS[{call id}]`) is moved on only by compare-and-set on the revision this worker
  read or wrote: before running (→ running), after (→ succeeded | failed (retry scheduled) | dead). A zombie — a
  replica paused past the ack wait whose call was redelivered and run elsewhere — finds the revision moved and
  drops its result without acking (an ack would acknowledge the other replica's delivery of the same message).
- Retries: `lf_core.asynccalls.policy` decides (retryable statuses, backoff with jitter, maxAttempts, maxAge); a
  retry is a NAK with that delay; the delivery count of the ack subject is the attempt number. The last failure, a
  4xx, a delivery past maxAttempts (the replica died on the last attempt) or a call past maxAge goes to LF_DEAD
  (`Nats-Msg-Id` = `{call id}.d{redrives}`, so a repeat after a crash is deduplicated), then TERM.
- Callbacks: after the final record, the result is POSTed to the call's `X-Callback-Url` by this replica (up to
  `CALLBACK_ATTEMPTS` with backoff), SSRF-checked again at delivery time and sent to the checked address only.
  Why here and not in a separate process: the replica holds the result already and lf dev needs no extra
  process; the cost is that a replica that dies between storing a result and delivering it loses that callback
  (the record keeps `callback: pending`, which a sweeper can pick up later — docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from lf_core.asynccalls import policy as policies
from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.bus.errors import BusError
from lf_core.bus.requester import NatsRequester
from lf_core.ssrf import UnsafeUrl, resolve_target
from lf_native import EnvelopeError, decode_request, decode_response, parse_nats_headers

if TYPE_CHECKING:
    from lf_runtime.logs import Log
    from lf_runtime.serving import Replica
    from lf_runtime.settings import Settings

PULL_EXPIRES_S = 1.0
CALLBACK_ATTEMPTS = 4
CALLBACK_BACKOFF_S = 0.5
CALLBACK_TIMEOUT_S = 10.0
STORE_RETRIES = 5


class AsyncWorker:
    def __init__(self, settings: Settings, replica: Replica, log: Log) -> None:
        self.settings = settings
        self.replica = replica
        self.log = log
        self.ns, self.fn = settings.namespace, settings.function
        self.policy = policies.AsyncPolicy(
            max_attempts=settings.async_max_attempts,
            backoff_s=settings.async_backoff_s,
            max_age_s=settings.async_max_age_s or None,
            result_ttl_s=settings.async_result_ttl_s,
        )
        self.ack_wait_s = settings.timeout_s + settings.async_ack_grace_s
        urls = [url.strip() for url in settings.nats_url.split(",")]
        self.conn = NatsRequester(urls, name=f"lf-runtime-async {self.ns}.{self.fn}")
        self.request = self.conn.request_headers
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.inbox = ""
        self.pull_open = 0
        self.pulled_at = 0.0
        self.running = 0
        self.pulling = True
        self.tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._ready = False
        # counters for metrics (issue 4): what this replica did
        self.last_reply = ""
        self.counts = {"runs": 0, "succeeded": 0, "retries": 0, "dead": 0, "zombie_results_dropped": 0}

    # -- life cycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run())
        self._main.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("async_worker_failed", error=repr(task.exception()))

    async def _run(self) -> None:
        delay = 0.2
        await self.conn.connect()
        while True:
            try:
                await js.ensure_all(
                    self.request,
                    result_ttl_s=max(self.policy.result_ttl_s, js.DEFAULT_RESULT_TTL_S),
                    replicas=self.settings.stream_replicas,
                )
                config = js.consumer_config(
                    self.ns, self.fn, ack_wait_s=self.ack_wait_s, max_ack_pending=self.settings.async_max_inflight
                )
                await js.ensure_consumer(self.request, config)
                break
            except (BusError, jetstream.JetStreamError, TimeoutError) as exc:
                self.log.warning("async_setup_failed", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.inbox = self.conn.open_stream(self._on_message)
        self._ready = True
        self.log.event("async_ready", consumer=js.consumer_name(self.ns, self.fn), ack_wait_s=self.ack_wait_s)
        while self.pulling:  # watchdog: a pull lost with the connection is sent again
            if self.pull_open and time.monotonic() - self.pulled_at > PULL_EXPIRES_S + 2:
                self.pull_open = 0
            self.pull()
            await asyncio.sleep(0.5)

    def stop_pulling(self) -> None:
        self.pulling = False
        if self._main is not None:
            self._main.cancel()

    async def close(self, timeout: float) -> None:
        """Wait for the calls this worker holds to be stored and acked, then disconnect."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        await self.conn.close()

    # -- pulling ----------------------------------------------------------------------------------------------------

    def window(self) -> int:
        return min(self.replica.free_slots, self.settings.async_concurrency - self.running) - self.pull_open

    def pull(self) -> None:
        if not self._ready or not self.pulling or self.pull_open:
            return
        batch = self.window()
        if batch <= 0:
            return
        body = json.dumps({"batch": batch, "expires": int(PULL_EXPIRES_S * 1e9)}).encode()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{js.ASYNC_STREAM}.{js.consumer_name(self.ns, self.fn)}"
        if self.conn.publish_reply(subject, self.inbox, body):
            self.pull_open = batch
            self.pulled_at = time.monotonic()

    def _on_message(self, reply: str | None, payload: bytes, status: int, headers: bytes | None) -> None:
        if status:  # 404 no messages, 408 expired, 409 (limits, leadership change), 100 heartbeat
            if status != 100:
                self.pull_open = 0
                self.pull()
            return
        self.pull_open = max(0, self.pull_open - 1)
        if not reply:
            return
        self.last_reply = reply  # its pending token is exported (lf_runtime.metrics), parsed at scrape time
        self.running += 1
        task = asyncio.get_running_loop().create_task(self._process(reply, payload, headers))
        self.tasks.add(task)
        task.add_done_callback(self._processed)

    def _processed(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.running -= 1
        if not task.cancelled() and task.exception() is not None:
            self.log.error("async_call_failed", error=repr(task.exception()))
        if not self.pull_open:
            self.pull()

    # -- one call ---------------------------------------------------------------------------------------------------

    async def _process(self, reply: str, payload: bytes, raw_headers: bytes | None) -> None:
        attempt, _seq, published = jetstream.parse_ack_subject(reply)
        headers = dict(parse_nats_headers(raw_headers)[2]) if raw_headers else {}
        submitted = float(headers.get(js.SUBMITTED_HEADER) or published)
        redrives = int(headers.get(js.REDRIVE_HEADER) or 0)
        callback = headers.get(js.CALLBACK_HEADER, "")
        try:
            envelope = decode_request(payload)
        except EnvelopeError as exc:
            self.log.warning("async_bad_envelope", error=str(exc))
            self._ack(reply, b"+TERM")
            return
        call_id = envelope.call_id
        found = await self._retrying(jetstream.kv_get, self.request, js.RESULTS_BUCKET, call_id)
        record = js.decode_record(found[0]) if found is not None else None
        revision = found[1] if found is not None else 0
        if record is not None and record.status in js.TERMINAL:
            if record.status == "dead" and record.redrives == redrives:  # died after the record, before the letter
                await self._dead_letter(payload, headers, record)
                self._ack(reply, b"+TERM")
            else:
                self._ack(reply, b"+ACK")
            return
        now = time.time()
        base = record or js.CallRecord(
            call_id=call_id, namespace=self.ns, function=self.fn, status="queued", submitted_at=submitted
        )
        base.submitted_at = base.submitted_at or submitted
        base.redrives = redrives
        base.callback = "pending" if callback else ""
        before = policies.before_attempt(attempt, submitted, now, self.policy)
        if before.action == "dead":
            base.attempts = max(base.attempts, attempt - 1)
            await self._finish_dead(reply, payload, headers, base, revision, before.reason, callback)
            return
        base.status, base.attempts, base.updated_at, base.worker = "running", attempt, now, self.worker_id
        try:
            revision = await self._put(base, revision)
        except jetstream.WrongSequence:
            self.log.event("async_call_taken", call_id=call_id, attempt=attempt)
            return  # another delivery of this call moved the record first: it owns the call
        self.counts["runs"] += 1
        response = await self._run_handler(reply, envelope)
        status = response.status
        result = js.CallResult(status=status, headers=list(response.headers), body=response.body)
        now = time.time()
        decision = policies.after_attempt(attempt, status, submitted, now, self.policy)
        base.updated_at = now
        if decision.action == "done":
            base.status, base.result, base.last_error = "succeeded", result, ""
            if not await self._store_final(base, revision):
                return
            self.counts["succeeded"] += 1
            self._ack(reply, b"+ACK")
            self._callback(base, callback)
            return
        error = response.error or f"status {status}"
        if decision.action == "retry":
            base.status, base.result, base.last_error = "failed", result, error
            base.next_attempt_at = now + decision.delay_s
            if not await self._store_final(base, revision):
                return
            self.counts["retries"] += 1
            self._ack(reply, b"-NAK " + json.dumps({"delay": int(decision.delay_s * 1e9)}).encode())
            return
        base.result = result
        await self._finish_dead(reply, payload, headers, base, revision, f"{decision.reason}: {error}", callback)

    async def _run_handler(self, reply: str, envelope: Any) -> Any:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()

        def done(payload: bytes) -> None:
            if not answered.done():
                answered.set_result(payload)

        keepalive = max(self.ack_wait_s / 2, 0.5)
        self.replica.run_async_call(envelope, done)
        while True:
            try:
                payload = await asyncio.wait_for(asyncio.shield(answered), keepalive)
                break
            except TimeoutError:
                self._ack(reply, b"+WPI")  # still working: don't redeliver yet
        return decode_response(payload)

    async def _finish_dead(
        self, reply: str, payload: bytes, headers: dict[str, str], record: js.CallRecord, revision: int, reason: str,
        callback: str,
    ) -> None:  # fmt: skip
        record.status, record.last_error, record.updated_at = "dead", reason, time.time()
        if not await self._store_final(record, revision):
            return
        await self._dead_letter(payload, headers, record)
        self.counts["dead"] += 1
        self._ack(reply, b"+TERM")
        self.log.warning("async_dead_letter", call_id=record.call_id, attempts=record.attempts, error=reason)
        self._callback(record, callback)

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

    async def _store_final(self, record: js.CallRecord, revision: int) -> bool:
        """CAS the record; False (and nothing acked) when a newer delivery of the call moved it: we are a zombie."""
        try:
            await self._put(record, revision)
            return True
        except jetstream.WrongSequence:
            self.counts["zombie_results_dropped"] += 1
            self.log.warning("async_stale_result_dropped", call_id=record.call_id, status=record.status)
            return False

    async def _put(self, record: js.CallRecord, revision: int) -> int:
        return int(
            await self._retrying(
                jetstream.kv_put, self.request, js.RESULTS_BUCKET, record.call_id, js.encode_record(record),
                revision=revision, ttl_s=self.policy.result_ttl_s,
            )
        )  # fmt: skip

    async def _retrying(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Broker calls survive a broker restart: retried while the connection comes back (CAS errors are not)."""
        delay = 0.1
        for attempt in range(STORE_RETRIES * 4):
            try:
                return await func(*args, **kwargs)
            except (BusError, TimeoutError):
                if attempt == STORE_RETRIES * 4 - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _ack(self, reply: str, what: bytes) -> None:
        if not self.conn.publish(reply, what):
            self.log.warning("async_ack_lost", reply=reply)

    # -- callbacks --------------------------------------------------------------------------------------------------

    def _callback(self, record: js.CallRecord, url: str) -> None:
        if not url:
            return
        task = asyncio.get_running_loop().create_task(self._deliver_callback(record, url))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver_callback(self, record: js.CallRecord, url: str) -> None:
        body = json.dumps(js.record_view(record), separators=(",", ":")).encode()
        outcome = "failed"
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            try:
                status = await post(url, body, record.call_id, allow_private=self.settings.callback_allow_private)
            except UnsafeUrl as exc:
                outcome = f"refused: {exc}"
                break
            except (OSError, TimeoutError, ValueError) as exc:
                outcome = f"failed: {exc!r}"
            else:
                if 200 <= status < 300:
                    outcome = "delivered"
                    break
                outcome = f"failed: status {status}"
            if attempt < CALLBACK_ATTEMPTS:
                await asyncio.sleep(CALLBACK_BACKOFF_S * 2 ** (attempt - 1))
        self.log.event("async_callback", call_id=record.call_id, outcome=outcome, attempts=attempt)
        found = await jetstream.kv_get(self.request, js.RESULTS_BUCKET, record.call_id)
        if found is not None:
            current = js.decode_record(found[0])
            current.callback = outcome
            try:
                await jetstream.kv_put(
                    self.request, js.RESULTS_BUCKET, record.call_id, js.encode_record(current), revision=found[1],
                    ttl_s=self.policy.result_ttl_s,
                )  # fmt: skip
            except jetstream.WrongSequence:
                pass

    def _report(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if level >= 30:
            self.log.warning(event, **fields)


async def post(url: str, body: bytes, call_id: str, *, allow_private: bool) -> int:
    """POST `body` as JSON to `url` (SSRF-checked, connecting to a checked address only); the response status."""
    loop = asyncio.get_running_loop()
    target = await loop.run_in_executor(None, lambda: resolve_target(url, allow_private=allow_private))
    context = ssl.create_default_context() if target.scheme == "https" else None
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    if ":" in target.host and not host_header.startswith("["):
        host_header = f"[{target.host}]" if target.port in (80, 443) else f"[{target.host}]:{target.port}"
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Call-Id: {call_id}\r\nUser-Agent: litefunctions-callback\r\n"
        "Connection: close\r\n\r\n"
    )
    async with asyncio.timeout(CALLBACK_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(
            target.addresses[0], target.port, ssl=context, server_hostname=target.host if context else None
        )
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    return int(parts[1])
