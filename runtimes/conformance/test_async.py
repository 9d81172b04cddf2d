"""The async contract (docs/protocol.md, "Async calls"), the same for every runtime: through the real ingestor and
NATS with JetStream, a call is accepted (202), pulled by the function's replica from LF_ASYNC, and its record in
LF_RESULTS tells the outcome; retries, dead letters, a replica killed mid-call and a draining replica behave
alike whatever the runtime.

Each runtime gets its own function here (`conformance-{runtime}-async`, the conformance function with a 0.3 s
backoff and a 1 s ack grace, so retries and redeliveries take seconds), with its own replica, because these cases
kill and restart it. Runs are counted by the function itself: a path under `/runs/` appends a line (call id,
pid, time) to the file named by the `X-Runs-Log` header, then behaves as the rest of the path.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from conformance_harness import RUNTIMES, Replica, launch, load_function, route
from lf_controlplane.natsserver import NatsServer, free_port
from lf_core.asynccalls import deadletters
from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.contract.specs import Function

from tests.harness.waiting import wait_for

pytestmark = pytest.mark.conformance

# Runtimes whose replicas do not pull async calls yet: expected to fail, strictly (remove the entry with the
# runtime's async worker).
NOT_YET: dict[str, str] = {}
PARAMS = [
    pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[r])) if r in NOT_YET else r for r in RUNTIMES
]

BACKOFF_S = 0.3
ACK_GRACE_S = 1.0
TIMEOUT_S = 2.0  # the conformance function's timeout (function.yaml)


@dataclass
class AsyncFunction:
    function: Function
    argv: list[str]
    env: dict[str, str]
    base_url: str
    nats_url: str
    tmp: Path
    replica: Replica = field(init=False)  # set by start_replica
    metrics_url: str = field(init=False)  # the last spawned replica's /metrics

    @property
    def name(self) -> str:
        return self.function.name

    def spawn(self) -> Replica:
        """Another replica of the function (serving /metrics), pulling once it logged `async_ready`."""
        port = free_port()
        env = {**self.env, "LF_METRICS_PORT": str(port), "LF_METRICS_HOST": "127.0.0.1"}
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        replica = Replica(self.function.runtime, self.function, self.argv, env, self.base_url)
        replica.start()
        wait_for(lambda: any('"async_ready"' in line for line in replica.log), 30, f"{self.name}: async_ready")
        return replica

    def start_replica(self) -> Replica:
        self.replica = self.spawn()
        return self.replica

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


@pytest.fixture(scope="module", params=PARAMS)
def async_fn(
    request: pytest.FixtureRequest,
    ingestor: str,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AsyncFunction]:
    runtime: str = request.param
    base = load_function(runtime)
    function = msgspec.structs.replace(
        base,
        name=f"{base.name}-async",
        env={
            **base.env,
            "LF_ASYNC_ACK_GRACE": f"{ACK_GRACE_S:g}s",
            "LF_STUCK_LIMIT": "20",
            "LF_CALLBACK_ALLOW_PRIVATE": "true",
        },
        async_=msgspec.structs.replace(base.async_, backoff_s=BACKOFF_S),
    )
    state = tmp_path_factory.mktemp(f"async-{runtime}")
    argv, env = launch(runtime, function, state, nats_server.url)
    route(nats_server.url, ingestor, function)
    fn = AsyncFunction(function, argv, env, ingestor, nats_server.url, state)
    fn.start_replica()
    try:
        yield fn
    finally:
        fn.replica.stop()


def test_202_then_the_result(async_fn: AsyncFunction) -> None:
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
    assert len(runs(log, call_id)) == 1


def test_an_async_handler_has_its_calls_context_and_output(async_fn: AsyncFunction) -> None:
    """The handler of an async call gets the same per-call context as a sync one (Go: lf.Stdout(ctx) writes
    through the call's context, which an async call once lacked: a nil-context panic, retried to dead)."""
    log = async_fn.runs_log()
    call_id = async_fn.submit("print/async", log).headers["x-call-id"]
    done = async_fn.wait_status(call_id, ("succeeded", "dead"))
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and len(runs(log, call_id)) == 1


def test_the_stored_record_is_the_python_runtime_s(async_fn: AsyncFunction) -> None:
    # The record in LF_RESULTS is written by the runtime; every reader (ingestor, lf dlq, another runtime's CAS)
    # decodes it with msgspec and writes it back the same way: it must be that encoding, byte for byte.
    log = async_fn.runs_log()
    call_id = async_fn.submit("status/201", log).headers["x-call-id"]
    async_fn.wait_status(call_id, ("succeeded",))

    async def stored() -> bytes:
        nc = await nats.connect(async_fn.nats_url)
        try:
            found = await jetstream.kv_get(jetstream.nats_py_requester(nc), js.RESULTS_BUCKET, call_id)
        finally:
            await nc.close()
        assert found is not None
        return found[0]

    raw = asyncio.run(stored())
    record = js.decode_record(raw)
    assert js.encode_record(record) == raw
    assert record.status == "succeeded" and record.result is not None and record.result.status == 201
    assert record.worker.endswith(f":{async_fn.replica.process.pid}")  # type: ignore[union-attr]


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


def test_the_async_counters_of_the_replicas_metrics(async_fn: AsyncFunction) -> None:
    """Every runtime counts its async work on /metrics like the Python one: attempts run, retries scheduled,
    calls dead-lettered, and the consumer's pending count back to 0."""
    from prometheus_client.parser import text_string_to_metric_families

    def counters() -> dict[str, float]:
        text = httpx.get(async_fn.metrics_url, timeout=5).text
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("litefunctions_async_")
        }

    log = async_fn.runs_log()
    before = counters()
    failing = async_fn.submit("status/500", log).headers["x-call-id"]
    refused = async_fn.submit("status/400", log).headers["x-call-id"]
    fine = async_fn.submit("echo", log).headers["x-call-id"]
    async_fn.wait_status(failing, ("dead",))
    async_fn.wait_status(refused, ("dead",))
    async_fn.wait_status(fine, ("succeeded",))
    after = counters()
    delta = {name.removesuffix("_total"): after[name] - before.get(name, 0) for name in after}
    assert delta["litefunctions_async_runs"] == 3 + 1 + 1, delta
    assert delta["litefunctions_async_retries"] == 2, delta
    assert delta["litefunctions_async_dead"] == 2, delta
    assert delta["litefunctions_async_zombie_results_dropped"] == 0, delta
    assert after["litefunctions_async_pending"] == 0


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


