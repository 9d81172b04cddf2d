"""Fixtures of the conformance suite: broker, ingestor, dispatcher, wiretap and one replica per runtime (see
conformance_harness.py for why the suite does not go through `lf dev`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance_harness import RUNTIMES, Replica, Wiretap, launch, load_function, start_suite_dispatcher
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.routes import route_of

from tests.conftest import nats_server  # noqa: F401  (the shared session broker)
from tests.harness.dispatcher import Dispatcher
from tests.harness.ingestor import start_ingestor
from tests.harness.routes import put_routes


@pytest.fixture(scope="session")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """The ingestor's base URL, every runtime's function routed (callback URLs may name a local server; the suite's
    callers are trusted to decide sampling, as test_observability's traces need)."""
    put_routes(nats_server.url, *(route_of(load_function(r)) for r in RUNTIMES))
    log = tmp_path_factory.mktemp("ingestor") / "ingestor.log"
    trusted = {"LF_CALLBACK_ALLOW_PRIVATE": "true", "LF_TRACE_TRUST_INCOMING": "true"}
    started = start_ingestor(nats_server.url, log, **trusted)
    try:
        yield started.url
    finally:
        started.stop(timeout=30)


@pytest.fixture(scope="session")
def dispatcher(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dispatcher]:  # noqa: F811
    """The suite's one dispatcher: it runs every function's async calls (test_async), whatever the runtime."""
    started = start_suite_dispatcher(nats_server.url, tmp_path_factory.mktemp("dispatcher") / "dispatcher.log")
    try:
        yield started
    finally:
        started.stop(timeout=30)


@pytest.fixture(scope="session")
def wiretap(nats_server: NatsServer) -> Iterator[Wiretap]:  # noqa: F811
    tap = Wiretap(nats_server.url)
    tap.start()
    yield tap
    tap.close()


@pytest.fixture(scope="session", params=RUNTIMES)
def replica(
    request: pytest.FixtureRequest,
    ingestor: str,
    nats_server: NatsServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    wiretap: Wiretap,
) -> Iterator[Replica]:
    runtime: str = request.param
    function = load_function(runtime)
    argv, env = launch(runtime, function, tmp_path_factory.mktemp(f"state-{runtime}"), nats_server.url)
    replica = Replica(runtime, function, argv, env, ingestor)
    replica.start()
    try:
        yield replica
    finally:
        replica.stop()
