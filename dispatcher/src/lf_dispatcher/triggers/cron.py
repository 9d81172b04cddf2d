"""Cron Triggers: fired by one leader among the dispatchers (a `Lease`: Valkey's with LF_VALKEY_URL, an in-process
one under `lf dev`), each run an async call with a deterministic id.

Exactly once per run: a run's call id comes from (namespace, trigger, scheduled time), so a run fired twice — by a
leader that lost its lease mid-run and the one that took over, or again after a crash between the publish and the
state write — is one call (LF_ASYNC's duplicate window, then `already_stored`). A new leader resumes after the last
run the state bucket records (`last_scheduled`) and fires the runs missed since, as long as they are less than
`startingDeadlineSeconds` old (default 60); older ones are skipped and counted. `Forbid` skips a run while the
previous run's call is not finished; `Replace` cancels the previous call if it is still queued. A run fires while
the function has no replicas: the call waits in LF_ASYNC.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]
from lf_core.asynccalls import triggered
from lf_core.bus.errors import BusError
from lf_core.bus.jetstream import JetStreamError, Requester
from lf_core.contract.routes import EventTriggerRoute
from lf_core.contract.specs import DEFAULT_STARTING_DEADLINE_S
from lf_core.contract.subjects import trigger_state_key
from lf_core.contract.triggerstate import TriggerState, rfc3339
from lf_core.stores.interface import Lease

from lf_dispatcher.triggers.table import TriggerTable

log = logging.getLogger(__name__)

MAX_MISSED_RUNS = 100
"""At most this many missed runs are fired at once on takeover (the most recent ones), as a CronJob does."""
FAILURE_RETRY_S = 1.0
Clock = Callable[[], float]


def runs_between(schedule: str, timezone: str, after: float, until: float, *, limit: int = 10_000) -> list[float]:
    """The scheduled times t with after < t <= until (seconds since the epoch), at most the `limit` latest."""
    zone = ZoneInfo(timezone)
    it = croniter(schedule, dt.datetime.fromtimestamp(after, zone))
    runs: list[float] = []
    while True:
        t = float(it.get_next(dt.datetime).timestamp())
        if t > until:
            return runs
        runs.append(t)
        if len(runs) > limit:
            del runs[0]


def next_run(schedule: str, timezone: str, after: float) -> float:
    it = croniter(schedule, dt.datetime.fromtimestamp(after, ZoneInfo(timezone)))
    return float(it.get_next(dt.datetime).timestamp())


def starting_deadline(route: EventTriggerRoute) -> float:
    assert route.cron is not None
    return float(route.cron.starting_deadline_seconds or DEFAULT_STARTING_DEADLINE_S)


@dataclass
class _Schedule:
    state: TriggerState
    next_fire: float = 0.0
    retry_at: float = 0.0


class CronScheduler:
    """Runs every cron Trigger of `table` while `lease` is held. `clock` is the wall clock (seconds since the
    epoch): scheduled times are wall-clock times."""

    def __init__(
        self,
        table: TriggerTable,
        request: Requester,
        lease: Lease,
        *,
        lease_ttl_s: float,
        publish_timeout_s: float = 5.0,
        clock: Clock = time.time,
    ) -> None:
        self.table = table
        self.request = request
        self.lease = lease
        self.lease_ttl_s = lease_ttl_s
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self.schedules: dict[str, _Schedule] = {}
        self.leading = False
        self.fired = 0
        """Calls this process stored (each a publish LF_ASYNC did not call a duplicate)."""

    async def run(self) -> None:
        renew_every = self.lease_ttl_s / 3
        next_renew = 0.0
        try:
            while True:
                now_mono = time.monotonic()
                if now_mono >= next_renew:
                    held = await self.lease.acquire()
                    next_renew = now_mono + renew_every
                    if held and not self.leading:
                        log.info("trigger_cron_leading")
                        self.schedules.clear()  # the previous leader moved the states on: read them again
                    elif not held and self.leading:
                        log.info("trigger_cron_lease_lost")
                    self.leading = held
                if self.leading and self.lease.held:
                    await self.tick()
                await asyncio.sleep(self._sleep_s(next_renew - time.monotonic()))
        finally:
            if self.leading:
                await self.lease.release()

    def _sleep_s(self, until_renew: float) -> float:
        now = self.clock()
        soonest = min((max(s.next_fire, s.retry_at) for s in self.schedules.values()), default=now + 0.5)
        return max(0.01, min(until_renew, soonest - now, 0.5))

    async def tick(self) -> None:
        """Fire what is due of every cron Trigger (the caller holds the lease)."""
        wanted = {k: r for k, r in self.table.triggers.items() if r.kind == "cron" and r.cron is not None}
        for key in [k for k in self.schedules if k not in wanted]:
            del self.schedules[key]
        for key, route in wanted.items():
            if not self.lease.held:
                return
            try:
                await self._due(key, route)
            except Exception as exc:  # the broker did not answer (or a bug): this trigger is tried again shortly
                schedule = self.schedules.get(key)
                if schedule is not None:
                    schedule.retry_at = self.clock() + FAILURE_RETRY_S
                expected = isinstance(exc, BusError | TimeoutError | JetStreamError | OSError)
                log.log(
                    logging.WARNING if expected else logging.ERROR,
                    "trigger_cron_failed",
                    exc_info=not expected,
                    extra={"fields": {"trigger": key, "error": repr(exc)}},
                )

    async def _schedule_of(self, key: str, route: EventTriggerRoute) -> _Schedule:
        schedule = self.schedules.get(key)
        if schedule is None:
            state_key = trigger_state_key(route.namespace, route.name)
            state = await triggered.read_state(self.request, state_key)
            if state is None:
                state = TriggerState(namespace=route.namespace, name=route.name, kind="cron", function=route.function)
            schedule = self.schedules[key] = _Schedule(state)
        return schedule

    async def _due(self, key: str, route: EventTriggerRoute) -> None:
        assert route.cron is not None
        now = self.clock()
        schedule = await self._schedule_of(key, route)
        if now < schedule.retry_at or (schedule.next_fire and now < schedule.next_fire and _same(schedule, route)):
            return
        state = schedule.state
        cron = route.cron
        deadline = starting_deadline(route)
        if not state.last_scheduled or state.revision != route.revision:  # new, or a new schedule: from now on
            state.last_scheduled = now
            state.function, state.revision = route.function, route.revision
        earliest = now - deadline
        start = max(state.last_scheduled, earliest)
        due = runs_between(cron.schedule, cron.timezone, start, now, limit=MAX_MISSED_RUNS)
        if state.last_scheduled < earliest:
            missed = runs_between(cron.schedule, cron.timezone, state.last_scheduled, earliest, limit=1)
            if missed:
                state.skipped += 1
                _error(state, f"runs missed past the starting deadline ({deadline:g} s), last at {rfc3339(missed[-1])}")
        state.function, state.revision = route.function, route.revision
        for scheduled in due:
            if not self.lease.held:
                return
            await self.fire(route, state, scheduled)
        if not due:
            state.last_scheduled = max(state.last_scheduled, start)
        state.next_fire = schedule.next_fire = next_run(cron.schedule, cron.timezone, now)
        schedule.retry_at = 0.0
        await triggered.write_state(self.request, trigger_state_key(route.namespace, route.name), state)

    async def fire(self, route: EventTriggerRoute, state: TriggerState, scheduled: float) -> None:
        """One run: skipped (Forbid), or its call stored (after cancelling a queued previous one under Replace).
        Raises a bus error when LF_ASYNC did not answer: the run stays due and is tried again."""
        assert route.cron is not None
        cron = route.cron
        call_id = triggered.cron_call_id(route.namespace, route.name, scheduled)
        function = self.table.function(route.namespace, route.function)
        if function is None:
            _error(state, f"run at {rfc3339(scheduled)} not fired: function {route.function!r} not found")
            state.last_scheduled = scheduled
            state.skipped += 1
            return
        previous = state.last_call_id
        if previous and previous != call_id and cron.concurrency_policy != "Allow":
            status = await triggered.run_status(self.request, previous)
            if not triggered.finished(status):
                if cron.concurrency_policy == "Forbid":
                    _error(
                        state,
                        f"run at {rfc3339(scheduled)} skipped: the previous run {previous} is {status} "
                        "(concurrencyPolicy Forbid)",
                    )
                    state.last_scheduled = scheduled
                    state.skipped += 1
                    await self._save(route, state)
                    return
                if status == "queued":
                    await triggered.cancel_queued(self.request, previous, route.namespace, route.function)
        if not await triggered.already_stored(self.request, call_id):
            headers = [
                *((k.lower(), v) for k, v in cron.headers.items()),
                (triggered.TRIGGER_HEADER, route.name),
                (triggered.SCHEDULED_HEADER, rfc3339(scheduled)),
            ]
            ack = await triggered.submit(
                self.request,
                namespace=route.namespace,
                function=route.function,
                call_id=call_id,
                body=cron.body.encode(),
                headers=headers,
                timeout_ms=function.timeout_ms,
                publish_timeout_s=self.publish_timeout_s,
            )
            if not ack.get("duplicate"):
                self.fired += 1
                state.fired += 1
                fields = {
                    "namespace": route.namespace,
                    "trigger": route.name,
                    "scheduled": scheduled,
                    "call_id": call_id,
                }
                log.info("trigger_cron_fired", extra={"fields": fields})
        state.last_fire = self.clock()
        state.last_call_id = call_id
        state.last_scheduled = scheduled
        await self._save(route, state)

    async def _save(self, route: EventTriggerRoute, state: TriggerState) -> None:
        await triggered.write_state(self.request, trigger_state_key(route.namespace, route.name), state)


def _same(schedule: _Schedule, route: EventTriggerRoute) -> bool:
    return schedule.state.revision == route.revision


def _error(state: TriggerState, message: str) -> None:
    log.warning(
        "trigger_cron_error", extra={"fields": {"namespace": state.namespace, "trigger": state.name, "error": message}}
    )
    state.last_error = message
    state.last_error_at = time.time()
