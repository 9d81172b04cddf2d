"""Fixtures of the conformance suite: broker, ingestor, wiretap and one replica per runtime (see
conformance_harness.py for why the suite does not go through `lf dev`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import nats
import pytest
from conformance_harness import RUNTIMES, Replica, Wiretap, launch, load_function
from lf_controlplane.natsserver import NatsServer, free_port
from lf_core.contract.routes import encode_route, route_key, route_of
from lf_core.contract.specs import Function
from lf_core.contract.subjects import ROUTES_BUCKET

from tests.conftest import nats_server  # noqa: F401  (the shared session broker)


@pytest.fixture(scope="session")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    asyncio.run(_publish_routes(nats_server.url, [load_function(r) for r in RUNTIMES]))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
    env.update(LF_PORT=str(port), LF_HOST="127.0.0.1", LF_NATS_URL=nats_server.url, PYTHONUNBUFFERED="1")
    env.update(LF_CALLBACK_ALLOW_PRIVATE="true")  # test_async's callbacks go to a local server
    log = (tmp_path_factory.mktemp("ingestor") / "ingestor.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "lf_dataplane"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(30)
        log.close()


async def _publish_routes(url: str, functions: list[Function]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=ROUTES_BUCKET, history=1)
    for function in functions:
        route = route_of(function)
        await kv.put(route_key(route), encode_route(route))
    await nc.close()


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
