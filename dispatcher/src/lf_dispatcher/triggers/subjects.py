"""NATS Triggers: each message on a Trigger's subject becomes an async call of its function.

Two forms (docs: lf_core.contract.specs.NatsTrigger):

- core NATS (no `stream`): one subscription per dispatcher replica in the queue group `lf-trigger.{ns}.{name}`, so
  each message is taken by one replica; the call gets a fresh id. At most once: a message published while no
  dispatcher listens, or held by one that dies before LF_ASYNC's PubAck, is gone.
- JetStream (`stream`): the durable pull consumer `lftr_{ns}_{name}` on the namespace's stream, filtered by the
  subject, shared by the replicas. A message's call id comes from (stream, sequence) and is published with it as
  `Nats-Msg-Id`; the message is acknowledged only after LF_ASYNC's PubAck. At least once: a redelivery (a lost ack,
  a replica killed) is the same call id, dropped by LF_ASYNC's duplicate window or found already stored.

Either way the subject and stream are checked against the namespace's (`lf_core.contract.confinement`) before
anything is subscribed; the function's retry and dead-letter policy applies to the calls (they are async calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.bus.errors import BusError
from lf_core.contract.routes import EventTriggerRoute
from lf_core.contract.subjects import TRIGGERS_BUCKET, trigger_consumer, trigger_queue_group, trigger_state_key
from lf_core.contract.triggerstate import TriggerState, decode_state, encode_state

from lf_dispatcher.triggers.table import TriggerTable

log = logging.getLogger(__name__)

FETCH_BATCH = 128
ACK_WAIT_S = 30.0
MAX_ACK_PENDING = 1024
CORE_CONCURRENCY = 256
"""Core-NATS messages one replica forwards at once (per Trigger); more wait in the subscription's buffer."""
RETRY_S = 2.0
FUNCTION_MISSING_DELAY_S = 5.0
STATE_FLUSH_S = 1.0


@dataclass
class _Stats:
    """What happened to one Trigger since the last state write."""

    route: EventTriggerRoute
    fired: int = 0
    last_fire: float = 0.0
    last_call_id: str = ""
    last_error: str = ""
    last_error_at: float = 0.0

    def error(self, message: str) -> None:
        if message != self.last_error:
            fields = {"namespace": self.route.namespace, "trigger": self.route.name, "error": message}
            log.warning("trigger_nats_error", extra={"fields": fields})
        self.last_error = message
        self.last_error_at = time.time()

    @property
    def pending(self) -> bool:
        return bool(self.fired or self.last_error_at)


@dataclass
class _Running:
    route: EventTriggerRoute
    stats: _Stats
    subscription: Any = None
    task: asyncio.Task[None] | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)


