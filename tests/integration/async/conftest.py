"""Fixtures of the async tests (see async_harness.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from async_harness import AsyncPlatform, start_ingestor
from lf_controlplane.natsserver import NatsServer, free_port


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsyncPlatform]:
    tmp = tmp_path_factory.mktemp("async")
    broker = NatsServer(state_dir=tmp / "nats", port=free_port()).start()
    port = free_port()
    ingestor = start_ingestor(broker.url, tmp / "ingestor.log", port)
    platform = AsyncPlatform(broker, ingestor, port, tmp)
    try:
        yield platform
    finally:
        for runtime in platform.runtimes:
            if runtime.process.poll() is None:
                os.kill(runtime.process.pid, signal.SIGCONT)
            runtime.stop(timeout=10)
        ingestor.stop()
        broker.stop()
