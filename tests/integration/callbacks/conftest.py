"""Fixtures of the callback tests (see callback_harness.py): LF_RESULTS on the session's real nats-server, and
real local HTTP receivers, stopped at the end of each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import nats
import pytest
from callback_harness import Behaviour, ReceiverServer, Results
from lf_controlplane.natsserver import NatsServer
from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream


@pytest.fixture
async def results(nats_server: NatsServer) -> AsyncIterator[Results]:
    nc = await nats.connect(nats_server.url)
    request = jetstream.nats_py_requester(nc)
    await js.ensure_all(request)
    try:
        yield Results(request)
    finally:
        await nc.close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[Behaviour], ReceiverServer]]:
    started: list[ReceiverServer] = []

    def start(behaviour: Behaviour) -> ReceiverServer:
        server = ReceiverServer(behaviour)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
