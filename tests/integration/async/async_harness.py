"""Helpers of the async integration tests: one nats-server with file storage on a fixed port (so it can be
restarted on the same address), one ingestor (`python -m lf_dataplane`) and runtimes (`python -m lf_runtime`)
started per test on a test handler whose every attempt is appended to a JSON-lines log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.routes import FunctionRoute, encode_route
from lf_core.contract.subjects import ROUTES_BUCKET, function_route_key

from tests.processes import start_ingestor_process, stop_process
from tests.waiting import wait_for as wait_until

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
class Proc:
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        stop_process(self.process, sig, timeout)


@dataclass
class AsyncPlatform:
    broker: NatsServer
    ingestor: Proc
    port: int
    tmp: Path
    runtimes: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_function(self, *, timeout: str = "5s", env: dict[str, str] | None = None, replicas: int = 1) -> Function:
        name = f"a-{uuid.uuid4().hex[:8]}"
        folder = self.tmp / name
        folder.mkdir()
        (folder / "handler.py").write_text(HANDLER)
        calls = folder / "calls.jsonl"
        calls.touch()
        fn = Function(name, folder, calls, self, timeout, env or {})
        asyncio.run(_put_route(self.broker.url, FunctionRoute(
            namespace="default", name=name, timeout_ms=int(float(timeout.rstrip("s")) * 1000),
            max_request_bytes=1 << 20, max_response_bytes=1 << 20,
        )))  # fmt: skip
        for _ in range(replicas):
            fn.start_replica()
        wait_until(lambda: httpx.get(f"{self.url}/function/{name}/ok").status_code == 200, 20, "the route")
        for replica in fn.replicas:
            wait_until(lambda r=replica: "async_ready" in r.logs(), 20, "async_ready")
        return fn


@dataclass
class Function:
    name: str
    folder: Path
    calls_log: Path
    platform: AsyncPlatform
    timeout: str
    env: dict[str, str]
    replicas: list[Proc] = field(default_factory=list)

    def start_replica(self) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
        env.update(
            LF_FUNCTION=self.name, LF_FUNCTION_DIR=str(self.folder), LF_NATS_URL=self.platform.broker.url,
            LF_TIMEOUT=self.timeout, LF_ASYNC_BACKOFF="0.3s", LF_ASYNC_ACK_GRACE="1s", LF_CALLBACK_ALLOW_PRIVATE="true",
            LF_CONCURRENCY="8", LF_DRAIN_TIMEOUT="5s", ASYNC_LOG=str(self.calls_log), PYTHONUNBUFFERED="1",
        )  # fmt: skip
        env.update(self.env)
        log = self.folder / f"replica-{len(self.replicas)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "lf_runtime"], env=env, stdout=sink, stderr=sink)
        proc = Proc(process, log)
        self.replicas.append(proc)
        self.platform.runtimes.append(proc)
        wait_until(lambda: '"ready"' in proc.logs() or process.poll() is not None, 20, "runtime ready")
        assert process.poll() is None, proc.logs()
        return proc

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


async def _put_route(url: str, route: FunctionRoute) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            kv = await js.key_value(ROUTES_BUCKET)
        except Exception:
            kv = await js.create_key_value(bucket=ROUTES_BUCKET, history=1)
        await kv.put(function_route_key(route.namespace, route.name), encode_route(route))
    finally:
        await nc.close()


def start_ingestor(nats_url: str, log: Path, port: int, **env: str) -> Proc:
    env = {"LF_DRAIN_TIMEOUT": "10s", "LF_CALLBACK_ALLOW_PRIVATE": "true", **env}
    return Proc(start_ingestor_process(nats_url, log, port, env), log)


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
