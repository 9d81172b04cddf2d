"""The ingestor's route watch leaves cron and NATS Trigger entries (`et.`) to the dispatcher: it neither routes
them nor logs them as malformed, before or after its initial load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from lf_core.contract.routes import EventTriggerRoute
from lf_core.contract.specs import CronTrigger
from trigger_harness import Bus

from tests.harness.ingestor import start_ingestor

pytestmark = pytest.mark.integration


async def test_trigger_entries_are_not_routes(bus: Bus, broker: Any, tmp_path: Path) -> None:
    entry = EventTriggerRoute(
        kind="cron", namespace="quiet", name="before", function="fn", cron=CronTrigger(schedule="0 3 * * *")
    )
    await bus.put_trigger(entry)  # in the bucket when the ingestor loads it
    ingestor = await asyncio.to_thread(start_ingestor, broker.url, tmp_path / "ingestor.log")
    try:
        await bus.put_trigger(msgspec.structs.replace(entry, name="after"))  # one that arrives live
        await bus.put_function("quiet", "fn")  # a change after the trigger entries: the ingestor saw them
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = time.monotonic() + 20
            while (await client.get(f"{ingestor.url}/function/fn.quiet")).status_code == 404:
                assert time.monotonic() < deadline, "the function's route never arrived"
                await asyncio.sleep(0.05)
        logs = ingestor.logs()
        assert "et.quiet" not in logs and "route entry skipped" not in logs
    finally:
        await asyncio.to_thread(ingestor.stop)