class NatsTriggers:
    def __init__(
        self,
        nc: Any,
        table: TriggerTable,
        request: jetstream.Requester,
        *,
        publish_timeout_s: float = 5.0,
        ack_wait_s: float = ACK_WAIT_S,
    ) -> None:
        self.ack_wait_s = ack_wait_s
        self.nc = nc
        self.table = table
        self.request = request
        self.publish_timeout_s = publish_timeout_s
        self.running: dict[str, _Running] = {}
        self.reported: dict[str, str] = {}
        self.forwarded = 0

    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_forever())
        try:
            while True:
                await self.table.changed.wait()
                self.table.changed.clear()
                try:
                    await self.reconcile()
                except Exception as exc:  # not connected right now, say: again in a moment
                    log.warning("trigger_nats_reconcile_failed", extra={"fields": {"error": repr(exc)}})
                    await asyncio.sleep(RETRY_S)
                    self.table.changed.set()
        finally:
            flusher.cancel()
            for key in list(self.running):
                await self._stop(key, remove=False)

    async def reconcile(self) -> None:
        wanted = {k: r for k, r in self.table.triggers.items() if r.kind == "nats" and r.nats is not None}
        for key, running in list(self.running.items()):
            route = wanted.get(key)
            if route is None or route.revision != running.route.revision:
                await self._stop(key, remove=True, replaced=route)
        for key, route in wanted.items():
            if key not in self.running:
                await self._start(key, route)
        await self._report_refused()

    async def _report_refused(self) -> None:
        """Entries the table refused (a subject or stream outside the namespace): said in their state's lastError,
        where `lf triggers list` and the operator show it."""
        for key, message in list(self.table.refused.items()):
            if self.reported.get(key) == message:
                continue
            _, namespace, name = key.split(".", 2)
            state = TriggerState(
                namespace=namespace, name=name, kind="nats", last_error=f"refused: {message}", last_error_at=time.time()
            )
            try:
                await triggered.write_state(self.request, trigger_state_key(namespace, name), state)
            except Exception as exc:
                log.debug("trigger_state_not_written", extra={"fields": {"error": repr(exc)}})
                continue
            self.reported[key] = message

    async def _start(self, key: str, route: EventTriggerRoute) -> None:
        assert route.nats is not None
        running = _Running(route, _Stats(route))
        if self.reported.pop(key, None) is not None:  # refused before, fixed now: the refusal is history
            state = TriggerState(namespace=route.namespace, name=route.name, kind="nats", function=route.function)
            with contextlib.suppress(Exception):
                await triggered.write_state(self.request, trigger_state_key(route.namespace, route.name), state)
        self.running[key] = running
        if route.nats.stream:
            running.task = asyncio.create_task(self._pull(running))
            return
        queue = trigger_queue_group(route.namespace, route.name)
        gate = asyncio.Semaphore(CORE_CONCURRENCY)

        async def on_message(msg: Any) -> None:
            await gate.acquire()
            task = asyncio.create_task(self._forward_core(running, msg))
            running.inflight.add(task)
            task.add_done_callback(running.inflight.discard)
            task.add_done_callback(lambda _t: gate.release())

        try:
            running.subscription = await self.nc.subscribe(route.nats.subject, queue=queue, cb=on_message)
        except BaseException:
            del self.running[key]
            raise
        log.info(
            "trigger_nats_subscribed", extra={"fields": {"trigger": key, "subject": route.nats.subject, "queue": queue}}
        )

    async def _stop(self, key: str, *, remove: bool, replaced: EventTriggerRoute | None = None) -> None:
        running = self.running.pop(key)
        if running.subscription is not None:
            with contextlib.suppress(Exception):
                await running.subscription.unsubscribe()
        if running.task is not None:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running.task
        if running.inflight:
            await asyncio.gather(*running.inflight, return_exceptions=True)
        await self._flush(running.stats)
        old = running.route.nats
        assert old is not None
        gone = replaced is None or replaced.nats is None or replaced.nats.stream != old.stream
        if remove and old.stream and gone:  # the Trigger went (or left this stream): its consumer goes with it
            name = trigger_consumer(running.route.namespace, running.route.name)
            with contextlib.suppress(Exception):
                await jetstream.api(self.request, f"$JS.API.CONSUMER.DELETE.{old.stream}.{name}")

    # -- core NATS ---------------------------------------------------------------------------------------------------

    async def _forward_core(self, running: _Running, msg: Any) -> None:
        try:
            await self._forward_core_once(running, msg)
        except Exception as exc:  # a bug: say so, lose only this message (core NATS is at most once anyway)
            log.error("trigger_nats_failed", exc_info=True, extra={"fields": {"error": repr(exc)}})

    async def _forward_core_once(self, running: _Running, msg: Any) -> None:
        route = running.route
        function = self.table.function(route.namespace, route.function)
        if function is None:
            running.stats.error(f"message on {msg.subject} dropped: function {route.function!r} not found")
            return
        call_id = triggered.fresh_call_id("nats")
        try:
            await self._submit(route, msg, call_id, function.timeout_ms)
        except (BusError, TimeoutError, jetstream.JetStreamError, OSError) as exc:
            running.stats.error(f"message on {msg.subject} lost (core NATS is at most once): {exc!r}")
            return
        self._count(running.stats, call_id)

    # -- JetStream ---------------------------------------------------------------------------------------------------

    async def _pull(self, running: _Running) -> None:
        route = running.route
        assert route.nats is not None
        stream = route.nats.stream
        name = trigger_consumer(route.namespace, route.name)
        js = self.nc.jetstream()
        while True:
            try:
                await self._ensure_consumer(stream, name, route.nats.subject)
                psub = await js.pull_subscribe_bind(durable=name, stream=stream)
                fields = {"namespace": route.namespace, "trigger": route.name, "consumer": name, "stream": stream}
                log.info("trigger_nats_pulling", extra={"fields": fields})
                try:
                    while True:
                        try:
                            msgs = await psub.fetch(FETCH_BATCH, timeout=1.0)
                        except TimeoutError:
                            continue
                        await asyncio.gather(*(self._forward_stream(running, stream, m) for m in msgs))
                finally:
                    with contextlib.suppress(Exception):
                        await psub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no such stream yet, the broker went away...: try again
                running.stats.error(f"stream {stream!r}: {exc}")
                await asyncio.sleep(RETRY_S)

    async def _ensure_consumer(self, stream: str, name: str, subject: str) -> None:
        config = {
            "durable_name": name,
            "filter_subject": subject,
            "ack_policy": "explicit",
            "ack_wait": jetstream.nanoseconds(self.ack_wait_s),
            "deliver_policy": "new",
            "max_deliver": -1,
            "max_ack_pending": MAX_ACK_PENDING,
            "replay_policy": "instant",
        }
        api = f"$JS.API.CONSUMER.CREATE.{stream}.{name}"
        try:
            await jetstream.api(self.request, api, {"stream_name": stream, "config": config})
        except jetstream.JetStreamError as exc:
            if exc.err_code == jetstream.ERR_STREAM_NOT_FOUND:
                raise
            await jetstream.api(self.request, api, {"stream_name": stream, "config": config, "action": "update"})

    async def _forward_stream(self, running: _Running, stream: str, msg: Any) -> None:
        route = running.route
        meta = msg.metadata
        call_id = triggered.stream_call_id(route.namespace, route.name, stream, meta.sequence.stream)
        function = self.table.function(route.namespace, route.function)
        try:
            if function is None:
                running.stats.error(f"function {route.function!r} not found; messages wait in {stream!r}")
                await msg.nak(delay=FUNCTION_MISSING_DELAY_S)
                return
            if meta.num_delivered > 1 and await triggered.already_stored(self.request, call_id):
                await msg.ack()
                return
            await self._submit(route, msg, call_id, function.timeout_ms)
        except (BusError, TimeoutError, jetstream.JetStreamError, OSError) as exc:
            running.stats.error(f"message {stream}#{meta.sequence.stream} not stored yet (redelivered): {exc!r}")
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_S)
            return
        await msg.ack()  # only now: LF_ASYNC has stored the call
        self._count(running.stats, call_id)

    # -- both --------------------------------------------------------------------------------------------------------

    async def _submit(self, route: EventTriggerRoute, msg: Any, call_id: str, timeout_ms: int) -> dict[str, Any]:
        headers = [
            *triggered.mapped_headers(msg.headers),
            (triggered.TRIGGER_HEADER, route.name),
            (triggered.SUBJECT_HEADER, msg.subject),
        ]
        return await triggered.submit(
            self.request,
            namespace=route.namespace,
            function=route.function,
            call_id=call_id,
            body=bytes(msg.data),
            headers=headers,
            timeout_ms=timeout_ms,
            publish_timeout_s=self.publish_timeout_s,
        )

    def _count(self, stats: _Stats, call_id: str) -> None:
        self.forwarded += 1
        stats.fired += 1
        stats.last_fire = time.time()
        stats.last_call_id = call_id

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(STATE_FLUSH_S)
            for running in list(self.running.values()):
                try:
                    await self._flush(running.stats)
                except Exception as exc:
                    log.debug("trigger_state_not_written", extra={"fields": {"error": repr(exc)}})

    async def _flush(self, stats: _Stats) -> None:
        """Merge what this replica saw into the Trigger's state (compare-and-set: the replicas add up)."""
        if not stats.pending:
            return
        route = stats.route
        key = trigger_state_key(route.namespace, route.name)
        fired, error_at = stats.fired, stats.last_error_at
        for _ in range(5):
            found = await jetstream.kv_get(self.request, TRIGGERS_BUCKET, key)
            state = TriggerState(namespace=route.namespace, name=route.name, kind="nats", function=route.function)
            revision = 0
            if found is not None:
                with contextlib.suppress(ValueError):
                    state = decode_state(found[0])
                revision = found[1]
            state.function, state.revision = route.function, route.revision
            state.fired += fired
            if stats.last_fire >= state.last_fire:
                state.last_fire, state.last_call_id = stats.last_fire, stats.last_call_id or state.last_call_id
            if error_at:
                state.last_error, state.last_error_at = stats.last_error, error_at
            try:
                await jetstream.kv_put(self.request, TRIGGERS_BUCKET, key, encode_state(state), revision=revision)
            except jetstream.WrongSequence:
                continue
            stats.fired -= fired
            if stats.last_error_at == error_at:
                stats.last_error_at = 0.0
            return
