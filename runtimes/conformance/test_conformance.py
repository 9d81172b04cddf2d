"""The runtime conformance suite: every runtime, behind the real ingestor and NATS, answers the same HTTP.

Each case is something a user sees over HTTP (status, JSON error body and its layer, headers, bodies, timing),
except the cold-start flag: it travels in the response envelope and the ingestor does not expose it yet, so
that one case reads the replies off the broker (see `Wiretap`). The functions are in `functions/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import nats
import pytest
from conformance_harness import Replica, Wiretap
from lf_controlplane.natsserver import NatsServer
from lf_core.contract.protocol import ErrorKind
from lf_native import decode_response, encode_request

from tests.harness.waiting import wait_for

pytestmark = pytest.mark.conformance

LIMIT = 1024 * 1024  # the functions' limits.responseBody


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


def test_cold_start_flag_on_the_first_call_only(replica: Replica, wiretap: Wiretap) -> None:
    first, second = replica.first_calls
    deadline = time.monotonic() + 5
    while (wiretap.cold(first) is None or wiretap.cold(second) is None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (wiretap.cold(first), wiretap.cold(second)) == (True, False)


def test_every_answer_carries_call_id_and_duration(replica: Replica) -> None:
    response = httpx.get(replica.url("/inspect"))
    assert response.status_code == 200
    assert response.headers["x-call-id"] and float(response.headers["x-duration-seconds"]) >= 0


@pytest.mark.parametrize("status", [200, 201, 302, 404, 418, 500, 503])
def test_handler_status_is_passed_through(replica: Replica, status: int) -> None:
    response = httpx.get(replica.url(f"/status/{status}"))
    assert (response.status_code, response.text) == (status, f"status {status}")


def logged_failure(replica: Replica, call_id: str, text: str) -> bool:
    """Whether the replica's log has the call's failure with the handler's own message."""
    return any("call_failed" in line and call_id in line and text in line for line in replica.log)


def test_handler_error_is_500_from_the_function(replica: Replica) -> None:
    """The caller gets a generic message (issue 14, item 10: an exception's text may name files, queries or
    secrets); the text itself is in the replica's log under the call id (spec.errors.expose sends it to callers)."""
    response = httpx.get(replica.url("/error"))
    assert response.status_code == 500
    error = error_of(response)
    assert error["layer"] == "function" and error["message"].startswith("the function raised an exception")
    assert "conformance failure" not in response.text
    call_id = response.headers["x-call-id"]
    wait_for(lambda: logged_failure(replica, call_id, "conformance failure"), 10, "the failure in the replica's log")


def test_panic_is_500_and_the_replica_keeps_serving(replica: Replica) -> None:
    response = httpx.get(replica.url("/panic"))
    assert response.status_code == 500 and error_of(response)["layer"] == "function"
    assert "conformance panic" not in response.text
    wait_for(
        lambda: logged_failure(replica, response.headers["x-call-id"], "conformance panic"), 10, "the panic logged"
    )
    assert httpx.get(replica.url("/inspect")).status_code == 200
    assert replica.process is not None and replica.process.poll() is None


def test_unreadable_json_is_400_from_the_function(replica: Replica) -> None:
    response = httpx.post(replica.url("/json"), content=b"{not json")
    assert response.status_code == 400 and error_of(response)["layer"] == "function"
    assert httpx.post(replica.url("/json"), json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}


def test_request_headers_reach_the_function_repeated_and_in_order(replica: Replica) -> None:
    headers = [("X-Echo", "one"), ("x-echo", "two"), ("X-Other", "other")]
    seen = httpx.get(replica.url("/inspect"), headers=headers).json()["headers"]
    echoed = [v for n, v in seen if n == "x-echo"]
    assert echoed == ["one", "two"]


def test_response_headers_reach_the_client_repeated(replica: Replica) -> None:
    response = httpx.get(replica.url("/headers"))
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers.get_list("x-multi") == ["one", "two"]


def test_headers_both_ways(replica: Replica) -> None:
    response = httpx.post(replica.url("/echo"), headers=[("x-echo", "a"), ("x-echo", "b")], content=b"hi")
    assert response.headers.get_list("x-echo") == ["a", "b"]


