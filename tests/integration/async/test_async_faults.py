"""Async calls under faults (docs/operations.md, "Durability: what survives what"; issues 7 and 15): real
nats-server with file storage, a real ingestor, two real dispatchers sharing each function's consumer, and real
runtimes that speak the sync protocol only."""

from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from async_harness import (
    AsyncPlatform,
    dead_letters,
    holder,
    record_of,
    redrive,
    start_async_ingestor,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_kill_9_mid_call_is_redelivered_and_stored_once(platform: AsyncPlatform) -> None:
    fn = platform.add_function(timeout="3s")
    call_id = fn.submit("sleep1.5").headers["x-call-id"]
    wait_until(lambda: any(a["call"] == call_id for a in fn.attempts()), 10, "the first attempt")
    victim = fn.replicas[0]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    fn.start_replica()
    done = fn.wait_status(call_id, ("succeeded",), timeout=30)
    attempts = [a for a in fn.attempts() if a["call"] == call_id]
    assert len(attempts) == 2
    assert done["attempts"] == 2
    assert done["result"]["status"] == 200
    assert str(attempts[1]["pid"]) in done["result"]["body"]
    assert dead_letters(platform, fn.name) == []


def test_kill_9_a_dispatcher_mid_call_another_finishes_it_once(platform: AsyncPlatform) -> None:
    fn = platform.add_function(timeout="3s")  # ack wait 3 s + 1 s grace
    call_id = fn.submit("sleep1.5").headers["x-call-id"]
    victim = holder(platform, call_id)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    try:
        done = fn.wait_status(call_id, ("succeeded",), timeout=30)  # redelivered to the other dispatcher
        record = record_of(platform, call_id)
        assert int(record.worker.rpartition(":")[2]) != victim.pid
        assert done["attempts"] == 2 and done["result"]["status"] == 200
        attempts = [a for a in fn.attempts() if a["call"] == call_id]
        assert len(attempts) == 2  # the killed dispatcher's attempt ran to its end; its result went nowhere
        assert str(attempts[1]["pid"]) in done["result"]["body"]
        time.sleep(1.0)
        assert fn.status(call_id)["updatedAt"] == done["updatedAt"]  # one result, never rewritten
        assert dead_letters(platform, fn.name) == []
    finally:
        platform.dispatchers.remove(victim)
        platform.start_dispatcher()  # the module's other tests keep two


def test_sigterm_a_dispatcher_mid_call_it_finishes_the_call_then_exits(platform: AsyncPlatform) -> None:
    fn = platform.add_function(timeout="5s")
    call_id = fn.submit("sleep1").headers["x-call-id"]
    draining = holder(platform, call_id)
    draining.process.send_signal(signal.SIGTERM)
    try:
        assert draining.process.wait(15) == 0
        done = fn.status(call_id)  # stored before it exited: no redelivery needed
        assert done["status"] == "succeeded" and done["attempts"] == 1
        assert int(record_of(platform, call_id).worker.rpartition(":")[2]) == draining.pid
        assert len([a for a in fn.attempts() if a["call"] == call_id]) == 1
    finally:
        platform.dispatchers.remove(draining)
        platform.start_dispatcher()


def test_same_idempotency_key_three_times_runs_once(platform: AsyncPlatform) -> None:
    fn = platform.add_function()
    ids = []
    for _ in range(3):
        response = fn.submit("ok", b"once", headers={"Idempotency-Key": "order-42"})
        assert response.status_code == 202, response.text
        ids.append(response.headers["x-call-id"])
    assert len(set(ids)) == 1
    fn.wait_status(ids[0], ("succeeded",))
    time.sleep(1.0)  # a second execution would have started by now
    late = fn.submit("ok", b"once", headers={"Idempotency-Key": "order-42"})
    assert late.headers["x-call-id"] == ids[0] and late.json().get("duplicate") is True
    time.sleep(0.5)
    assert [a["call"] for a in fn.attempts() if a["call"] == ids[0]] == [ids[0]]


def test_always_failing_goes_dead_after_max_attempts_spaced_by_backoff_then_redrive(platform: AsyncPlatform) -> None:
    fn = platform.add_function()  # LF_ASYNC_BACKOFF=0.3s, 3 attempts
    call_id = fn.submit("fail").headers["x-call-id"]
    dead = fn.wait_status(call_id, ("dead",), timeout=30)
    times = [a["t"] for a in fn.attempts() if a["call"] == call_id]
    assert len(times) == 3 and dead["attempts"] == 3
    assert times[1] - times[0] >= 0.3 and times[2] - times[1] >= 0.6, times
    assert dead["result"]["status"] == 500
    letters = wait_until(lambda: dead_letters(platform, fn.name), 10, "the dead letter")
    assert [(d.call_id, d.attempts, d.status) for d in letters] == [(call_id, 3, 500)]
    assert "not" in letters[0].error or "last" in letters[0].error
    redrive(platform, call_id)
    assert dead_letters(platform, fn.name) == []
    wait_until(lambda: len([a for a in fn.attempts() if a["call"] == call_id]) == 6, 30, "three more attempts")
    again = fn.wait_status(call_id, ("dead",), timeout=30)
    assert again["attempts"] == 3
    assert len(dead_letters(platform, fn.name)) == 1


def test_non_retryable_400_is_one_attempt_then_dead(platform: AsyncPlatform) -> None:
    fn = platform.add_function()
    call_id = fn.submit("bad").headers["x-call-id"]
    dead = fn.wait_status(call_id, ("dead",))
    assert dead["attempts"] == 1 and dead["result"]["status"] == 400
    time.sleep(0.8)
    assert len([a for a in fn.attempts() if a["call"] == call_id]) == 1
    assert [d.call_id for d in wait_until(lambda: dead_letters(platform, fn.name), 10, "letter")] == [call_id]


def test_zombie_paused_past_ack_wait_stores_no_second_result(platform: AsyncPlatform) -> None:
    fn = platform.add_function(timeout="2s", replicas=2)  # ack wait 2 s + 1 s grace
    call_id = fn.submit("sleep1").headers["x-call-id"]
    zombie = holder(platform, call_id)
    os.kill(zombie.pid, signal.SIGSTOP)  # a dispatcher paused mid-call, past the ack wait
    try:
        done = fn.wait_status(call_id, ("succeeded",), timeout=20)  # redelivered to the other dispatcher
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    assert done["attempts"] == 2
    assert int(record_of(platform, call_id).worker.rpartition(":")[2]) != zombie.pid
    wait_until(lambda: zombie.events("async_stale_result_dropped"), 15, "the zombie to drop its result")
    after = fn.status(call_id)
    assert after["status"] == "succeeded" and after["attempts"] == 2
    assert after["updatedAt"] == done["updatedAt"]


def test_callback_is_delivered_with_retries(platform: AsyncPlatform) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append({"body": body, "call": self.headers.get("x-call-id")})
            self.send_response(500 if len(received) == 1 else 200)  # the first delivery fails
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fn = platform.add_function()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook?x=1"
        call_id = fn.submit("ok", b"cb", headers={"X-Callback-Url": url}).headers["x-call-id"]
        wait_until(lambda: len(received) >= 2, 20, "two callback deliveries")
        assert all(r["call"] == call_id for r in received)
        assert b'"status":"succeeded"' in received[-1]["body"]
        wait_until(lambda: fn.status(call_id).get("callback") == "delivered", 10, "callback: delivered")
    finally:
        server.shutdown()
        server.server_close()


def test_callback_to_a_private_address_is_refused_unless_allowed(platform: AsyncPlatform, tmp_path: Any) -> None:
    strict = start_async_ingestor(platform.broker.url, tmp_path / "strict.log", LF_CALLBACK_ALLOW_PRIVATE="false")
    try:
        fn = platform.add_function()
        for url in ("http://127.0.0.1:9/x", "http://[::ffff:127.0.0.1]/", "http://2130706433/", "ftp://example.com/"):
            response = httpx.post(f"{strict.url}/async-function/{fn.name}/ok", headers={"X-Callback-Url": url})
            assert response.status_code == 400, (url, response.text)
    finally:
        strict.stop()


def test_cancel_a_queued_call(platform: AsyncPlatform) -> None:
    fn = platform.add_function(concurrency=1, max_concurrency=1)
    blocker = fn.submit("sleep1.5").headers["x-call-id"]
    wait_until(lambda: fn.status(blocker)["status"] == "running", 10, "the blocker to run")
    queued = fn.submit("ok").headers["x-call-id"]
    assert fn.status(queued)["status"] == "queued"
    cancelled = httpx.delete(f"{platform.url}/invocations/{queued}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    fn.wait_status(blocker, ("succeeded",))
    time.sleep(0.5)
    assert fn.status(queued)["status"] == "cancelled"
    assert queued not in [a["call"] for a in fn.attempts()]
    assert httpx.delete(f"{platform.url}/invocations/{blocker}").status_code == 409
