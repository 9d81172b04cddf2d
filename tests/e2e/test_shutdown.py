"""SIGTERM to `lf dev` with calls in flight: readiness drops, every accepted call is answered, all exit."""

from __future__ import annotations

import concurrent.futures
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LfDev, start_lf_dev, stop, wait_for

pytestmark = pytest.mark.e2e


def not_ready(dev: LfDev) -> bool:
    """/readyz says 503 (draining) or the listener is already closed."""
    try:
        return httpx.get(f"{dev.base_url}/readyz", timeout=2).status_code == 503
    except httpx.ConnectError:
        return True


def test_sigterm_finishes_calls_in_flight(functions_root: Path, tmp_path: Path) -> None:
    dev: LfDev = start_lf_dev(functions_root, tmp_path / ".lf", tmp_path / "lf-dev.log")
    try:
        dev.wait_serving("gate")
        pids = [r["pid"] for f in dev.state() for r in f["replica_states"]]
        gate = tmp_path / "gate"
        gate.mkdir()
        calls = 6
        with concurrent.futures.ThreadPoolExecutor(calls) as pool:
            futures = [
                pool.submit(httpx.get, dev.url("gate", f"?hold={i}&dir={gate}"), timeout=30) for i in range(calls)
            ]
            wait_for(lambda: len(list(gate.glob("started-*"))) == calls, 20, "all calls to be in flight")
            dev.process.send_signal(signal.SIGTERM)
            wait_for(lambda: not_ready(dev), 10, "the ingestor to stop taking calls")
            (gate / "release").touch()
            answers = [f.result() for f in futures]
        assert [a.status_code for a in answers] == [200] * calls
        assert sorted(a.json()["released"] for a in answers) == sorted(str(i) for i in range(calls))
        assert dev.process.wait(60) == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert "stopped" in dev.output()
    finally:
        stop(dev)