def test_binary_body_round_trips(replica: Replica) -> None:
    body = bytes(range(256)) * 64
    response = httpx.post(replica.url("/echo"), content=body, headers={"content-type": "application/x-thing"})
    assert response.status_code == 200
    assert response.content == body and response.headers["content-type"] == "application/x-thing"
    seen = httpx.post(replica.url("/inspect"), content=body).json()
    assert (seen["body_size"], seen["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_empty_bodies_both_ways(replica: Replica) -> None:
    assert httpx.post(replica.url("/inspect"), content=b"").json()["body_size"] == 0
    response = httpx.get(replica.url("/empty"))
    assert (response.status_code, response.content) == (200, b"")


def test_body_at_the_response_limit_passes_and_over_it_is_502(replica: Replica) -> None:
    at = httpx.get(replica.url(f"/size/{LIMIT}"), timeout=30)
    assert at.status_code == 200 and at.content == b"x" * LIMIT
    over = httpx.get(replica.url(f"/size/{LIMIT + 1}"), timeout=30)
    assert over.status_code == 502
    assert error_of(over)["layer"] == "runtime" and "exceeds" in error_of(over)["message"]


def test_query_string_and_rest_of_path(replica: Replica) -> None:
    seen = httpx.get(replica.url("/inspect/a/b?x=1&x=2&blank=&e=%C3%A9&plus=a+b")).json()
    assert seen["method"] == "GET" and seen["path"] == "/inspect/a/b"
    assert seen["query"] == "x=1&x=2&blank=&e=%C3%A9&plus=a+b"
    assert seen["query_params"] == {"x": ["1", "2"], "blank": [""], "e": ["é"], "plus": ["a b"]}
    assert seen["params"] == []


def test_root_path_is_slash(replica: Replica) -> None:
    seen = httpx.request("PATCH", replica.url("")).json()
    assert (seen["method"], seen["path"]) == ("PATCH", "/")


def test_unicode_path(replica: Replica) -> None:
    seen = httpx.get(replica.url("/inspect/café/日本語/😀")).json()
    assert seen["path"] == "/inspect/café/日本語/😀"


def test_deadline_overrun_is_504_from_the_runtime_before_the_deadline(replica: Replica) -> None:
    began = time.monotonic()
    response = httpx.get(replica.url("/sleep/3000"), timeout=10)
    took = time.monotonic() - began
    assert response.status_code == 504 and error_of(response)["layer"] == "runtime"
    assert 1.8 <= took < 2.0 + 0.5  # the runtime's answer, at the budget minus its margin (timeout 2 s)
    assert httpx.get(replica.url("/inspect")).status_code == 200  # still serving
    assert replica.process is not None and replica.process.poll() is None


def test_concurrency_limit_holds_and_overload_is_answered_with_retry_after(replica: Replica) -> None:
    """4 slots, no queue in the replica. While 4 handlers sleep, a 5th call is not run: it waits (the ingestor
    retries the replica's "busy", or queues it at its per-function in-flight cap, which is concurrency x
    replicas) until a slot frees at the sleepers' deadline. It is then served, or, if its own deadline came
    first, refused with Retry-After: 503 (runtime busy) or 429 (ingestor cap), never a 5th handler at once."""
    with ThreadPoolExecutor(5) as pool:
        holders = [pool.submit(httpx.get, replica.url("/sleep/2500"), timeout=10) for _ in range(4)]
        time.sleep(0.5)
        began = time.monotonic()
        response = httpx.get(replica.url("/inspect"), timeout=10)
        waited = time.monotonic() - began
        assert [h.result().status_code for h in holders] == [504] * 4
    if response.status_code == 200:
        assert waited >= 1.0  # it ran only once a sleeper's slot was freed at its deadline
    else:
        assert response.status_code in (429, 503) and response.headers["retry-after"]
        assert error_of(response)["layer"] in ("runtime", "ingestor")
    time.sleep(0.7)  # the sleeping handlers return (sync ones are stuck until then)
    assert httpx.get(replica.url("/inspect")).status_code == 200


def test_a_busy_replica_is_answered_503_by_the_ingestor_after_retrying(
    replica: Replica, nats_server: NatsServer
) -> None:
    """4 slots, no queue. Four calls sent straight over NATS (the ingestor's in-flight gate never sees them) hold
    every slot for 4 s; a call through the ingestor then meets "busy" answers only: the ingestor retries them until
    the function's 2 s deadline and answers 503 with Retry-After, layer runtime. The held calls are unharmed. A
    call arriving with no budget left is answered "timeout" even then: every runtime checks the budget first."""
    subject = f"lf.invoke.{replica.function.namespace}.{replica.function.name}"

    async def scenario() -> tuple[httpx.Response, float, list[tuple[int, bytes]]]:
        nc = await nats.connect(nats_server.url)
        try:
            inbox = nc.new_inbox()
            answers = await nc.subscribe(inbox)
            for i in range(4):  # published (and flushed) before any probe, so they take the slots first
                await nc.publish(subject, encode_request(f"hold-{i}", "GET", "/sleep/4000", "", [], b"", 10_000), inbox)
            await nc.flush()
            for attempt in range(200):  # until the replica answers busy: all four slots are taken
                probe = encode_request(f"probe-{attempt}", "GET", "/inspect", "", [], b"", 5_000)
                if decode_response((await nc.request(subject, probe, 5)).data).error_kind == ErrorKind.BUSY:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the replica never answered busy with four calls holding its slots")
            no_time = encode_request("no-time", "GET", "/inspect", "", [], b"", 0)
            late = decode_response((await nc.request(subject, no_time, 5)).data)
            assert (late.error_kind, late.status) == (ErrorKind.TIMEOUT, 504), "no time left goes before busy"
            assert "no time left" in late.error
            began = time.monotonic()
            response = await asyncio.to_thread(httpx.get, replica.url("/inspect"), timeout=10)
            took = time.monotonic() - began
            held = [decode_response((await answers.next_msg(10)).data) for _ in range(4)]
            return response, took, [(h.status, h.body) for h in held]
        finally:
            await nc.close()

    response, took, held = asyncio.run(scenario())
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    error = error_of(response)
    assert error["layer"] == "runtime", error
    assert 1.5 <= took < 3.5, "retried until the call's deadline, not refused at once"
    assert held == [(200, b"slept")] * 4


def test_sigterm_drains_without_losing_in_flight_calls(replica: Replica) -> None:
    """Last, since it stops the replica (and starts a new one for any test after it)."""
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(replica.url("/sleep/1500"), timeout=10).status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)  # the calls reach the replica (a call sent after the UNSUB would meet "no responders")
    assert replica.stop() == 0
    for thread in threads:
        thread.join()
    assert results == [200, 200, 200]
    events = "".join(replica.log)
    assert '"event":"draining"' in events and '"event":"stopped"' in events
    replica.start()
