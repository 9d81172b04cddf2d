"""The chart's nats.conf runs: nats-server accepts it as rendered, and three servers started from it (only the
addresses moved to loopback ports, the names and data folders made local) form one JetStream cluster on which
the real ingestor, given the chart's LF_STREAM_REPLICAS, creates every stream and bucket with 3 replicas."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from lf_controlplane.natsserver import find_binary, free_port

from tests.chart.conftest import find, parse
from tests.harness.ingestor import start_ingestor
from tests.harness.processes import stop_process
from tests.harness.waiting import wait_for
from tools.helm import chart

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SERVERS = 3
STREAMS = ("LF_ASYNC", "LF_DEAD", "KV_LF_RESULTS", "KV_LF_IDEMPOTENCY", "LF_LOGS", "KV_LF_ROUTES")


@dataclass
class Server:
    name: str
    client: int
    cluster: int
    monitor: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"

    def healthy(self, query: str = "") -> bool:
        return httpx.get(f"http://127.0.0.1:{self.monitor}/healthz{query}", timeout=2).status_code == 200


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the chart's nats.conf changed: {old!r} appears {text.count(old)} times"
    return text.replace(old, new)


def localised(config: str, me: Server, servers: list[Server], data: Path) -> str:
    """The rendered config with its addresses on loopback: every replacement must match exactly once."""
    config = _replace_once(config, "listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{me.client}")
    config = _replace_once(config, "http: 0.0.0.0:8222", f"http: 127.0.0.1:{me.monitor}")
    config = _replace_once(config, "listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{me.cluster}")
    config = _replace_once(config, "store_dir: /data", f"store_dir: {data / 'js'}")
    config = _replace_once(config, "pid_file: /var/run/nats/nats.pid", f"pid_file: {data / 'nats.pid'}")
    for peer in servers:
        route = f"nats://{peer.name}.lf-nats-headless.lf-system.svc.cluster.local:6222"
        config = _replace_once(config, route, f"nats://127.0.0.1:{peer.cluster}")
    return config


@pytest.fixture(scope="module")
def rendered(helm_binary: Path) -> list[dict[str, Any]]:
    return parse(chart.template())


@pytest.fixture(scope="module")
def cluster(rendered: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    config = find(rendered, "ConfigMap", "lf-nats")["data"]["nats.conf"]
    assert find(rendered, "StatefulSet", "lf-nats")["spec"]["replicas"] == SERVERS
    servers = [Server(f"lf-nats-{i}", free_port(), free_port(), free_port()) for i in range(SERVERS)]
    folder = tmp_path_factory.mktemp("nats-cluster")
    try:
        for server in servers:
            data = folder / server.name
            data.mkdir()
            path = data / "nats.conf"
            path.write_text(localised(config, server, servers, data))
            with (data / "nats.log").open("wb") as log:
                server.process = subprocess.Popen(
                    [find_binary(), "--config", str(path)],
                    env={**os.environ, "POD_NAME": server.name},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        for server in servers:  # the startup probe's check: JetStream up with a meta leader
            wait_for(lambda s=server: s.healthy(), 60, f"{server.name}'s /healthz")  # type: ignore[misc]
        yield servers
    finally:
        for server in servers:
            if server.process is not None:
                stop_process(server.process)


def test_nats_server_accepts_the_rendered_config(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "nats.conf"
    path.write_text(find(rendered, "ConfigMap", "lf-nats")["data"]["nats.conf"])
    done = subprocess.run(
        [find_binary(), "-t", "--config", str(path)],
        env={**os.environ, "POD_NAME": "lf-nats-0"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def test_the_ingestor_creates_every_stream_with_the_charts_replicas(
    rendered: list[dict[str, Any]], cluster: list[Server], tmp_path: Path
) -> None:
    container = find(rendered, "Deployment", "lf-ingestor")["spec"]["template"]["spec"]["containers"][0]
    replicas = {e["name"]: e.get("value") for e in container["env"]}["LF_STREAM_REPLICAS"]
    assert replicas == "3"
    urls = ",".join(server.url for server in cluster)
    ingestor = start_ingestor(urls, tmp_path / "ingestor.log", ready_timeout=60, LF_STREAM_REPLICAS=replicas)
    nc = await nats.connect(servers=[server.url for server in cluster])
    try:

        async def info(stream: str) -> dict[str, Any]:
            reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            return dict(json.loads(reply.data))

        async def all_created() -> dict[str, dict[str, Any]]:
            found = {stream: await info(stream) for stream in STREAMS}
            settled = all("error" not in a and (a.get("cluster") or {}).get("leader") for a in found.values())
            return found if settled else {}  # each exists and its raft group has elected a leader

        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 30  # the ingestor creates them in the background once connected
        while not found and time.monotonic() < deadline:
            found = await all_created()
            if not found:
                await asyncio.sleep(0.1)
        assert found, f"not every stream was created: {ingestor.logs()[-2000:]}"
        for stream, answer in found.items():
            assert answer["config"]["num_replicas"] == 3, stream
            peers = {answer["cluster"]["leader"], *(r["name"] for r in answer["cluster"].get("replicas", []))}
            assert peers == {server.name for server in cluster}, (stream, answer["cluster"])
    finally:
        await nc.close()
        ingestor.stop()
