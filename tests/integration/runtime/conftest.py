"""Fixtures of the runtime tests: a runtime subprocess factory and a NATS client (see runtime_harness.py)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from runtime_harness import ASYNC_HANDLER, SYNC_HANDLER, GatedRuntime, Start


@pytest.fixture
def start_runtime(nats_url: str, tmp_path: Path) -> Iterator[Start]:
    """Start `python -m lf_runtime` on a fresh function folder; wait for "ready". Killed at teardown if alive."""
    started: list[GatedRuntime] = []

    def start(
        *,
        is_async: bool = False,
        function: str | None = None,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
    ) -> GatedRuntime:
        gate = tmp_path / f"gate-{len(started)}"
        gate.mkdir()
        env = {"GATE_DIR": str(gate), "LF_DRAIN_TIMEOUT": "10", **(env or {})}
        runtime = GatedRuntime.start_python(
            nats_url, function or f"t-{uuid.uuid4().hex[:10]}", tmp_path / f"fn-{len(started)}",
            {"handler.py": ASYNC_HANDLER if is_async else SYNC_HANDLER, **(files or {})},
            ready_timeout=10 if wait_ready else None, **env,
        )  # fmt: skip
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop(signal.SIGKILL, 10)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()
