"""NATS Triggers on a real nats-server: a JetStream Trigger turns 1,000 messages into 1,000 calls, each exactly once,
across kill -9 of one of two trigger services (its held messages are redelivered to the other and their calls,
with the same deterministic id, are not stored twice); a core-NATS Trigger is one queue group over the services;
the message's headers are mapped; and the confinement attack: Triggers on `lf.invoke.>` and on another
namespace's events, written straight into LF_ROUTES, are refused and receive nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.contract.routes import EventTriggerRoute
from lf_core.contract.specs import NatsTrigger
from lf_core.contract.subjects import trigger_consumer
from trigger_harness import Bus, header

pytestmark = pytest.mark.integration


def nats_route(namespace: str, name: str, function: str, subject: str, stream: str = "") -> EventTriggerRoute:
    return EventTriggerRoute(
        kind="nats", namespace=namespace, name=name, function=function,
        nats=NatsTrigger(subject=subject, stream=stream), revision="r1",
    )  # fmt: skip


async def wait_count(bus: Bus, namespace: str, function: str, count: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    calls: dict[str, int] = {}
    while time.monotonic() < deadline:
        calls = await bus.calls(namespace, function)
        if len(calls) >= count:
            return calls
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(calls)} calls of {namespace}/{function} after {timeout} s, wanted {count}")


async def wait_consumer(bus: Bus, stream: str, name: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            await jetstream.api(bus.request, f"$JS.API.CONSUMER.INFO.{stream}.{name}")
            return
        except jetstream.JetStreamError:
            assert time.monotonic() < deadline, f"consumer {name} on {stream} never created"
            await asyncio.sleep(0.1)


async def test_a_jetstream_trigger_stores_1000_messages_exactly_once_across_a_kill(bus: Bus, services: Any) -> None:
    stream = "EV_shop_orders"
    await jetstream.ensure_stream(
        bus.request, {"name": stream, "subjects": ["ev.shop.orders.>"], "storage": "file", "retention": "limits"}
    )
    await bus.put_function("shop", "orders")
    await bus.put_trigger(nats_route("shop", "orders-in", "orders", "ev.shop.orders.>", stream))
    env = {"LF_TRIGGER_ACK_WAIT": "2s"}
    first, second = services.start(**env), services.start(**env)
    await wait_consumer(bus, stream, trigger_consumer("shop", "orders-in"))
    jsc = bus.nc.jetstream()
    for i in range(1000):
        await jsc.publish(f"ev.shop.orders.n{i % 7}", f"order {i}".encode(), headers={"X-Order": str(i)})
        if i == 300:
            os.kill(first.pid, signal.SIGKILL)  # mid-stream: what it held unacked is redelivered to `second`
            first.process.wait()
    calls = await wait_count(bus, "shop", "orders", 1000, timeout=60)
    await asyncio.sleep(2.5)  # one more ack wait: a late redelivery would show as a 1,001st call or a count of 2
    calls = await bus.calls("shop", "orders")
    assert len(calls) == 1000 and set(calls.values()) == {1}
    bodies = set()
    for subject in calls:
        envelope = await bus.envelope(subject)
        bodies.add(envelope.body)
        assert header(envelope, "x-order") == envelope.body.decode().split()[1]
        assert header(envelope, triggered.SUBJECT_HEADER).startswith("ev.shop.orders.n")
        assert header(envelope, triggered.TRIGGER_HEADER) == "orders-in"
        assert not any(k.startswith("nats-") for k, _ in envelope.headers)
    assert bodies == {f"order {i}".encode() for i in range(1000)}
    info = await jetstream.api(bus.request, f"$JS.API.CONSUMER.INFO.{stream}.{trigger_consumer('shop', 'orders-in')}")
    assert info["num_ack_pending"] == 0 and info["num_pending"] == 0
    second.stop()


async def test_a_core_nats_trigger_is_one_queue_group_over_the_services(bus: Bus, services: Any) -> None:
    await bus.put_function("feed", "sink")
    await bus.put_trigger(nats_route("feed", "ticks", "sink", "ev.feed.ticks"))
    one, two = services.start(), services.start()
    for service in (one, two):
        service.wait_for("trigger_nats_subscribed")
    await asyncio.sleep(0.3)  # the subscriptions reach the server after the log line
    for i in range(200):
        await bus.nc.publish("ev.feed.ticks", f"tick {i}".encode(), headers={"Content-Type": "text/plain"})
    calls = await wait_count(bus, "feed", "sink", 200, timeout=30)
    await asyncio.sleep(0.5)
    calls = await bus.calls("feed", "sink")
    assert len(calls) == 200, "each message once: one queue group, not one subscription per service"
    envelope = await bus.envelope(next(iter(calls)))
    assert header(envelope, "content-type") == "text/plain"


async def test_triggers_outside_their_namespace_are_refused_and_receive_nothing(bus: Bus, services: Any) -> None:
    await bus.put_function("attacker", "spy")
    await bus.put_function("victim", "payments")
    # written straight into LF_ROUTES, past lf dev's and the operator's checks
    await bus.put_trigger(nats_route("attacker", "calls", "spy", "lf.invoke.>"))
    await bus.put_trigger(nats_route("attacker", "events", "spy", "ev.victim.>"))
    await bus.put_trigger(nats_route("attacker", "everything", "spy", ">"))
    await bus.put_trigger(nats_route("attacker", "streamed", "spy", "ev.attacker.x", "EV_victim"))
    await bus.put_trigger(nats_route("attacker", "own", "spy", "ev.attacker.ok"))  # the control: this one works
    service = services.start()
    service.wait_for("trigger_nats_subscribed")
    for name, rule in (
        ("calls", "lf.> carries the platform's own calls"),
        ("events", "belongs to namespace 'victim'"),
        ("everything", "reaches every namespace"),
        ("streamed", "'EV_victim' belongs to namespace 'victim'"),
    ):
        deadline = time.monotonic() + 10
        while True:
            state = await bus.state("attacker", name)
            if state is not None and state.last_error:
                break
            assert time.monotonic() < deadline, f"{name}: no refusal recorded"
            await asyncio.sleep(0.1)
        assert state.last_error.startswith("refused: ") and rule in state.last_error
        assert "may only" in state.last_error
    assert len(service.events("trigger_entry_refused")) == 4
    # another tenant's sync calls and events go by: the attacker's function gets none of them
    victim_calls = await bus.nc.subscribe("lf.invoke.victim.payments", queue="victim.payments")
    for i in range(20):
        await bus.nc.publish("lf.invoke.victim.payments", f"secret {i}".encode())
        await bus.nc.publish("ev.victim.paid", f"paid {i}".encode())
    await bus.nc.publish("ev.attacker.ok", b"mine")
    calls = await wait_count(bus, "attacker", "spy", 1, timeout=10)
    await asyncio.sleep(1.0)
    calls = await bus.calls("attacker", "spy")
    assert len(calls) == 1
    assert (await bus.envelope(next(iter(calls)))).body == b"mine"
    assert victim_calls.pending_msgs == 20, "the victim's own subscriber got its calls"
    await victim_calls.unsubscribe()
    # fixed, the refusal goes from its state and the trigger serves
    await bus.put_trigger(nats_route("attacker", "events", "spy", "ev.attacker.fixed"))
    deadline = time.monotonic() + 10
    while (state := await bus.state("attacker", "events")) is None or state.last_error:
        assert time.monotonic() < deadline, f"the refusal stayed: {state}"
        await asyncio.sleep(0.1)