def test_callback_is_posted_with_retries(async_fn: AsyncFunction) -> None:
    received: list[tuple[bytes, str | None, str | None]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((body, self.headers.get("x-call-id"), self.headers.get("content-type")))
            self.send_response(500 if len(received) == 1 else 200)  # the first delivery fails
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook?x=1"
        log = async_fn.runs_log()
        call_id = async_fn.submit("echo", log, b"cb", {"X-Callback-Url": url}).headers["x-call-id"]
        wait_for(lambda: async_fn.status(call_id).get("callback") == "delivered", 20, "callback: delivered")
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 2 and all(r[1:] == (call_id, "application/json") for r in received)
    # the body is the record view as GET /invocations/{id} answers it, from before the delivery was recorded
    view = httpx.get(f"{async_fn.base_url}/invocations/{call_id}", timeout=10).content
    assert received[-1][0] == view.replace(b'"callback":"delivered"', b'"callback":"pending"')
    assert json.loads(received[-1][0])["result"]["body"] == "cb"


def test_a_zombie_paused_past_the_ack_wait_stores_no_second_result(async_fn: AsyncFunction) -> None:
    second = async_fn.spawn()
    try:
        log = async_fn.runs_log()
        call_id = async_fn.submit("sleep/1000", log).headers["x-call-id"]
        first = wait_for(lambda: runs(log, call_id), 10, "the first run")[0]
        replicas = {r.process.pid: r for r in (async_fn.replica, second) if r.process is not None}
        zombie = replicas[first["pid"]]
        (other_pid,) = set(replicas) - {first["pid"]}
        os.kill(first["pid"], signal.SIGSTOP)
        try:  # redelivered to the other replica after the ack wait (timeout + grace)
            done = async_fn.wait_status(call_id, ("succeeded",), timeout=20)
        finally:
            os.kill(first["pid"], signal.SIGCONT)
        assert done["attempts"] == 2
        assert [r["pid"] for r in runs(log, call_id)] == [first["pid"], other_pid]
        wait_for(lambda: any("async_stale_result_dropped" in line for line in zombie.log), 15, "the zombie's drop")
        assert async_fn.status(call_id) == done
    finally:
        second.stop()


def test_kill_9_mid_call_is_redelivered_and_stored_once(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    call_id = async_fn.submit("sleep/1500", log).headers["x-call-id"]
    first = wait_for(lambda: runs(log, call_id), 10, "the first run")[0]
    victim = async_fn.replica
    assert victim.process is not None and first["pid"] == victim.process.pid
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    victim.stop()
    replacement = async_fn.start_replica()
    assert replacement.process is not None
    done = async_fn.wait_status(call_id, ("succeeded",), timeout=30)  # after the ack wait (timeout + grace)
    attempts = runs(log, call_id)
    assert [a["pid"] for a in attempts] == [victim.process.pid, replacement.process.pid]
    assert done["attempts"] == 2 and done["result"]["status"] == 200
    time.sleep(TIMEOUT_S + ACK_GRACE_S)  # one more ack wait: nothing runs or moves it again
    assert async_fn.status(call_id) == done
    assert len(runs(log, call_id)) == 2
    assert [d for d in async_fn.dead_letters() if d.call_id == call_id] == []


def test_sigterm_finishes_the_call_in_flight_and_loses_nothing(async_fn: AsyncFunction) -> None:
    log = async_fn.runs_log()
    in_flight = async_fn.submit("sleep/1000", log).headers["x-call-id"]
    wait_for(lambda: runs(log, in_flight), 10, "the call to start")
    draining = async_fn.replica
    assert draining.process is not None
    draining.process.send_signal(signal.SIGTERM)
    later = [async_fn.submit("echo", log, f"later {i}".encode()).headers["x-call-id"] for i in range(3)]
    assert draining.stop() == 0
    done = async_fn.status(in_flight)  # stored and acked before the replica exited
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert [r["pid"] for r in runs(log, in_flight)] == [draining.process.pid]
    async_fn.start_replica()
    for i, call_id in enumerate(later):
        result = async_fn.wait_status(call_id, ("succeeded",))["result"]
        assert result["body"] == f"later {i}"
        assert len(runs(log, call_id)) == 1
    time.sleep(TIMEOUT_S + ACK_GRACE_S)  # an unacked delivery of the drained call would be back by now
    assert len(runs(log, in_flight)) == 1
