"""Triggers under `lf dev`: a `triggers.yaml` in a function folder is served (a cron run every second is run by the
function, `lf triggers list` shows it), an edit adds a NATS Trigger without restarting the function, and a Trigger
on another namespace's subjects is refused in lf dev's output, naming the rule."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.e2e.conftest import LfDev, start_lf_dev, stop
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration

FUNCTION = """apiVersion: litefunctions.io/v1alpha1
kind: Function
metadata: {name: ticker}
spec: {runtime: python, handler: handler.handle, timeout: 5s}
"""
HANDLER = """def handle(req):
    return {"body": req.body.decode(), "trigger": req.headers.get("lf-trigger", "")}
"""
CRON = """apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: every-second}
spec:
  cron: {schedule: "* * * * * *", body: tick}
"""
MORE = """---
apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: events}
spec:
  nats: {subject: ev.default.ticks}
---
apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: spy}
spec:
  nats: {subject: ev.other.>}
"""


@pytest.fixture
def dev(tmp_path: Path) -> Any:
    root = tmp_path / "functions"
    folder = root / "ticker"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text(FUNCTION)
    (folder / "handler.py").write_text(HANDLER)
    (folder / "triggers.yaml").write_text(CRON)
    platform = start_lf_dev(root, tmp_path / ".lf", tmp_path / "lf-dev.log")
    try:
        yield platform, folder
    finally:
        stop(platform)


def _listed(dev: LfDev) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in json.loads(dev.lf("triggers", "list", "--json").stdout)}


def _pids(dev: LfDev) -> list[int]:
    state = json.loads((dev.state_dir / "state.json").read_text())
    function = next(f for f in state["functions"] if f["name"] == "ticker")
    return [r["pid"] for r in function["replica_states"]]


def _result(dev: LfDev, call_id: str) -> dict[str, Any] | None:
    view = httpx.get(f"{dev.base_url}/invocations/{call_id}", timeout=5).json()
    return view if view.get("status") == "succeeded" else None


def test_triggers_in_a_function_folder_run_under_lf_dev(dev: tuple[LfDev, Path]) -> None:
    platform, folder = dev
    platform.wait_serving("ticker")
    fired = wait_for(lambda: _listed(platform).get("every-second", {}).get("last_call_id"), 30, "a cron run")
    view = wait_for(lambda: _result(platform, fired), 30, f"cron run {fired} to succeed")
    assert json.loads(view["result"]["body"]) == {"body": "tick", "trigger": "every-second"}
    pids = _pids(platform)

    (folder / "triggers.yaml").write_text(CRON + MORE)
    wait_for(lambda: "events" in _listed(platform), 30, "the NATS trigger to be listed")
    wait_for(lambda: "trigger NOT SERVED" in platform.output(), 10, "the refusal in lf dev's output")
    assert "may only use subjects under ev.default.>" in platform.output()
    assert "spy" not in _listed(platform)

    async def publish() -> None:
        nc = await nats.connect(json.loads((platform.state_dir / "state.json").read_text())["nats_url"])
        await nc.publish("ev.default.ticks", b"event")
        await nc.flush()
        await nc.close()

    def event_ran() -> dict[str, Any] | None:
        call_id = _listed(platform)["events"].get("last_call_id")
        if not call_id:
            asyncio.run(publish())  # core NATS: published until the subscription has one
            return None
        return _result(platform, call_id)

    view = wait_for(event_ran, 30, "the NATS trigger's call to succeed", interval=0.5)
    assert json.loads(view["result"]["body"]) == {"body": "event", "trigger": "events"}
    assert _pids(platform) == pids, "editing triggers.yaml restarted the function"
