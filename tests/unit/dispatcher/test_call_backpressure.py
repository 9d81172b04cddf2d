"""One async call through `CallRunner` over a fake broker (a KV with compare-and-set, an invoke subject with scripted
answers, the acks it was sent): a busy answer is back-pressure, not an attempt; the first delivery writes its
record create-only; a zombie's result is dropped without an ack."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
from lf_core.asynccalls import streams as js
from lf_core.contract.protocol import ErrorKind
from lf_core.contract.routes import FunctionRoute
from lf_core.contract.specs import AsyncRule
from lf_dispatcher.calls import BUSY_DELAY_S, CallRunner
from lf_dispatcher.metrics import FunctionCounts
from lf_dispatcher.pulling import Capacity, Puller
from lf_native import encode_request, encode_response

CALL = "c0ffee"
OK = encode_response(200, [("content-type", "text/plain")], b"hi", call_id=CALL)
BUSY = encode_response(503, [], b"", call_id=CALL, error_kind=ErrorKind.BUSY, error="busy")
FAIL = encode_response(500, [], b"boom", call_id=CALL, error_kind=ErrorKind.HANDLER, error="boom")


class FakeBroker:
    """The few subjects the runner uses: KV put (compare-and-set) and get on LF_RESULTS, the invoke subject."""

    reconnects = 0
    inbox_prefix = "_INBOX.test."

    def __init__(self, answers: list[bytes]) -> None:
        self.kv: dict[str, tuple[bytes, int]] = {}
        self.seq = 0
        self.answers = answers
        self.acks: list[tuple[str, bytes]] = []
        self.requests: list[str] = []
        self.streams: dict[int, Any] = {}
        self.max_payload = 1 << 20

    async def request_headers(
        self, subject: str, payload: bytes, headers: Sequence[tuple[str, str]], timeout: float
    ) -> bytes:
        self.requests.append(subject)
        if subject.startswith("$KV.LF_RESULTS."):
            key = subject.removeprefix("$KV.LF_RESULTS.")
            expected = int(dict(headers)["Nats-Expected-Last-Subject-Sequence"])
            if self.kv.get(key, (b"", 0))[1] != expected:
                return json.dumps(
                    {"error": {"code": 400, "err_code": 10071, "description": "wrong last sequence"}}
                ).encode()
            self.seq += 1
            self.kv[key] = (payload, self.seq)
            return json.dumps({"stream": "KV_LF_RESULTS", "seq": self.seq}).encode()
        if subject == "$JS.API.STREAM.MSG.GET.KV_LF_RESULTS":
            key = json.loads(payload)["last_by_subj"].removeprefix("$KV.LF_RESULTS.")
            if key not in self.kv:
                return json.dumps(
                    {"error": {"code": 404, "err_code": 10037, "description": "no message found"}}
                ).encode()
            data, seq = self.kv[key]
            return json.dumps({"message": {"data": base64.b64encode(data).decode(), "seq": seq}}).encode()
        raise AssertionError(f"unexpected request to {subject}")

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        self.requests.append(subject)
        return self.answers.pop(0)

    def publish(self, subject: str, payload: bytes) -> bool:
        self.acks.append((subject, payload))
        return True

    def record(self) -> js.CallRecord:
        return js.decode_record(self.kv[CALL][0])


def setup(answers: list[bytes]) -> tuple[FakeBroker, CallRunner, Puller]:
    broker = FakeBroker(answers)
    route = FunctionRoute(
        namespace="default", name="hello", timeout_ms=2000, max_request_bytes=1024, max_response_bytes=1024,
        concurrency=4, async_rule=AsyncRule(max_attempts=3, backoff_s=0.5),
    )  # fmt: skip
    puller = Puller(
        route, conn=broker, capacity=Capacity(100), counts=FunctionCounts("default", "hello"),  # type: ignore[arg-type]
        ack_grace_s=1.0, default_concurrency=8,
    )  # fmt: skip
    return broker, CallRunner(broker, worker_id="test:1"), puller  # type: ignore[arg-type]


ENVELOPE = encode_request(CALL, "POST", "/", "", [], b"x", 2000)
HEADERS = b"NATS/1.0\r\nLf-Submitted: 1700000000.0\r\n\r\n"


async def deliver(runner: CallRunner, puller: Puller, delivered: int) -> str:
    reply = f"$JS.ACK.LF_ASYNC.default_hello.{delivered}.7.7.1700000000000000000.0"
    puller.held += 1
    await runner.process(puller, reply, delivered, 1700000000.0, ENVELOPE, HEADERS)
    return reply


async def test_busy_is_nacked_shortly_and_is_not_an_attempt() -> None:
    broker, runner, puller = setup([BUSY, OK])
    reply = await deliver(runner, puller, 1)
    assert broker.requests[0] == f"$KV.LF_RESULTS.{CALL}"  # create-only at once: no read before
    record = broker.record()
    assert (record.status, record.attempts) == ("queued", 0)  # back as it was: the busy try did not count
    [(subject, nak)] = broker.acks
    assert subject == reply and nak.startswith(b"-NAK ")
    assert json.loads(nak[5:])["delay"] <= BUSY_DELAY_S * 1.5 * 1e9
    assert (puller.counts.busy, puller.counts.runs) == (1, 0)
    assert puller.window.limit == 1  # held 1 when the busy came: one less, never below one

    broker.acks.clear()
    await deliver(runner, puller, 2)  # the redelivery: JetStream counts 2, the record says attempt 1
    record = broker.record()
    assert (record.status, record.attempts, record.result.status if record.result else 0) == ("succeeded", 1, 200)
    assert broker.acks[-1][1] == b"+ACK"
    assert (puller.counts.busy, puller.counts.runs) == (1, 1)


async def test_a_failure_is_an_attempt_with_the_policy_s_backoff() -> None:
    broker, runner, puller = setup([FAIL])
    await deliver(runner, puller, 1)
    record = broker.record()
    assert (record.status, record.attempts, record.last_error) == ("failed", 1, "boom")
    nak = broker.acks[-1][1]
    assert nak.startswith(b"-NAK ") and json.loads(nak[5:])["delay"] >= 0.5e9
    assert puller.counts.retries == 1


async def test_a_zombie_s_result_is_dropped_without_an_ack() -> None:
    broker, runner, puller = setup([OK])
    original = broker.request

    async def overtaken(subject: str, payload: bytes, timeout: float) -> bytes:
        data, seq = broker.kv[CALL]  # meanwhile another delivery moved the record on
        broker.seq += 1
        broker.kv[CALL] = (data, broker.seq)
        return await original(subject, payload, timeout)

    broker.request = overtaken  # type: ignore[method-assign]
    await deliver(runner, puller, 1)
    assert broker.acks == []
    assert puller.counts.zombie_results_dropped == 1


@pytest.mark.parametrize("status", ["succeeded", "cancelled"])
async def test_a_final_record_acks_without_running(status: str) -> None:
    broker, runner, puller = setup([])
    broker.kv[CALL] = (
        js.encode_record(js.CallRecord(call_id=CALL, namespace="default", function="hello", status=status)),
        1,
    )  # type: ignore[arg-type]
    broker.seq = 1
    await deliver(runner, puller, 1)
    assert broker.acks[-1][1] == b"+ACK"
    assert not [r for r in broker.requests if r.startswith("lf.invoke.")]


async def test_a_message_with_a_malformed_header_is_terminated_not_retried_forever() -> None:
    broker, runner, puller = setup([])
    reply = "$JS.ACK.LF_ASYNC.default_hello.1.7.7.1700000000000000000.0"
    await runner.process(puller, reply, 1, 1700000000.0, ENVELOPE, b"NATS/1.0\r\nLf-Redrive: many\r\n\r\n")
    assert broker.acks == [(reply, b"+TERM")]
