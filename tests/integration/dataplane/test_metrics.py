"""Metrics of a real multi-worker ingestor: counts from every worker sum exactly, promtool accepts the output,
cold starts come from the response envelope's flag, and every answer carries the overhead header. `/metrics` is
served on the admin listener (LF_ADMIN_PORT) only; the public port answers it 404 (issue 14, item 8)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from lf_controlplane.natsserver import NatsServer, free_port
from lf_native import RequestEnvelope, encode_response
from nats.aio.client import Client
from test_ingestor import nc as nc
from test_ingestor import responder, unique

from tests.harness.ingestor import start_ingestor, wait_routed
from tests.harness.promtool import promtool_check
from tests.harness.routes import Routes, function_route
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of `name` with exactly these labels (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


@pytest.fixture(scope="module")
def two_workers(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    log = tmp_path_factory.mktemp("ingestor2") / "ingestor.log"
    admin = free_port()
    ingestor = start_ingestor(nats_server.url, log, LF_WORKERS="2", LF_METRICS_FLUSH="200ms", LF_ADMIN_PORT=str(admin))
    ingestor.metrics_url = f"http://127.0.0.1:{admin}/metrics"  # type: ignore[attr-defined]
    yield ingestor
    ingestor.stop()


async def test_counts_from_two_workers_sum_exactly_and_pass_promtool(
    two_workers,
    nc: Client,
    routes: Routes,  # type: ignore[no-untyped-def]
) -> None:
    name = unique("metrics")
    await routes.put(function_route(name))
    url = f"{two_workers.url}/function/{name}"
    served = {"n": 0}

    def handler(request: RequestEnvelope) -> bytes:
        served["n"] += 1
        status = 201 if request.path == "/created" else 200
        return encode_response(status, [], b"x" * 100, request.call_id, duration_ns=2_000_000,
                               cold_start=served["n"] == 1)  # fmt: skip

    async with responder(nc, name, handler):
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)  # new connections: both workers
        async with httpx.AsyncClient(timeout=20, limits=limits) as client:
            await wait_routed(client, url)
            first = served["n"]  # wait_routed's probes reached the function too (200s)

            async def call(path: str) -> httpx.Response:
                return await client.get(url + path, headers={"connection": "close"})

            responses = await asyncio.gather(*[call("/") for _ in range(60)], *[call("/created") for _ in range(25)])
            assert sorted({r.status_code for r in responses}) == [200, 201], [
                r.text for r in responses if r.status_code not in (200, 201)
            ]
            for r in responses:
                duration = float(r.headers["x-duration-seconds"])
                overhead = float(r.headers["x-overhead-seconds"])
                assert overhead == pytest.approx(duration - 0.002, abs=1e-5)
            missing = await client.get(f"{two_workers.url}/function/{unique('absent')}")
            assert "x-overhead-seconds" in missing.headers

            expected_200 = 60 + first
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                text = (await client.get(two_workers.metrics_url)).text
                got = sample(text, "litefunctions_invocations_total", namespace="default", function=name, code="200")
                got_201 = sample(
                    text, "litefunctions_invocations_total", code="201", namespace="default", function=name
                )
                done = got == expected_200 and got_201 == 25
                if done or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            # each worker keeps its own counts; the sum is exact once every snapshot is written
            assert got == expected_200, text
            labels = {"namespace": "default", "function": name}
            assert sample(text, "litefunctions_invocations_total", code="201", **labels) == 25
            assert sample(text, "gateway_function_invocation_total", function_name=f"{name}.default", code="201") == 25
            assert sample(text, "litefunctions_cold_starts_total", **labels) == 1
            assert sample(text, "litefunctions_invocation_duration_seconds_count", **labels) == expected_200 + 25
            assert sample(text, "gateway_functions_seconds_count", function_name=f"{name}.default") == expected_200 + 25
            assert sample(text, "litefunctions_function_duration_seconds_bucket", le="0.0025", **labels) == (
                expected_200 + 25
            )
            assert sample(text, "litefunctions_function_duration_seconds_bucket", le="0.001", **labels) == 0
            assert sample(text, "litefunctions_response_bytes_sum", **labels) == 100 * (expected_200 + 25)
            assert sample(text, "litefunctions_inflight", **labels) == 0
            assert sample(text, "litefunctions_ingestor_workers") == 2
            promtool_check(text)
    logs = two_workers.logs()
    assert logs.count('"worker started"') >= 2 or logs.count("worker started") >= 2, logs


async def test_errors_are_counted_by_layer_and_reason(
    two_workers,
    nc: Client,
    routes: Routes,  # type: ignore[no-untyped-def]
) -> None:
    name = unique("metricserr")
    await routes.put(function_route(name))
    url = f"{two_workers.url}/function/{name}"
    async with httpx.AsyncClient(timeout=20) as client:
        await wait_routed(client, url)  # no replica: 503 no_replica
        for _ in range(3):
            assert (await client.get(url)).status_code == 503
        labels = {"namespace": "default", "function": name}
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            text = (await client.get(two_workers.metrics_url)).text
            n = sample(text, "litefunctions_invocations_total", code="503", **labels)
            if n >= 4 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        errors = [line for line in text.splitlines() if line.startswith("litefunctions_errors_total") and name in line]
        assert errors and all('layer="' in line and 'reason="' in line for line in errors), text
        assert sum(float(line.rsplit(" ", 1)[1]) for line in errors) == n


def test_the_public_port_answers_metrics_404_and_the_admin_port_serves_them(two_workers) -> None:  # type: ignore[no-untyped-def]
    """Item 8: /metrics lists every tenant's functions and traffic; callers on the public port get a 404 for it,
    like for any unknown path, while the admin listener serves the text (and nothing else)."""
    public = httpx.get(f"{two_workers.url}/metrics", timeout=5)
    assert public.status_code == 404, public.text
    assert "litefunctions_" not in public.text

    def both_workers() -> httpx.Response | None:  # a worker's first snapshot is LF_METRICS_FLUSH after its start
        response = httpx.get(two_workers.metrics_url, timeout=5)
        return response if "litefunctions_ingestor_workers 2.0" in response.text else None

    admin = wait_for(both_workers, 10, "the admin listener to count both workers")
    assert admin.status_code == 200
    assert admin.headers["content-type"].startswith("text/plain")
    other = httpx.get(two_workers.metrics_url.removesuffix("/metrics") + "/healthz", timeout=5)
    assert other.status_code == 404
    assert httpx.post(two_workers.metrics_url, timeout=5).status_code == 405


def test_metrics_off_serves_no_metrics(nats_server: NatsServer, tmp_path: Path) -> None:
    admin = free_port()
    ingestor = start_ingestor(nats_server.url, tmp_path / "off.log", LF_METRICS="0", LF_ADMIN_PORT=str(admin))
    try:
        response = httpx.get(f"{ingestor.url}/metrics")
        assert response.status_code == 404
        assert "x-overhead-seconds" in response.headers
        with pytest.raises(httpx.ConnectError):  # no counting, no admin listener
            httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=5)
    finally:
        ingestor.stop()
