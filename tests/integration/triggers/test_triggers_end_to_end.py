"""Triggers through the whole async path: two real dispatchers (`python -m lf_dispatcher`, which runs the trigger
service next to the async calls) and a real Python runtime. A JetStream Trigger's 1,000 messages each end as one
succeeded call record in LF_RESULTS carrying that message (none lost; a redelivery is the same call id, which the
record's compare-and-set keeps to one result); a cron Trigger's runs are run by the function."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_core.asynccalls import streams as js
from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.contract.routes import EventTriggerRoute, encode_route, route_key
from lf_core.contract.specs import CronTrigger, NatsTrigger
from lf_core.contract.subjects import trigger_consumer
from trigger_harness import Bus

from tests.harness.dispatcher import Dispatcher, start_dispatcher
from tests.harness.routes import function_route
from tests.harness.runtime import RuntimeProcess

pytestmark = pytest.mark.integration

HANDLER = """
import json, os
from pathlib import Path

LOG = Path(os.environ["RUNS_LOG"])

def handle(req):
    with LOG.open("a") as f:
        f.write(json.dumps({"call": req._env.call_id, "body": req.body.decode()}) + "\\n")
    return {"echo": req.body.decode(), "trigger": req.headers.get("lf-trigger", "")}
"""


@pytest.fixture
def platform(broker: NatsServer, tmp_path: Path) -> Any:
    folder = tmp_path / "echo"
    runs = tmp_path / "runs.jsonl"
    runs.touch()
    replica = RuntimeProcess.start_python(
        broker.url, "echo", folder, {"handler.py": HANDLER}, LF_CONCURRENCY="32", RUNS_LOG=str(runs)
    )
    dispatchers: list[Dispatcher] = []
    settings = {"LF_CALLBACK_KEYS_DIR": str(tmp_path / "keys"), "LF_DRAIN_TIMEOUT": "5s", "LF_TRIGGER_ACK_WAIT": "5s"}
    try:
        for n in range(2):
            dispatchers.append(start_dispatcher(broker.url, tmp_path / f"dispatcher-{n}.log", **settings))
        yield dispatchers, runs
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()
        replica.stop()


async def _records(bus: Bus, call_ids: list[str]) -> dict[str, js.CallRecord]:
    found = {}
    for call_id in call_ids:
        entry = await jetstream.kv_get(bus.request, js.RESULTS_BUCKET, call_id)
        if entry is not None:
            found[call_id] = js.decode_record(entry[0])
    return found


async def test_a_jetstream_triggers_1000_messages_end_as_1000_results(bus: Bus, platform: Any) -> None:
    dispatchers, runs = platform
    route = msgspec.structs.replace(function_route("echo"), concurrency=32, replicas=1)
    kv = await bus.routes()
    await kv.put(route_key(route), encode_route(route))
    stream = "EV_default_e2e"
    await jetstream.ensure_stream(bus.request, {"name": stream, "subjects": ["ev.default.e2e.>"], "storage": "file"})
    trigger = EventTriggerRoute(
        kind="nats", namespace="default", name="e2e", function="echo",
        nats=NatsTrigger(subject="ev.default.e2e.>", stream=stream), revision="r1",
    )  # fmt: skip
    await bus.put_trigger(trigger)
    deadline = time.monotonic() + 20
    while True:
        try:
            await jetstream.api(bus.request, f"$JS.API.CONSUMER.INFO.{stream}.{trigger_consumer('default', 'e2e')}")
            break
        except jetstream.JetStreamError:
            assert time.monotonic() < deadline, "the trigger's consumer was never created"
            await asyncio.sleep(0.1)
    jsc = bus.nc.jetstream()
    call_ids = {}
    started = time.monotonic()
    for i in range(1000):
        ack = await jsc.publish(f"ev.default.e2e.m{i % 5}", f"m{i}".encode())
        call_ids[triggered.stream_call_id("default", "e2e", stream, ack.seq)] = f"m{i}"
    deadline = time.monotonic() + 120
    while True:
        records = await _records(bus, list(call_ids))
        done = [r for r in records.values() if r.status == "succeeded"]
        if len(done) == 1000:
            break
        assert time.monotonic() < deadline, f"{len(done)} of 1000 calls succeeded"
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    for call_id, record in records.items():
        assert record.result is not None
        answer = json.loads(record.result.body)
        assert answer == {"echo": call_ids[call_id], "trigger": "e2e"}
    seen = [json.loads(line) for line in runs.read_text().splitlines()]
    assert {s["body"] for s in seen} == set(call_ids.values())
    print(f"1000 messages -> 1000 results in {elapsed:.1f} s; {len(seen)} handler runs")
    await bus.delete_trigger(trigger)


async def test_a_cron_triggers_runs_are_run_by_the_function(bus: Bus, platform: Any) -> None:
    route = msgspec.structs.replace(function_route("echo"), concurrency=32, replicas=1)
    kv = await bus.routes()
    await kv.put(route_key(route), encode_route(route))
    trigger = EventTriggerRoute(
        kind="cron", namespace="default", name="every-second", function="echo",
        cron=CronTrigger(schedule="* * * * * *", body="tick"), revision="r1",
    )  # fmt: skip
    await bus.put_trigger(trigger)
    deadline = time.monotonic() + 30
    while True:
        state = await bus.state("default", "every-second")
        if state is not None and state.last_call_id:
            record = (await _records(bus, [state.last_call_id])).get(state.last_call_id)
            if record is not None and record.status == "succeeded" and record.result is not None:
                assert json.loads(record.result.body) == {"echo": "tick", "trigger": "every-second"}
                break
        assert time.monotonic() < deadline, f"no run completed: {state}"
        await asyncio.sleep(0.2)
    await bus.delete_trigger(trigger)
