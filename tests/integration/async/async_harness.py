"""Helpers of the async integration tests: one nats-server with file storage on a fixed port (so it can be
restarted on the same address), one ingestor and Python runtimes (all started with tests/harness) per test on a
test handler whose every attempt is appended to a JSON-lines log."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from lf_controlplane.natsserver import NatsServer

from tests.harness.ingestor import Ingestor, start_ingestor
from tests.harness.routes import function_route, put_routes
from tests.harness.runtime import RuntimeProcess
from tests.harness.waiting import wait_for as wait_until

HANDLER = """
import json, os, time
from pathlib import Path
from lf_runtime import Response

LOG = Path(os.environ["ASYNC_LOG"])

def handle(req):
    call_id = req._env.call_id
    mode = req.path.strip("/")
    with LOG.open("a") as f:
        f.write(json.dumps({"call": call_id, "mode": mode, "pid": os.getpid(), "t": time.time()}) + "\\n")
    if mode == "fail":
        return Response("boom", status=500)
    if mode == "bad":
        return Response("no", status=400)
    if mode.startswith("sleep"):
        time.sleep(float(mode[5:]))
    return {"pid": os.getpid(), "call": call_id, "body": req.body.decode()}
"""


@dataclass
class AsyncPlatform:
    broker: NatsServer
    ingestor: Ingestor
    tmp: Path
    runtimes: list[RuntimeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.ingestor.url

    def add_function(self, *, timeout: str = "5s", env: dict[str, str] | None = None, replicas: int = 1) -> Function:
        name = f"a-{uuid.uuid4().hex[:8]}"
        folder = self.tmp / name
        folder.mkdir()
        (folder / "handler.py").write_text(HANDLER)
        calls = folder / "calls.jsonl"
        calls.touch()
        fn = Function(name, folder, calls, self, timeout, env or {})
        timeout_ms = int(float(timeout.rstrip("s")) * 1000)
        put_routes(self.broker.url, function_route(name, timeout_ms=timeout_ms, max_response_bytes=1 << 20))
        for _ in range(replicas):
            fn.start_replica()
        wait_until(lambda: httpx.get(f"{self.url}/function/{name}/ok").status_code == 200, 20, "the route")
        for replica in fn.replicas:
            replica.wait_for("async_ready", 20)
        return fn


@dataclass
class Function:
    name: str
    folder: Path
    calls_log: Path
    platform: AsyncPlatform
    timeout: str
    env: dict[str, str]
    replicas: list[RuntimeProcess] = field(default_factory=list)

    def start_replica(self) -> RuntimeProcess:
        env = {
            "LF_TIMEOUT": self.timeout, "LF_ASYNC_BACKOFF": "0.3s", "LF_ASYNC_ACK_GRACE": "1s",
            "LF_CALLBACK_ALLOW_PRIVATE": "true", "LF_CONCURRENCY": "8", "LF_DRAIN_TIMEOUT": "5s",
            "ASYNC_LOG": str(self.calls_log), "PYTHONUNBUFFERED": "1", **self.env,
        }  # fmt: skip
        replica = RuntimeProcess.start_python(self.platform.broker.url, self.name, self.folder, **env)
        self.replicas.append(replica)
        self.platform.runtimes.append(replica)
        return replica

    def attempts(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.calls_log.read_text().splitlines() if line.strip()]

    def submit(self, path: str = "ok", body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{self.platform.url}/async-function/{self.name}/{path}", content=body, headers=headers)

    def status(self, call_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.platform.url}/invocations/{call_id}")
        assert response.status_code in (200, 404), response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_status(self, call_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
        return wait_until(  # type: ignore[no-any-return]
            lambda: (s := self.status(call_id)).get("status") in statuses and s, timeout, f"{call_id} in {statuses}"
        )


def start_async_ingestor(nats_url: str, log: Path, **env: str) -> Ingestor:
    """The ingestor as this suite runs it: callbacks to loopback allowed, a short drain."""
    return start_ingestor(nats_url, log, **{"LF_DRAIN_TIMEOUT": "10s", "LF_CALLBACK_ALLOW_PRIVATE": "true", **env})


def dead_letters(platform: AsyncPlatform, function: str) -> list[Any]:
    from lf_core.asynccalls import deadletters
    from lf_core.bus import jetstream

    async def run() -> list[Any]:
        nc = await nats.connect(platform.broker.url)
        try:
            return await deadletters.list_letters(jetstream.nats_py_requester(nc), function=function)
        finally:
            await nc.close()

    return asyncio.run(run())


def redrive(platform: AsyncPlatform, call_id: str) -> None:
    from lf_core.asynccalls import deadletters
    from lf_core.bus import jetstream

    async def run() -> None:
        nc = await nats.connect(platform.broker.url)
        try:
            await deadletters.redrive(jetstream.nats_py_requester(nc), call_id)
        finally:
            await nc.close()

    asyncio.run(run())
