"""`lf triggers list` and `lf trigger fire` against a real nats-server and a running trigger service."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from lf_controlplane.cli import app
from lf_core.contract.routes import EventTriggerRoute, HttpTriggerRoute, encode_trigger_route, trigger_key
from lf_core.contract.specs import CronTrigger, NatsTrigger
from trigger_harness import Bus, header
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


async def test_list_shows_every_trigger_with_its_state_and_fire_queues_a_call(
    bus: Bus, services: Any, broker: Any
) -> None:
    await bus.put_function("cli", "report")
    cron = EventTriggerRoute(
        kind="cron", namespace="cli", name="nightly", function="report", revision="r",
        cron=CronTrigger(schedule="0 3 * * *", body="night", headers={"X-Run": "cron"}),
    )  # fmt: skip
    subject = EventTriggerRoute(
        kind="nats", namespace="cli", name="orders", function="report", revision="r",
        nats=NatsTrigger(subject="ev.cli.orders"),
    )  # fmt: skip
    web = HttpTriggerRoute(namespace="cli", name="web", function="report", path="/r")
    await bus.put_trigger(cron)
    await bus.put_trigger(subject)
    await (await bus.routes()).put(trigger_key(web), encode_trigger_route(web))
    services.start()
    deadline = time.monotonic() + 15
    while (state := await bus.state("cli", "nightly")) is None or not state.next_fire:
        assert time.monotonic() < deadline, "the cron leader recorded no next fire"
        await asyncio.sleep(0.1)

    runner = CliRunner()
    listed = await asyncio.to_thread(
        runner.invoke, app, ["triggers", "list", "-n", "cli", "--json", "--nats-url", broker.url]
    )
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert set(rows) == {"nightly", "orders", "web"}
    assert rows["nightly"]["kind"] == "cron" and rows["nightly"]["source"].startswith("0 3 * * * (UTC, Allow)")
    assert rows["nightly"]["next_fire"].endswith("T03:00:00Z")
    assert rows["orders"]["source"] == "ev.cli.orders" and rows["web"]["kind"] == "http"

    fired = await asyncio.to_thread(
        runner.invoke, app, ["trigger", "fire", "nightly", "-n", "cli", "--nats-url", broker.url]
    )
    assert fired.exit_code == 0, fired.output
    call_id = fired.output.split("queued call ")[1].split()[0]
    calls = await bus.calls("cli", "report")
    assert list(calls) == [f"lf.async.cli.report.{call_id}"]
    envelope = await bus.envelope(next(iter(calls)))
    assert (
        envelope.body == b"night"
        and header(envelope, "x-run") == "cron"
        and header(envelope, "lf-trigger") == "nightly"
    )

    unknown = await asyncio.to_thread(
        runner.invoke, app, ["trigger", "fire", "nope", "-n", "cli", "--nats-url", broker.url]
    )
    assert unknown.exit_code == 1 and "no cron or NATS trigger 'nope'" in unknown.output
