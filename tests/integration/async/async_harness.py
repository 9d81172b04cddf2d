"""Helpers of the async integration tests: one nats-server with file storage on a fixed port (so it can be
restarted on the same address), one ingestor, two dispatchers and Python runtimes (all started with tests/harness)
per module, on a test handler whose every attempt is appended to a JSON-lines log. Runtimes speak the sync
protocol only; the dispatchers pull each function's calls, invoke it, record, retry and dead-letter."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.specs import AsyncRule

from tests.harness.dispatcher import Dispatcher, start_dispatcher
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

ACK_GRACE = "1s"
BACKOFF_S = 0.3


@dataclass
class AsyncPlatform:
    broker: NatsServer
    ingestor: Ingestor
    tmp: Path
    dispatchers: list[Dispatcher] = field(default_factory=list)
    runtimes: list[RuntimeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.ingestor.url

    def start_dispatcher(self, **env: str) -> Dispatcher:
        n = len(self.dispatchers)
        dispatcher = start_async_dispatcher(self.broker.url, self.tmp / f"dispatcher-{n}.log", self.tmp, **env)
        self.dispatchers.append(dispatcher)
        return dispatcher

    @property
    def live_dispatchers(self) -> list[Dispatcher]:
        return [d for d in self.dispatchers if d.process.poll() is None]

    def add_function(
        self,
        *,
        timeout: str = "5s",
        env: dict[str, str] | None = None,
        replicas: int = 1,
        concurrency: int = 8,
        max_concurrency: int | None = None,
    ) -> Function:
        name = f"a-{uuid.uuid4().hex[:8]}"
        folder = self.tmp / name
        folder.mkdir()
        (folder / "handler.py").write_text(HANDLER)
        calls = folder / "calls.jsonl"
        calls.touch()
        fn = Function(name, folder, calls, self, timeout, {"LF_CONCURRENCY": str(concurrency), **(env or {})})
        timeout_ms = int(float(timeout.rstrip("s")) * 1000)
        route = msgspec.structs.replace(
            function_route(name, timeout_ms=timeout_ms, max_response_bytes=1 << 20),
            concurrency=concurrency,
            replicas=replicas,
            async_rule=AsyncRule(max_attempts=3, backoff_s=BACKOFF_S, max_concurrency=max_concurrency),
        )
        put_routes(self.broker.url, route)
        for _ in range(replicas):
            fn.start_replica()
        wait_until(lambda: httpx.get(f"{self.url}/function/{name}/ok").status_code == 200, 20, "the route")
        for dispatcher in self.live_dispatchers:
            dispatcher.wait_for("async_ready", 20, consumer=f"default_{name}")
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
        env = {"LF_DRAIN_TIMEOUT": "5s", "ASYNC_LOG": str(self.calls_log), "PYTHONUNBUFFERED": "1", **self.env}
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


def start_async_dispatcher(nats_url: str, log: Path, tmp: Path, **env: str) -> Dispatcher:
    """A dispatcher as this suite runs it: a 1 s ack grace, callbacks to loopback allowed and signed with keys in
    `tmp`, a short drain."""
    settings = {
        "LF_ASYNC_ACK_GRACE": ACK_GRACE, "LF_CALLBACK_ALLOW_PRIVATE": "true", "LF_DRAIN_TIMEOUT": "5s",
        "LF_CALLBACK_KEYS_DIR": str(tmp / "callback-keys"), "LF_CALLBACK_BACKOFF": "0.2s", **env,
    }  # fmt: skip
    return start_dispatcher(nats_url, log, **settings)


def _on_broker(platform: AsyncPlatform, work: Any) -> Any:
    from lf_core.bus import jetstream

    async def run() -> Any:
        nc = await nats.connect(platform.broker.url)
        try:
            return await work(jetstream.nats_py_requester(nc))
        finally:
            await nc.close()

    return asyncio.run(run())


def dead_letters(platform: AsyncPlatform, function: str) -> list[Any]:
    from lf_core.asynccalls import deadletters

    return _on_broker(platform, lambda request: deadletters.list_letters(request, function=function))  # type: ignore[no-any-return]


def redrive(platform: AsyncPlatform, call_id: str) -> None:
    from lf_core.asynccalls import deadletters

    _on_broker(platform, lambda request: deadletters.redrive(request, call_id))


def record_of(platform: AsyncPlatform, call_id: str) -> Any:
    """The call's record as stored (with `worker`: which dispatcher moved it last), or None."""
    from lf_core.asynccalls import streams as js
    from lf_core.bus import jetstream

    async def get(request: Any) -> Any:
        found = await jetstream.kv_get(request, js.RESULTS_BUCKET, call_id)
        return js.decode_record(found[0]) if found is not None else None

    return _on_broker(platform, get)


def holder(platform: AsyncPlatform, call_id: str) -> Dispatcher:
    """The dispatcher running `call_id` now (the pid in its record's `worker`)."""
    record = wait_until(
        lambda: (r := record_of(platform, call_id)) is not None and r.status == "running" and r, 10, "running"
    )
    pid = int(record.worker.rpartition(":")[2])
    return next(d for d in platform.dispatchers if d.pid == pid)
