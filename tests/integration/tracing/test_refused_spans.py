"""A call a runtime answers before any handler runs (busy, no time left in its budget) still leaves a span in the
caller's trace, with the reason. Real nats-server and Python runtime; calls made over NATS as the ingestor makes
them (the ingestor's own gates would queue before the runtime), spans exported to test_tracing's collector."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
import pytest
from lf_core.contract.protocol import ErrorKind
from lf_native import ResponseEnvelope, decode_response, encode_request
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.harness.otlpcollector import Collector, otel_env
from tests.harness.runtime import RuntimeProcess
from tests.harness.waiting import wait_for
from tests.integration.tracing.tracing_harness import INCOMING_PARENT, TRACE_ID

pytestmark = pytest.mark.integration

HOLDING_HANDLER = """
import time
from pathlib import Path

HERE = Path(__file__).parent


def handle(req):
    if req.path == "/hold":
        (HERE / "started").touch()
        end = time.monotonic() + 30
        while not (HERE / "release").exists() and time.monotonic() < end:
            time.sleep(0.01)
    return "done"
"""


async def test_busy_and_late_answers_have_spans(nats_url: str, tmp_path: Path, collector: Collector) -> None:
    env = {**otel_env(collector.endpoint), "LF_CONCURRENCY": "1", "LF_QUEUE_DEPTH": "0"}
    function = f"trr-{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "fn"
    runtime = RuntimeProcess.start_python(nats_url, function, folder, {"handler.py": HOLDING_HANDLER}, **env)
    nc = await nats.connect(nats_url)
    traceparent = f"00-{TRACE_ID}-{INCOMING_PARENT}-01"

    async def call(call_id: str, path: str, budget_ms: int) -> ResponseEnvelope:
        payload = encode_request(call_id, "GET", path, "", [], b"", budget_ms, [], traceparent, "")
        msg = await nc.request(f"lf.invoke.default.{function}", payload, timeout=budget_ms / 1000 + 5)
        return decode_response(msg.data)

    try:
        held = asyncio.ensure_future(call("held-call", "/hold", 20_000))
        await asyncio.to_thread(wait_for, (folder / "started").exists, 20, "the held call to start")
        busy = await call("busy-call", "/", 5_000)
        (folder / "release").touch()
        assert (await held).status == 200
        late = await call("late-call", "/", 0)  # a free slot, but no budget
    finally:
        await nc.close()
        runtime.stop()
    assert busy.error_kind == ErrorKind.BUSY
    assert late.error_kind == ErrorKind.TIMEOUT

    for call_id, reason, status in (("busy-call", "busy", 503), ("late-call", "timeout", 504)):
        (span,) = collector.wait_for(lambda s, c=call_id: s.attr("faas.invocation_id") == c, 1)
        assert span.service == "litefunctions-runtime"
        assert span.span.trace_id == bytes.fromhex(TRACE_ID)
        assert span.span.parent_span_id == bytes.fromhex(INCOMING_PARENT)
        assert span.span.kind == Span.SPAN_KIND_SERVER
        assert span.span.status.code == Status.STATUS_CODE_ERROR
        assert span.attr("error.type") == reason
        assert span.attr("http.response.status_code") == status
        assert span.attr("faas.name") == function
