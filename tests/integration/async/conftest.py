"""Fixtures of the async tests (see async_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from async_harness import AsyncPlatform, start_async_ingestor
from lf_controlplane.natsserver import free_port

from tests.harness.natsserver import running_nats


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsyncPlatform]:
    tmp = tmp_path_factory.mktemp("async")
    with running_nats(tmp / "nats", port=free_port()) as broker:  # a fixed port: restarted on the same address
        platform = AsyncPlatform(broker, start_async_ingestor(broker.url, tmp / "ingestor.log"), tmp)
        try:
            for _ in range(2):  # several dispatchers share each function's consumer
                platform.start_dispatcher()
            yield platform
        finally:
            for dispatcher in platform.dispatchers:
                dispatcher.stop(timeout=10)
            for runtime in platform.runtimes:
                runtime.stop(timeout=10)
            platform.ingestor.stop()
