"""The Python runtime's async counters end to end (issue #4): a real nats-server (JetStream), the real ingestor
and replicas with LF_METRICS_PORT, real faults (500 retried to maxAttempts then dead, 400 dead at once, a zombie
paused past its ack wait), and each replica's /metrics read for the exact counts of what it did."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from async_harness import AsyncPlatform, Function, wait_until
from lf_controlplane.natsserver import free_port
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.runtime import RuntimeProcess

pytestmark = pytest.mark.integration

COUNTERS = ("runs", "retries", "dead", "zombie_results_dropped")


def scrape(port: int) -> dict[str, float]:
    """The replica's async counters and pending gauge (one function per replica: labels dropped, then checked)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).raise_for_status().text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("litefunctions_async_"):
                assert s.labels["namespace"] == "default"
                out[s.name.removeprefix("litefunctions_async_").removesuffix("_total")] = s.value
    return out


def counts(port: int) -> tuple[float, ...]:
    got = scrape(port)
    return (*(got[name] for name in COUNTERS), got["pending"])


def metrics_replica(fn: Function) -> tuple[RuntimeProcess, int]:
    """One more replica of `fn`, with its own metrics port, pulling once it is ready."""
    port = free_port()
    fn.env["LF_METRICS_PORT"] = str(port)
    replica = fn.start_replica()
    replica.wait_for("async_ready", 20)
    return replica, port


def test_runs_retries_dead_letters_and_pending_are_counted_exactly(platform: AsyncPlatform) -> None:
    port = free_port()
    fn = platform.add_function(env={"LF_METRICS_PORT": str(port), "LF_ASYNC_CONCURRENCY": "1"})  # 3 attempts
    assert counts(port) == (0, 0, 0, 0, 0)

    # three calls queued behind one slot: the second is pulled with one more behind it
    ids = [fn.submit("sleep1").headers["x-call-id"] for _ in range(3)]
    wait_until(lambda: any(a["call"] == ids[1] for a in fn.attempts()), 15, "the second call running")
    assert counts(port) == (2, 0, 0, 0, 1)
    for call_id in ids:
        fn.wait_status(call_id, ("succeeded",))
    assert counts(port) == (3, 0, 0, 0, 0)

    # 500 every time: retried to maxAttempts (2 NAKs with backoff), then dead-lettered
    failing = fn.submit("fail").headers["x-call-id"]
    assert fn.wait_status(failing, ("dead",))["attempts"] == 3
    wait_until(lambda: counts(port) == (6, 2, 1, 0, 0), 10, "3 runs, 2 retries, 1 dead")

    # 400: not retryable, dead after its one attempt
    refused = fn.submit("bad").headers["x-call-id"]
    assert fn.wait_status(refused, ("dead",))["attempts"] == 1
    wait_until(lambda: counts(port) == (7, 2, 2, 0, 0), 10, "1 run, 1 more dead")
    async_calls = {*ids, failing, refused}
    assert len([a for a in fn.attempts() if a["call"] in async_calls]) == 7  # what the handler saw, counted
    assert counts(port) == (7, 2, 2, 0, 0)


def test_zombie_result_dropped_is_counted_on_the_zombie_only(platform: AsyncPlatform) -> None:
    first_port = free_port()
    # ack wait 2 s + 1 s grace; one call at a time, so the paused replica holds no pull the redelivery could take
    fn = platform.add_function(timeout="2s", env={"LF_METRICS_PORT": str(first_port), "LF_ASYNC_CONCURRENCY": "1"})
    _second, second_port = metrics_replica(fn)
    ports = {fn.replicas[0].process.pid: first_port, fn.replicas[1].process.pid: second_port}
    assert [counts(p) for p in ports.values()] == [(0, 0, 0, 0, 0)] * 2

    call_id = fn.submit("sleep1").headers["x-call-id"]
    first = wait_until(lambda: [a for a in fn.attempts() if a["call"] == call_id], 10, "the first attempt")[0]
    zombie = next(r for r in fn.replicas if r.process.pid == first["pid"])
    other = next(r for r in fn.replicas if r is not zombie)
    os.kill(zombie.process.pid, signal.SIGSTOP)
    try:
        done = fn.wait_status(call_id, ("succeeded",), timeout=20)  # redelivered to the other replica
    finally:
        os.kill(zombie.process.pid, signal.SIGCONT)
    assert str(other.process.pid) in done["result"]["body"]
    zombie_port, other_port = ports[zombie.process.pid], ports[other.process.pid]
    wait_until(lambda: counts(zombie_port)[3] == 1, 15, "the zombie to count its dropped result")
    assert counts(zombie_port) == (1, 0, 0, 1, 0)  # it ran the call, stored nothing, acked nothing
    assert counts(other_port) == (1, 0, 0, 0, 0)
    assert fn.status(call_id)["updatedAt"] == done["updatedAt"]
