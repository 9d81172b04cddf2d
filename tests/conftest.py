"""Shared fixtures: real servers started per test session on free loopback ports (see tests/harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lf_controlplane.natsserver import NatsServer

from tests.harness.natsserver import running_nats
from tests.harness.redisserver import RedisServer
from tests.harness.routes import Routes, connected_routes


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server (JetStream on) for the whole session."""
    with running_nats(Path(tmp_path_factory.mktemp("nats"))) as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
async def routes(nats_url: str) -> AsyncIterator[Routes]:
    """The session broker's LF_ROUTES bucket (created if need be)."""
    async with connected_routes(nats_url) as bucket:
        yield bucket


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (Valkey's protocol; no persistence) for the whole session, stopped by its PID."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
