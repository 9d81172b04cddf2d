"""The async contract (docs/protocol.md, "Async calls") through the dispatcher, the same for every runtime: a call
is accepted by the real ingestor (202) into LF_ASYNC, the suite's one dispatcher (`python -m lf_dispatcher`, the
`dispatcher` fixture) pulls it and invokes the function's replica over `lf.invoke.{ns}.{fn}` exactly as a sync call
is invoked, and the call's record in LF_RESULTS tells the outcome. The runtimes speak the sync protocol only; what
this proves is that each one's answers (a status, a handler error, a timeout) drive the dispatcher's success,
retries and dead letters alike. Faults of the dispatcher itself (zombies, kills, broker restarts, callbacks) are
tests/integration/async's.

Each runtime gets its own function here (`conformance-{runtime}-async`, the conformance function with a 0.3 s
backoff, so retries take a second), with its own replica. Runs are counted by the function itself: a path under
`/runs/` appends a line (call id, pid, time) to the file named by the `X-Runs-Log` header, then behaves as the
rest of the path.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from conformance_harness import RUNTIMES, Replica, launch, load_function, route
from lf_controlplane.natsserver import NatsServer
from lf_core.asynccalls import deadletters
from lf_core.bus import jetstream
from lf_core.contract.specs import Function

from tests.harness.dispatcher import Dispatcher
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.conformance

BACKOFF_S = 0.3
TIMEOUT_S = 2.0  # the conformance function's timeout (function.yaml)


@dataclass
class AsyncFunction:
    function: Function
    replica: Replica
    base_url: str
    nats_url: str
    tmp: Path

    @property
    def name(self) -> str:
        return self.function.name

    def runs_log(self) -> Path:
        log = self.tmp / f"runs-{uuid.uuid4().hex[:8]}.jsonl"
        log.touch()
        return log

    def submit(self, path: str, log: Path, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        response = httpx.post(
            f"{self.base_url}/async-function/{self.name}/runs/{path}",
            content=body,
            headers={"X-Runs-Log": str(log), **(headers or {})},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response

    def status(self, call_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/invocations/{call_id}", timeout=10)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def wait_status(self, call_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
        view: dict[str, Any] = wait_for(
            lambda: (s := self.status(call_id))["status"] in statuses and s, timeout, f"{call_id} in {statuses}"
        )
        return view

    def dead_letters(self) -> list[deadletters.DeadLetter]:
        async def run() -> list[deadletters.DeadLetter]:
            nc = await nats.connect(self.nats_url)
            try:
                return await deadletters.list_letters(jetstream.nats_py_requester(nc), function=self.name)
            finally:
                await nc.close()

        return asyncio.run(run())


def runs(log: Path, call_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["call"] == call_id]


@pytest.fixture(scope="module", params=RUNTIMES)
def async_fn(
    request: pytest.FixtureRequest,
    ingestor: str,
    dispatcher: Dispatcher,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AsyncFunction]:
    runtime: str = request.param
    base = load_function(runtime)
    function = msgspec.structs.replace(
        base,
        name=f"{base.name}-async",
        env={**base.env, "LF_STUCK_LIMIT": "20"},  # the timeout case leaves sync handlers sleeping past it
        async_=msgspec.structs.replace(base.async_, backoff_s=BACKOFF_S),
    )
    state = tmp_path_factory.mktemp(f"async-{runtime}")
    argv, env = launch(runtime, function, state, nats_server.url)
    replica = Replica(runtime, function, argv, env, ingestor)
    replica.start()
    try:
        route(nats_server.url, ingestor, function)
        dispatcher.wait_for("async_ready", 30, consumer=f"{function.namespace}_{function.name}")
        yield AsyncFunction(function, replica, ingestor, nats_server.url, state)
    finally:
        replica.stop()


def test_202_then_the_result_from_the_functions_replica(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    response = async_fn.submit("echo", log, b"hello async", {"Content-Type": "text/plain", "X-Echo": "a"})
    call_id = response.headers["x-call-id"]
    assert response.json()["callId"] == call_id and response.json()["status"] == "queued"
    assert response.headers["location"] == f"/invocations/{call_id}"
    done = async_fn.wait_status(call_id, ("succeeded",))
    assert done["attempts"] == 1 and done["function"] == async_fn.name and done["namespace"] == "default"
    result = done["result"]
    assert (result["status"], result["body"]) == (200, "hello async")
    assert ["x-echo", "a"] in result["headers"] and ["content-type", "text/plain"] in result["headers"]
    assert done["submittedAt"] <= done["updatedAt"]
    assert [run["pid"] for run in runs(log, call_id)] == [async_fn.replica.process.pid]  # type: ignore[union-attr]


def test_one_idempotency_key_one_run(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    key = f"order-{uuid.uuid4().hex}"
    ids = {async_fn.submit("echo", log, b"once", {"Idempotency-Key": key}).headers["x-call-id"] for _ in range(3)}
    assert len(ids) == 1
    call_id = ids.pop()
    async_fn.wait_status(call_id, ("succeeded",))
    late = async_fn.submit("echo", log, b"once", {"Idempotency-Key": key})
    assert late.headers["x-call-id"] == call_id and late.json().get("duplicate") is True
    sentinel = async_fn.submit("echo", log).headers["x-call-id"]  # submitted after: done after any duplicate
    async_fn.wait_status(sentinel, ("succeeded",))
    assert len(runs(log, call_id)) == 1


def test_a_failed_attempt_is_retried_after_the_backoff_and_succeeds(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    marker = async_fn.tmp / f"flaky-{uuid.uuid4().hex[:8]}"  # the function answers 503 while it creates it
    call_id = async_fn.submit("flaky", log, headers={"X-Flaky": str(marker)}).headers["x-call-id"]
    done = async_fn.wait_status(call_id, ("succeeded", "dead"))
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert (done["result"]["status"], done["result"]["body"]) == (200, "recovered")
    assert marker.exists() and "lastError" not in done
    times = [run["t"] for run in runs(log, call_id)]
    assert len(times) == 2 and times[1] - times[0] >= BACKOFF_S, times


def test_handler_500_is_retried_max_attempts_with_backoff_then_dead(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    call_id = async_fn.submit("status/500", log).headers["x-call-id"]
    dead = async_fn.wait_status(call_id, ("dead",))
    assert dead["attempts"] == 3 and dead["result"]["status"] == 500
    assert "on the last of 3 attempts" in dead["lastError"]
    times = [run["t"] for run in runs(log, call_id)]
    assert len(times) == 3
    assert times[1] - times[0] >= BACKOFF_S and times[2] - times[1] >= 2 * BACKOFF_S, times
    letters = wait_for(lambda: [d for d in async_fn.dead_letters() if d.call_id == call_id], 10, "the dead letter")
    assert [(d.attempts, d.status, d.method, d.path) for d in letters] == [(3, 500, "POST", "/runs/status/500")]
    assert "on the last of 3 attempts" in letters[0].error


def test_handler_error_is_retried_like_a_500(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    call_id = async_fn.submit("error", log).headers["x-call-id"]
    dead = async_fn.wait_status(call_id, ("dead",))
    assert dead["attempts"] == 3 and dead["result"]["status"] == 500 and "conformance failure" in dead["lastError"]
    assert len(runs(log, call_id)) == 3


def test_400_is_one_attempt_then_dead(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    call_id = async_fn.submit("status/400", log).headers["x-call-id"]
    dead = async_fn.wait_status(call_id, ("dead",))
    assert dead["attempts"] == 1 and dead["result"]["status"] == 400
    assert "not retryable" in dead["lastError"]
    letters = wait_for(lambda: [d for d in async_fn.dead_letters() if d.call_id == call_id], 10, "the dead letter")
    assert [(d.attempts, d.status) for d in letters] == [(1, 400)]
    sentinel = async_fn.submit("echo", log).headers["x-call-id"]  # a retry would have started by now
    async_fn.wait_status(sentinel, ("succeeded",))
    time.sleep(2 * BACKOFF_S)
    assert len(runs(log, call_id)) == 1


def test_timeout_is_retried(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    call_id = async_fn.submit(f"sleep/{int(TIMEOUT_S * 1000) + 500}", log).headers["x-call-id"]
    dead = async_fn.wait_status(call_id, ("dead",), timeout=40)
    assert dead["attempts"] == 3 and dead["result"]["status"] == 504
    assert len(runs(log, call_id)) == 3
