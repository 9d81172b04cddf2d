"""The Python runtime against a real nats-server: answers, errors, deadlines, limits, restarts and drain."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import nats.errors
import pytest
from lf_core.contract.protocol import ErrorKind
from nats.aio.client import Client
from runtime_harness import Start, call

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_return_values(start_runtime: Start, nc: Client, is_async: bool) -> None:
    runtime = start_runtime(is_async=is_async)
    fn = runtime.function

    text = await call(nc, fn, "/text")
    assert (text.status, text.error_kind, text.body) == (200, ErrorKind.NONE, b"hello")
    assert text.headers == [("content-type", "text/plain; charset=utf-8")]

    raw = await call(nc, fn, "/bytes")
    assert (raw.status, raw.body, raw.headers) == (200, b"\x00\x01", [("content-type", "application/octet-stream")])

    data = await call(
        nc, fn, "/dict", query="a=1&a=2&b=x", headers=[("X-A", "v")], body="é".encode(), params=[("id", "7")]
    )
    assert (data.status, data.headers) == (200, [("content-type", "application/json")])
    assert json.loads(data.body) == {"query": {"a": "1", "b": "x"}, "x_a": "v", "body": "é", "params": {"id": "7"}}

    none = await call(nc, fn, "/none")
    assert (none.status, none.body, none.headers) == (204, b"", [])

    made = await call(nc, fn, "/response")
    assert (made.status, made.body) == (201, b"made")
    assert made.headers == [("x-b", "1"), ("x-b", "2"), ("content-type", "text/x")]


async def test_call_id_and_duration_are_reported(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime()
    answer = await call(nc, runtime.function, "/text", call_id="my-call-1")
    assert answer.call_id == "my-call-1"
    assert 0 < answer.duration_ns < 1_000_000_000


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_exception_is_a_500_and_the_next_call_works(start_runtime: Start, nc: Client, is_async: bool) -> None:
    runtime = start_runtime(is_async=is_async)
    failed = await call(nc, runtime.function, "/raise", call_id="failing-call")
    assert (failed.status, failed.error_kind, failed.error) == (500, ErrorKind.HANDLER, "ValueError: boom")
    assert b"Traceback" not in failed.body and "Traceback" not in failed.error
    logged = runtime.wait_for("call_failed")
    assert logged["call_id"] == "failing-call"
    assert 'raise ValueError("boom")' in logged["traceback"]
    assert (await call(nc, runtime.function, "/text")).status == 200


async def test_unsupported_return_value_is_internal(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime()
    answer = await call(nc, runtime.function, "/bad-return")
    assert (answer.status, answer.error_kind) == (502, ErrorKind.INTERNAL)
    assert "handler returned int" in answer.error


async def test_unreadable_json_body_is_a_400(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime()
    answer = await call(nc, runtime.function, "/json", body=b"{not json")
    assert (answer.status, answer.error_kind) == (400, ErrorKind.NONE)
    assert "not valid JSON" in json.loads(answer.body)["error"]["message"]
    assert (await call(nc, runtime.function, "/json", body=b"[1]")).body == b"[1]"


async def test_response_over_the_limit(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(env={"LF_MAX_RESPONSE_BYTES": "100"})
    assert (await call(nc, runtime.function, "/big", query="n=100")).status == 200
    too_large = await call(nc, runtime.function, "/big", query="n=101")
    assert (too_large.status, too_large.error_kind) == (502, ErrorKind.RESPONSE_TOO_LARGE)
    assert "101 bytes" in too_large.error


async def test_garbage_envelope_is_a_bad_request(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime()
    msg = await nc.request(f"lf.invoke.default.{runtime.function}", b"GET / HTTP/1.1\r\n\r\n", timeout=5)
    from lf_native import decode_response

    answer = decode_response(msg.data)
    assert (answer.status, answer.error_kind) == (502, ErrorKind.BAD_REQUEST)
    assert "envelope" in answer.error
    assert (await call(nc, runtime.function, "/text")).status == 200


async def test_cold_start_only_on_the_first_call(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime()
    flags = [(await call(nc, runtime.function, "/text")).cold_start for _ in range(3)]
    assert flags == [True, False, False]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_timeout_answers_before_the_budget_ends(start_runtime: Start, nc: Client, is_async: bool) -> None:
    runtime = start_runtime(is_async=is_async)
    budget_ms = 1000  # the runtime answers 50 ms (its margin) before the budget ends
    began = time.monotonic()
    answer = await call(nc, runtime.function, "/sleep", query="s=5", budget_ms=budget_ms, call_id="slow-call")
    elapsed = time.monotonic() - began
    assert (answer.status, answer.error_kind, answer.call_id) == (504, ErrorKind.TIMEOUT, "slow-call")
    assert 0.9 < elapsed < budget_ms / 1000, "the runtime's 504 must arrive before the caller's deadline"
    assert (await call(nc, runtime.function, "/text")).status == 200, "the runtime keeps serving"
    if is_async:
        # Cancellation is delivered right after the 504 is sent; the handler notes it in a file.
        cancelled = runtime.gate / "cancelled-slow-call"
        for _ in range(500):
            if cancelled.exists():
                break
            await asyncio.sleep(0.01)
        assert cancelled.exists(), "an async handler is cancelled"
    else:
        assert runtime.wait_for("stuck")["call_id"] == "slow-call"


async def test_busy_when_concurrency_and_queue_are_full(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(env={"LF_CONCURRENCY": "1", "LF_QUEUE_DEPTH": "0"})
    held = asyncio.ensure_future(call(nc, runtime.function, "/hold"))
    await asyncio.to_thread(runtime.wait_started, 1)
    began = time.monotonic()
    busy = await call(nc, runtime.function, "/text", budget_ms=5000)
    assert (busy.status, busy.error_kind) == (503, ErrorKind.BUSY)
    assert time.monotonic() - began < 1, "busy is answered at once, not at the deadline"
    runtime.release()
    assert (await held).body == b"released"
    assert (await call(nc, runtime.function, "/text")).status == 200


async def test_queued_calls_wait_for_a_slot(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(env={"LF_CONCURRENCY": "1", "LF_QUEUE_DEPTH": "1"})
    held = asyncio.ensure_future(call(nc, runtime.function, "/hold"))
    await asyncio.to_thread(runtime.wait_started, 1)
    queued = asyncio.ensure_future(call(nc, runtime.function, "/text"))
    await nc.flush()
    # The queue slot is taken once the runtime answers a third call busy; until then retry briefly.
    for _ in range(200):
        third = await call(nc, runtime.function, "/text")
        if third.error_kind == ErrorKind.BUSY:
            break
    assert third.error_kind == ErrorKind.BUSY
    assert not queued.done()
    runtime.release()
    assert (await held).status == 200
    assert (await queued).body == b"hello"


async def test_waiting_in_the_queue_respects_the_deadline(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(env={"LF_CONCURRENCY": "1", "LF_QUEUE_DEPTH": "4"})
    held = asyncio.ensure_future(call(nc, runtime.function, "/hold"))
    await asyncio.to_thread(runtime.wait_started, 1)
    began = time.monotonic()
    # A budget whose margin is the full 50 ms (at 300 ms it is 15 ms: less than scheduling jitter on a busy box).
    queued = await call(nc, runtime.function, "/text", budget_ms=1000)
    assert (queued.status, queued.error_kind) == (504, ErrorKind.TIMEOUT)
    assert time.monotonic() - began < 1.0, "the queued call's 504 must arrive before the caller's deadline"
    runtime.release()
    assert (await held).status == 200


async def test_stuck_sync_handlers_restart_the_replica(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime(env={"LF_CONCURRENCY": "4", "LF_STUCK_LIMIT": "2"})
    fn = runtime.function
    other = asyncio.ensure_future(call(nc, fn, "/hold", budget_ms=30_000))
    await asyncio.to_thread(runtime.wait_started, 1)
    first = await call(nc, fn, "/sleep", query="s=60", budget_ms=200)
    assert first.error_kind == ErrorKind.TIMEOUT
    assert runtime.process.poll() is None, "one stuck handler is below the limit"
    second = await call(nc, fn, "/sleep", query="s=60", budget_ms=200)
    assert second.error_kind == ErrorKind.TIMEOUT
    await asyncio.to_thread(runtime.wait_for, "draining")
    assert runtime.process.poll() is None, "the replica finishes its other calls before it exits"
    runtime.release()
    assert (await other).body == b"released"
    assert await asyncio.to_thread(runtime.exit_code) == 75
    assert [e["stuck"] for e in runtime.named("stuck")] == [1, 2]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_sigterm_finishes_in_flight_calls(start_runtime: Start, nc: Client, is_async: bool) -> None:
    runtime = start_runtime(is_async=is_async, env={"LF_CONCURRENCY": "2", "LF_QUEUE_DEPTH": "2"})
    fn = runtime.function
    in_flight = [asyncio.ensure_future(call(nc, fn, "/hold", call_id=f"held-{i}")) for i in range(4)]
    await asyncio.to_thread(runtime.wait_started, 2)  # two run, two wait in the queue
    runtime.signal(signal.SIGTERM)
    draining = await asyncio.to_thread(runtime.wait_for, "draining")
    assert draining["in_flight"] == 4
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request(f"lf.invoke.default.{fn}", b"", timeout=5)
    runtime.release()
    answers = await asyncio.gather(*in_flight)
    assert [(a.status, a.body) for a in answers] == [(200, b"released")] * 4
    assert sorted(a.call_id for a in answers) == [f"held-{i}" for i in range(4)]
    assert await asyncio.to_thread(runtime.exit_code) == 0
    assert runtime.named("stopped")[0]["exit_code"] == 0


async def test_two_replicas_share_the_load(start_runtime: Start, nc: Client) -> None:
    first = start_runtime()
    second = start_runtime(function=first.function)
    answers = await asyncio.gather(*(call(nc, first.function, "/pid") for _ in range(40)))
    pids = {int(a.body) for a in answers}
    assert pids == {first.process.pid, second.process.pid}


async def test_handler_stdout_is_left_alone(start_runtime: Start, nc: Client) -> None:
    runtime = start_runtime()
    assert (await call(nc, runtime.function, "/print")).body == b"printed"
    runtime.signal(signal.SIGTERM)
    assert await asyncio.to_thread(runtime.exit_code) == 0
    assert "from the handler\n" in runtime.stdout
    assert all(e.get("event") != "raw" for e in runtime.events), "stderr carries only JSON lines"
