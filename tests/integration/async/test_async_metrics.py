"""The dispatcher's async counters end to end (issues 4 and 15): a real nats-server (JetStream), the real ingestor,
two dispatchers with their admin listeners and real replicas, real faults (500 retried to maxAttempts then dead,
400 dead at once, a dispatcher paused past its ack wait), and each dispatcher's /metrics read for the exact counts
of what it did for the function (summed over the dispatchers where the split between them is chance)."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from async_harness import AsyncPlatform, holder, wait_until
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.dispatcher import Dispatcher

pytestmark = pytest.mark.integration

COUNTERS = ("runs", "retries", "dead", "zombie_results_dropped", "busy")


def scrape(dispatcher: Dispatcher, function: str) -> dict[str, float]:
    """The dispatcher's async counters and gauges of `function`."""
    text = httpx.get(dispatcher.metrics_url, timeout=5).raise_for_status().text
    out: dict[str, float] = dict.fromkeys((*COUNTERS, "pending"), 0.0)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("litefunctions_async_") and s.labels.get("function") == function:
                assert s.labels["namespace"] == "default"
                out[s.name.removeprefix("litefunctions_async_").removesuffix("_total")] = s.value
    return out


def counts(dispatcher: Dispatcher, function: str) -> tuple[float, ...]:
    got = scrape(dispatcher, function)
    return tuple(got[name] for name in COUNTERS)


def total(platform: AsyncPlatform, function: str) -> tuple[float, ...]:
    per = [counts(d, function) for d in platform.live_dispatchers]
    return tuple(sum(column) for column in zip(*per, strict=True))


def test_runs_retries_dead_letters_and_pending_are_counted_exactly(platform: AsyncPlatform) -> None:
    fn = platform.add_function(concurrency=1, max_concurrency=1)  # 3 attempts, one call at a time
    assert total(platform, fn.name) == (0, 0, 0, 0, 0)

    # three calls queued behind one slot: the second is pulled with one more behind it
    ids = [fn.submit("sleep1").headers["x-call-id"] for _ in range(3)]
    wait_until(lambda: any(a["call"] == ids[1] for a in fn.attempts()), 15, "the second call running")
    second = holder(platform, ids[1])
    assert scrape(second, fn.name)["pending"] == 1
    for call_id in ids:
        fn.wait_status(call_id, ("succeeded",))
    wait_until(lambda: total(platform, fn.name) == (3, 0, 0, 0, 0), 10, "3 runs")

    # 500 every time: retried to maxAttempts (2 NAKs with backoff), then dead-lettered
    failing = fn.submit("fail").headers["x-call-id"]
    assert fn.wait_status(failing, ("dead",))["attempts"] == 3
    wait_until(lambda: total(platform, fn.name) == (6, 2, 1, 0, 0), 10, "3 runs, 2 retries, 1 dead")

    # 400: not retryable, dead after its one attempt
    refused = fn.submit("bad").headers["x-call-id"]
    assert fn.wait_status(refused, ("dead",))["attempts"] == 1
    wait_until(lambda: total(platform, fn.name) == (7, 2, 2, 0, 0), 10, "1 run, 1 more dead")
    async_calls = {*ids, failing, refused}
    assert len([a for a in fn.attempts() if a["call"] in async_calls]) == 7  # what the handler saw, counted
    assert total(platform, fn.name) == (7, 2, 2, 0, 0)


def test_zombie_result_dropped_is_counted_on_the_zombie_only(platform: AsyncPlatform) -> None:
    # ack wait 2 s + 1 s grace; one call at a time over both dispatchers
    fn = platform.add_function(timeout="2s", concurrency=1, max_concurrency=1)
    call_id = fn.submit("sleep1").headers["x-call-id"]
    zombie = holder(platform, call_id)
    other = next(d for d in platform.live_dispatchers if d is not zombie)
    os.kill(zombie.pid, signal.SIGSTOP)
    try:
        done = fn.wait_status(call_id, ("succeeded",), timeout=20)  # redelivered to the other dispatcher
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    wait_until(lambda: counts(zombie, fn.name)[3] == 1, 15, "the zombie to count its dropped result")
    assert counts(zombie, fn.name) == (1, 0, 0, 1, 0)  # it ran the call, stored nothing, acked nothing
    assert counts(other, fn.name) == (1, 0, 0, 0, 0)
    assert fn.status(call_id)["updatedAt"] == done["updatedAt"]


def test_busy_answers_are_back_pressure_not_attempts(platform: AsyncPlatform) -> None:
    # the route says 8 at once, the one replica takes 1 (and queues none): the rest is answered busy
    fn = platform.add_function(concurrency=8, env={"LF_CONCURRENCY": "1", "LF_QUEUE_DEPTH": "0"})
    ids = [fn.submit("sleep0.2").headers["x-call-id"] for _ in range(6)]
    for call_id in ids:
        done = fn.wait_status(call_id, ("succeeded",), timeout=30)
        assert done["attempts"] == 1  # however often it bounced
    busy = total(platform, fn.name)[4]
    assert busy > 0, "no busy answer: the test did not test anything"
    assert total(platform, fn.name)[:4] == (6, 0, 0, 0)
    assert len([a for a in fn.attempts() if a["call"] in ids]) == 6
