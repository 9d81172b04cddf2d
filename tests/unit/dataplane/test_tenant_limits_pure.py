"""The pieces of issue 14's items 3, 4 and 11 without sockets: the worker's fair gate, the body budget and its
timeout, the async backlog count, the settings. The same behaviour against real servers:
tests/integration/limits/test_tenant_limits.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from lf_dataplane.calls.overload import FairGate
from lf_dataplane.http.backlogs import Backlogs
from lf_dataplane.http.bodies import BodyBudget
from lf_dataplane.http.mapping import HttpError
from lf_dataplane.settings import Settings, SettingsError

# -- the fair gate ------------------------------------------------------------------------------------------------


def test_a_namespace_takes_at_most_its_share_and_leaves_the_rest_to_others() -> None:
    gate = FairGate(4, 10, namespace_limit=2)
    assert gate.try_enter("a") and gate.try_enter("a")
    assert not gate.try_enter("a")  # a's share is taken, the worker is not full
    assert gate.try_enter("b") and gate.try_enter("b")
    assert not gate.try_enter("c")  # now the worker is
    assert (gate.inflight, gate.by_namespace) == (4, {"a": 2, "b": 2})
    for ns in ("a", "a", "b", "b"):
        gate.leave(ns)
    assert (gate.inflight, gate.by_namespace) == (0, {"a": 0, "b": 0})


async def test_freed_slots_go_round_robin_across_namespaces_not_first_come() -> None:
    gate = FairGate(1, 100)
    assert gate.try_enter("a")
    order: list[str] = []

    async def wait(ns: str) -> None:
        assert await gate.enter(ns, 5)
        order.append(ns)

    waiters = [asyncio.ensure_future(wait(ns)) for ns in ("a", "a", "a", "b", "c")]
    await asyncio.sleep(0)
    assert gate.waiting == 5
    for _ in range(5):
        gate.leave(order[-1] if order else "a")
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == ["a", "b", "c", "a", "a"]  # a's three waiters came first, yet b and c were served second and third
    gate.leave("a")
    assert (gate.inflight, gate.waiting, gate.queues, set(gate.by_namespace.values())) == (0, 0, {}, {0})


async def test_a_waiter_over_its_share_stays_queued_while_others_pass() -> None:
    gate = FairGate(3, 10, namespace_limit=1)
    assert gate.try_enter("a")
    waiting = asyncio.ensure_future(gate.enter("a", 5))
    await asyncio.sleep(0)
    assert gate.try_enter("b")  # a waits for its own share, b passes at once
    gate.leave("b")
    assert not waiting.done()
    gate.leave("a")
    assert await waiting and (gate.held("a"), gate.held("b")) == (1, 0)
    assert not await gate.enter("a", 0.01)  # an expired wait is a refusal, counted
    assert gate.refused == 1 and gate.waiting == 0


async def test_a_full_queue_pushes_out_the_biggest_namespaces_newest_waiter() -> None:
    gate = FairGate(1, 3)
    assert gate.try_enter("x")
    flood = [asyncio.ensure_future(gate.enter("a", 5)) for _ in range(3)]
    await asyncio.sleep(0)
    assert gate.waiting == 3
    newcomer = asyncio.ensure_future(gate.enter("b", 5))
    await asyncio.sleep(0)
    assert await flood[2] is False  # refused to make room for b
    assert gate.waiting == 3 and len(gate.queues["b"]) == 1
    assert not await gate.enter("a", 5)  # a may not push out a's own
    gate.leave("x")
    await asyncio.sleep(0)
    assert await flood[0]  # a's oldest first: a's queue came first in the round
    gate.leave("a")
    assert await newcomer
    assert gate.refused == 2


async def test_no_slot_is_lost_to_cancelled_or_expired_waiters() -> None:
    gate = FairGate(2, 10, namespace_limit=2)
    assert gate.try_enter("a") and gate.try_enter("b")
    cancelled = asyncio.ensure_future(gate.enter("a", 5))
    expiring = asyncio.ensure_future(gate.enter("b", 0.01))
    live = asyncio.ensure_future(gate.enter("c", 5))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert not await expiring
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.leave("a")
    assert await live
    gate.leave("b")
    gate.leave("c")
    assert (gate.inflight, gate.waiting, gate.queues, set(gate.by_namespace.values())) == (0, 0, {}, {0})


def test_resize_lets_waiters_in() -> None:
    async def run() -> None:
        gate = FairGate(1, 10)
        assert gate.try_enter("a")
        waiter = asyncio.ensure_future(gate.enter("b", 5))
        await asyncio.sleep(0)
        gate.resize(2, 10)
        assert await waiter and gate.inflight == 2

    asyncio.run(run())


# -- the body budget ----------------------------------------------------------------------------------------------


class Scope:
    http_version = "1.1"


class SlowProto:
    """A body that arrives in `chunks`, then (if `stall`) never finishes."""

    def __init__(self, chunks: list[bytes], *, stall: bool = False) -> None:
        self.chunks = chunks
        self.stall = stall

    def __call__(self) -> asyncio.Future[bytes]:  # a future, as granian's proto() returns
        reading: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if not self.stall:
            reading.set_result(b"".join(self.chunks))
        return reading

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.stall:
            await asyncio.Event().wait()


async def test_a_declared_body_is_reserved_before_it_is_read_and_given_back() -> None:
    budget = BodyBudget(100, 5)
    body = await budget.read(Scope(), SlowProto([b"x" * 60]), {"content-length": "60"}, 1000)
    assert budget.held == 60
    with pytest.raises(HttpError) as refused:
        await budget.read(Scope(), SlowProto([b"y" * 50]), {"content-length": "50"}, 1000)
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "body_budget", 1)
    assert budget.held == 60 and budget.refused == 1
    budget.release(len(body))
    assert await budget.read(Scope(), SlowProto([b"y" * 50]), {"content-length": "50"}, 1000) == b"y" * 50
    assert await budget.read(Scope(), SlowProto([]), {}, 1000) == b""  # no body: nothing counted
    assert budget.held == 50


async def test_one_body_alone_may_exceed_the_budget() -> None:
    budget = BodyBudget(10, 5)
    assert len(await budget.read(Scope(), SlowProto([b"z" * 20]), {"content-length": "20"}, 1000)) == 20


async def test_a_stalled_body_times_out_with_408_and_holds_nothing() -> None:
    budget = BodyBudget(1000, 0.05)
    with pytest.raises(HttpError) as declared:
        await budget.read(Scope(), SlowProto([], stall=True), {"content-length": "10"}, 1000)
    with pytest.raises(HttpError) as chunked:
        await budget.read(Scope(), SlowProto([b"abc"], stall=True), {"transfer-encoding": "chunked"}, 1000)
    assert (declared.value.status, declared.value.code) == (408, "body_timeout")
    assert chunked.value.status == 408
    assert budget.held == 0 and budget.timed_out == 2
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the watchdog's cancellations were taken back
    await asyncio.sleep(0.05)
    assert budget._watchdog is None  # idle: no task left behind


async def test_a_streamed_body_is_counted_as_it_arrives_and_released_on_refusal_or_cancel() -> None:
    budget = BodyBudget(100, 5)
    budget.reserve(90)
    with pytest.raises(HttpError) as over:
        await budget.read(Scope(), SlowProto([b"a" * 5, b"b" * 20]), {"transfer-encoding": "chunked"}, 1000)
    assert over.value.status == 503 and budget.held == 90
    with pytest.raises(HttpError) as too_large:
        await budget.read(Scope(), SlowProto([b"a" * 5, b"b" * 5]), {"transfer-encoding": "chunked"}, 8)
    assert too_large.value.status == 413 and budget.held == 90
    budget.release(90)
    reading = asyncio.ensure_future(budget.read(Scope(), SlowProto([], stall=True), {"content-length": "40"}, 1000))
    await asyncio.sleep(0)
    assert budget.held == 40
    reading.cancel()  # the client went away, the task was cancelled: nothing stays reserved
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert budget.held == 0


# -- the async backlog --------------------------------------------------------------------------------------------


async def test_the_backlog_is_the_brokers_count_asked_at_most_once_per_interval() -> None:
    asked: list[str] = []
    counts = {"full": 2, "free": 0}
    now = [0.0]

    async def count(namespace: str) -> int:
        asked.append(namespace)
        await asyncio.sleep(0)
        return counts[namespace]

    backlogs = Backlogs(count, 3, refresh_s=0.25, clock=lambda: now[0])
    await asyncio.gather(backlogs.check("full"), backlogs.check("free"), backlogs.check("free"))
    assert sorted(asked) == ["free", "full"]  # concurrent checks share one question
    with pytest.raises(HttpError) as refused:
        await backlogs.check("full")  # 2 in the broker + 1 let through here
    assert (refused.value.status, refused.value.code) == (429, "async_backlog_full")
    assert "namespace full" in refused.value.message and "3" in refused.value.message
    counts["full"] = 1  # calls finished
    now[0] = 0.3
    await backlogs.check("full")
    assert asked.count("full") == 2


async def test_no_cap_asks_nothing_and_a_broker_error_lets_the_call_through() -> None:
    async def failing(namespace: str) -> int:
        raise TimeoutError

    await Backlogs(failing, 0).check("x")
    await Backlogs(failing, 5).check("x")


# -- settings -----------------------------------------------------------------------------------------------------


def test_settings_of_items_3_4_and_11() -> None:
    defaults = Settings.from_env({})
    assert (defaults.body_timeout_s, defaults.max_inflight_body_bytes) == (10.0, 64 << 20)
    assert (defaults.namespace_inflight_cap, defaults.namespace_async_backlog) == (512, 10_000)
    settings = Settings.from_env(
        {"LF_BODY_TIMEOUT": "2s", "LF_MAX_INFLIGHT_BODY_BYTES": "8Mi", "LF_MAX_INFLIGHT": "10",
         "LF_NAMESPACE_MAX_INFLIGHT": "30", "LF_NAMESPACE_ASYNC_BACKLOG": "0"}
    )  # fmt: skip
    assert (settings.body_timeout_s, settings.max_inflight_body_bytes) == (2.0, 8 << 20)
    assert (settings.namespace_inflight_cap, settings.namespace_async_backlog) == (10, 0)  # never above the worker's
    with pytest.raises(SettingsError, match="LF_BODY_TIMEOUT"):
        Settings.from_env({"LF_BODY_TIMEOUT": "soon"})
