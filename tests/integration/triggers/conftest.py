"""Fixtures of the trigger tests: one nats-server (JetStream on) per module, the session's redis-server for the cron
leader's lease, a nats-py connection per test, and the trigger service processes a test starts (stopped at its end,
by PID)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from lf_controlplane.natsserver import NatsServer
from trigger_harness import Bus, TriggerProcess, start_triggers

from tests.harness.natsserver import running_nats


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with running_nats(Path(tmp_path_factory.mktemp("nats"))) as server:
        yield server


@pytest.fixture
async def bus(broker: NatsServer) -> AsyncIterator[Bus]:
    nc = await nats.connect(broker.url)
    try:
        yield Bus(nc)
    finally:
        await nc.close()


class Services:
    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.started: list[TriggerProcess] = []

    def start(self, **env: str) -> TriggerProcess:
        service = start_triggers(self.url, self.folder / f"triggers-{len(self.started)}.log", **env)
        self.started.append(service)
        return service


@pytest.fixture
def services(broker: NatsServer, tmp_path: Path) -> Iterator[Services]:
    started = Services(broker.url, tmp_path)
    try:
        yield started
    finally:
        for service in started.started:
            service.stop()
