"""Readiness conformance: every runtime's `GET /readyz` (LF_HEALTH_PORT) is 200 exactly when a call sent now is
answered, and 503 with the reason before the broker is reachable, while it is down, and once SIGTERM began the drain.

Each case runs a replica of the runtime's conformance function (the suite's binary, `runtime_env`) against a
nats-server of its own, on a port fixed before the replica starts, so the broker can come up after the replica and
be stopped and started again on the same address. Calls go straight to the invoke subject over NATS (no ingestor:
the case is about the replica alone); `/metrics` says when a held call is running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from signal import SIGTERM

import httpx
import nats
import pytest
from conformance_harness import RUNTIMES, launch, load_function
from lf_controlplane.natsserver import NatsServer, free_port
from lf_core.contract.subjects import invoke_subject
from lf_native import ResponseEnvelope, decode_response, encode_request
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.runtime import RuntimeProcess
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(240)]


class Probed:
    """A replica with its health port, and the subject its function is called on."""

    def __init__(self, runtime: str, tmp_path: Path) -> None:
        self.runtime = runtime
        self.function = load_function(runtime)
        self.nats_port = free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.health_port = free_port()
        self.readyz = f"http://127.0.0.1:{self.health_port}/readyz"
        self.subject = invoke_subject(self.function.namespace, self.function.name)
        self.state = tmp_path
        argv, env = launch(runtime, self.function, tmp_path / "state", self.nats_url)
        env.update(
            LF_HEALTH_PORT=str(self.health_port),
            LF_CONNECT_TIMEOUT="60",  # the broker comes up after the replica
            LF_METRICS_PORT=str(free_port()),  # litefunctions_runtime_inflight: a call is running
        )
        self.argv, self.env = argv, env
        self.process: RuntimeProcess | None = None
        self._brokers = 0

    def start(self) -> RuntimeProcess:
        self.process = RuntimeProcess.start(self.env, self.argv, ready_timeout=None)
        return self.process

    @contextmanager
    def broker(self) -> Iterator[NatsServer]:
        """A nats-server on the replica's LF_NATS_URL, stopped (SIGTERM) when the block ends."""
        self._brokers += 1
        server = NatsServer(state_dir=self.state / f"nats-{self._brokers}", port=self.nats_port, jetstream=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def probe(self) -> tuple[int, str]:
        response = httpx.get(self.readyz, timeout=2)
        return response.status_code, response.text

    def wait_probe(self, status: int, what: str, timeout: float = 30) -> str:
        """Poll /readyz until it answers `status` (the replica must stay alive meanwhile); its body."""

        def answered() -> str | None:
            assert self.process is not None
            assert self.process.process.poll() is None, self.process.logs()
            code, text = self.probe()
            return text if code == status else None

        return str(wait_for(answered, timeout, f"/readyz of the {self.runtime} replica to say {status} ({what})"))

    def inflight(self) -> float:
        metrics = httpx.get(f"http://127.0.0.1:{self.env['LF_METRICS_PORT']}/metrics", timeout=2).text
        for family in text_string_to_metric_families(metrics):
            if family.name == "litefunctions_runtime_inflight":
                return float(family.samples[0].value)
        raise AssertionError(f"no litefunctions_runtime_inflight in {metrics}")

    def call(self, path: str = "/inspect", budget_ms: int = 5_000, timeout: float = 3) -> ResponseEnvelope:
        """One call on the invoke subject, sent once (no retry): NoRespondersError if nobody is subscribed."""

        async def request() -> ResponseEnvelope:
            nc = await nats.connect(self.nats_url, allow_reconnect=False)
            try:
                payload = encode_request(f"ready-{time.monotonic_ns()}", "GET", path, "", [], b"", budget_ms)
                return decode_response((await nc.request(self.subject, payload, timeout)).data)
            finally:
                await nc.close()

        return asyncio.run(request())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


@pytest.fixture(params=RUNTIMES)
def probed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Probed]:
    replica = Probed(request.param, tmp_path)
    try:
        yield replica
    finally:
        replica.stop()


def test_ready_only_while_connected_and_subscribed(probed: Probed) -> None:
    runtime = probed.start()
    # No broker yet: the replica keeps trying to connect (LF_CONNECT_TIMEOUT) and says so.
    assert "connecting to NATS" in probed.wait_probe(503, "no broker yet")
    assert not runtime.named("ready")
    with probed.broker():
        assert probed.wait_probe(200, "broker up") == "ready\n"
        answer = probed.call()  # at once, no retry: 200 means a call is answered now
        assert (answer.status, answer.error) == (200, ""), answer.error
        runtime.wait_for("ready")
    # Broker gone: not ready until it is back and the subscription is confirmed again.
    assert "NATS" in probed.wait_probe(503, "broker stopped")
    with probed.broker():
        assert probed.wait_probe(200, "broker back") == "ready\n"
        answer = probed.call()
        assert (answer.status, answer.error) == (200, ""), answer.error
    # Stopped while the broker is gone again (a pod deleted during an outage): it still drains and exits 0 in
    # bounded time (Go waits for its subscription's drain up to LF_DRAIN_TIMEOUT, 10 s here).
    assert "NATS" in probed.wait_probe(503, "broker stopped again")
    began = time.monotonic()
    runtime.signal(SIGTERM)
    assert runtime.exit_code(20) == 0, runtime.logs()
    assert time.monotonic() - began < 15, runtime.logs()


def test_not_ready_once_draining(probed: Probed) -> None:
    with probed.broker():
        runtime = probed.start()
        runtime.wait_for("ready", 30)
        probed.wait_probe(200, "serving")

        async def slow_call_across_sigterm() -> tuple[ResponseEnvelope, tuple[int, str], bool]:
            nc = await nats.connect(probed.nats_url)
            try:
                payload = encode_request("held", "GET", "/sleep/3000", "", [], b"", 10_000)
                pending = asyncio.ensure_future(nc.request(probed.subject, payload, 15))
                await asyncio.to_thread(wait_for, lambda: probed.inflight() == 1, 10, "the held call to run")
                runtime.signal(SIGTERM)
                await asyncio.to_thread(runtime.wait_for, "stopping", 10)
                seen = await asyncio.to_thread(probed.probe)  # the drain began; the call is still running
                running = not pending.done()
                answer = decode_response((await pending).data)
                return answer, seen, running
            finally:
                await nc.close()

        answer, seen, running = asyncio.run(slow_call_across_sigterm())
        assert running, "the probe came after the held call was answered: nothing was draining"
        assert seen == (503, "not ready: draining\n")
        assert (answer.status, answer.error) == (200, ""), "the call in flight at SIGTERM is answered by the drain"
        assert runtime.exit_code(30) == 0
