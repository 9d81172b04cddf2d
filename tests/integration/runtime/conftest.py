"""Fixtures of the runtime tests: a runtime subprocess factory and a NATS client (see runtime_harness.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from runtime_harness import ASYNC_HANDLER, SYNC_HANDLER, RuntimeProcess, Start, spawn_runtime


@pytest.fixture
def start_runtime(nats_url: str, tmp_path: Path) -> Iterator[Start]:
    """Start `python -m lf_runtime` on a fresh function folder; wait for "ready". Killed at teardown if alive."""
    started: list[RuntimeProcess] = []

    def start(
        *,
        is_async: bool = False,
        function: str | None = None,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
    ) -> RuntimeProcess:
        function = function or f"t-{uuid.uuid4().hex[:10]}"
        folder = tmp_path / f"fn-{len(started)}"
        gate = tmp_path / f"gate-{len(started)}"
        folder.mkdir()
        gate.mkdir()
        (folder / "handler.py").write_text(ASYNC_HANDLER if is_async else SYNC_HANDLER)
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
        full_env.update(
            LF_NATS_URL=nats_url,
            LF_FUNCTION=function,
            LF_FUNCTION_DIR=str(folder),
            GATE_DIR=str(gate),
            LF_DRAIN_TIMEOUT="10",
        )
        full_env.update(env or {})
        runtime = spawn_runtime(full_env, function, gate)
        started.append(runtime)
        if wait_ready:
            runtime.wait_for("ready")
        return runtime

    yield start
    for runtime in started:
        if runtime.process.poll() is None:
            runtime.process.kill()
        runtime.process.wait(10)
        runtime.close()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()
