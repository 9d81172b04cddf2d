"""Cron Triggers on real nats-server and redis-server: fired by one leader among two trigger services sharing a
Valkey lease, exactly once per run (a contiguous run of scheduled seconds, each one call in LF_ASYNC), including
across kill -9 of the leader; Forbid and Replace; a run fires while the function has no replica (the call is
queued, nothing runs it here)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from typing import Any

import pytest
from lf_core.asynccalls import streams as js
from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.contract.routes import EventTriggerRoute
from lf_core.contract.specs import CronTrigger
from lf_core.contract.triggerstate import TriggerState
from trigger_harness import Bus, header

from tests.harness.redisserver import RedisServer

pytestmark = pytest.mark.integration

EVERY_SECOND = "* * * * * *"  # croniter's 6-field form: seconds last


def cron_route(namespace: str, name: str, function: str, **cron: object) -> EventTriggerRoute:
    spec = CronTrigger(schedule=EVERY_SECOND, **cron)  # type: ignore[arg-type]
    return EventTriggerRoute(kind="cron", namespace=namespace, name=name, function=function, cron=spec, revision="r1")


async def wait_calls(bus: Bus, namespace: str, function: str, at_least: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    calls: dict[str, int] = {}
    while time.monotonic() < deadline:
        calls = await bus.calls(namespace, function)
        if len(calls) >= at_least:
            return calls
        await asyncio.sleep(0.1)
    raise AssertionError(f"{namespace}/{function}: {len(calls)} calls after {timeout} s, wanted {at_least}")


async def scheduled_seconds(bus: Bus, calls: dict[str, int]) -> list[int]:
    seconds = []
    for subject in calls:
        envelope = await bus.envelope(subject)
        stamp = header(envelope, triggered.SCHEDULED_HEADER)
        seconds.append(int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()))
    return sorted(seconds)


async def test_one_leader_fires_each_run_exactly_once_across_a_leader_kill(
    bus: Bus, services: Any, redis_server: RedisServer
) -> None:
    await bus.put_function("cron", "report")
    route = cron_route("cron", "tick", "report", starting_deadline_seconds=30, body="hi", headers={"X-Kind": "t"})
    await bus.put_trigger(route)
    env = {"LF_VALKEY_URL": redis_server.url, "LF_TRIGGER_LEASE_TTL": "2s"}
    first, second = services.start(**env), services.start(**env)
    await wait_calls(bus, "cron", "report", 3, timeout=20)
    leaders = [s for s in (first, second) if s.events("trigger_cron_leading")]
    assert len(leaders) == 1, "exactly one service leads"
    leader, standby = leaders[0], (second if leaders[0] is first else first)
    os.kill(leader.pid, signal.SIGKILL)
    leader.process.wait()
    killed_at = time.time()
    standby.wait_for("trigger_cron_leading", timeout=15)
    # runs after the kill are fired by the new leader, the missed ones late (within startingDeadlineSeconds)
    deadline = time.monotonic() + 20
    while True:
        seconds = await scheduled_seconds(bus, await bus.calls("cron", "report"))
        if seconds[-1] >= killed_at + 3:
            break
        assert time.monotonic() < deadline, f"no run after the kill: {seconds}"
        await asyncio.sleep(0.2)
    standby.stop()
    calls = await bus.calls("cron", "report")
    assert all(count == 1 for count in calls.values()), "a call stored twice"
    seconds = await scheduled_seconds(bus, calls)
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), f"runs missing or doubled: {seconds}"
    for subject in calls:  # each run's call id is the deterministic one of its scheduled time
        envelope = await bus.envelope(subject)
        scheduled = dt.datetime.fromisoformat(header(envelope, triggered.SCHEDULED_HEADER).replace("Z", "+00:00"))
        assert envelope.call_id == triggered.cron_call_id("cron", "tick", scheduled.timestamp())
        assert subject.endswith(envelope.call_id)
        assert envelope.body == b"hi" and header(envelope, "x-kind") == "t"
        assert header(envelope, triggered.TRIGGER_HEADER) == "tick" and envelope.method == "POST"
    state = await bus.state("cron", "tick")
    assert state is not None and state.last_call_id in {s.rsplit(".", 1)[1] for s in calls}
    assert state.next_fire > state.last_scheduled
    await bus.delete_trigger(route)


async def _finish(bus: Bus, call_id: str, namespace: str, function: str) -> None:
    """What a dispatcher does when a call succeeds: its record, and its message out of LF_ASYNC."""
    record = js.CallRecord(call_id=call_id, namespace=namespace, function=function, status="succeeded")
    await jetstream.kv_put(bus.request, js.RESULTS_BUCKET, call_id, js.encode_record(record), revision=None)
    await js.remove_queued(bus.request, call_id)


async def test_forbid_skips_a_run_while_the_previous_one_is_not_finished(bus: Bus, services: Any) -> None:
    await bus.put_function("forbid", "slow")
    route = cron_route("forbid", "tick", "slow", concurrency_policy="Forbid")
    await bus.put_trigger(route)
    services.start()
    calls = await wait_calls(bus, "forbid", "slow", 1, timeout=20)
    first_id = next(iter(calls)).rsplit(".", 1)[1]

    async def skipped(n: int) -> TriggerState:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = await bus.state("forbid", "tick")
            if state is not None and state.skipped >= n:
                return state
            await asyncio.sleep(0.1)
        raise AssertionError(f"fewer than {n} runs skipped: {state}")

    state = await skipped(3)  # three scheduled seconds came and went: the first call is still queued
    assert "concurrencyPolicy Forbid" in state.last_error and first_id in state.last_error
    assert list(await bus.calls("forbid", "slow")) == [next(iter(calls))], "a run fired over a queued one"
    await _finish(bus, first_id, "forbid", "slow")
    calls = await wait_calls(bus, "forbid", "slow", 1, timeout=10)  # the next run fires once the first finished
    assert first_id not in next(iter(calls))
    await bus.delete_trigger(route)


async def test_replace_cancels_the_queued_previous_run(bus: Bus, services: Any) -> None:
    await bus.put_function("replace", "slow")
    route = cron_route("replace", "tick", "slow", concurrency_policy="Replace")
    await bus.put_trigger(route)
    services.start()
    first = next(iter(await wait_calls(bus, "replace", "slow", 1, timeout=20))).rsplit(".", 1)[1]
    deadline = time.monotonic() + 10
    while (await triggered.run_status(bus.request, first)) != "cancelled":
        assert time.monotonic() < deadline, "the first run was not cancelled"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    assert len(await bus.calls("replace", "slow")) == 1, "only the latest run waits"
    await bus.delete_trigger(route)


async def test_a_run_for_a_missing_function_is_not_stored_and_says_why(bus: Bus, services: Any) -> None:
    route = cron_route("ghost", "tick", "nobody")
    await bus.put_trigger(route)
    services.start()
    deadline = time.monotonic() + 10
    while True:
        state = await bus.state("ghost", "tick")
        if state is not None and "function 'nobody' not found" in state.last_error:
            break
        assert time.monotonic() < deadline, f"no error recorded: {state}"
        await asyncio.sleep(0.1)
    assert await bus.calls("ghost", "nobody") == {}
    await bus.delete_trigger(route)
