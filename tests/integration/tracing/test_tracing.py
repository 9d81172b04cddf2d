"""One trace across ingestor → NATS → Python runtime, exported over OTLP/HTTP to a collector this test runs.

A real nats-server, a real ingestor process and a real runtime process, both with the standard OTEL_* variables
pointing at an in-process `http.server` that decodes `ExportTraceServiceRequest`s. The handler starts its own
span through the OpenTelemetry API, which must nest under the runtime's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.harness.otlpcollector import Collector, Exported, otel_env
from tests.harness.routes import Routes
from tests.integration.tracing.tracing_harness import (
    ASYNC_HANDLER,
    INCOMING_PARENT,
    SYNC_HANDLER,
    TRACE_ID,
    traced_function,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("handler", [SYNC_HANDLER, ASYNC_HANDLER], ids=["sync", "async"])
async def test_one_trace_spans_ingestor_and_runtime(
    nats_url: str, tmp_path: Path, collector: Collector, routes: Routes, handler: str
) -> None:
    async with traced_function(nats_url, tmp_path, routes, handler, otel_env(collector.endpoint)) as traced:
        function = traced.function
        incoming = {"traceparent": f"00-{TRACE_ID}-{INCOMING_PARENT}-01", "tracestate": "vendor=x"}
        first, second, failed = [
            await traced.http.get(f"{traced.url}{path}", headers=incoming) for path in ("/a", "/b", "/raise")
        ]
        assert first.status_code == 200 and first.text == "hi"
        assert second.status_code == 200
        assert failed.status_code == 500
        calls = [r.headers["x-call-id"] for r in (first, second, failed)]

    def of(service: str, call_id: str) -> Exported:
        found = collector.wait_for(lambda s: s.service == service and s.attr("faas.invocation_id") == call_id, 1)
        assert len(found) == 1, found
        return found[0]

    trace_id = bytes.fromhex(TRACE_ID)
    for call_id, cold in zip(calls, (True, False, False), strict=True):
        front = of("litefunctions-ingestor", call_id)
        back = of("litefunctions-runtime", call_id)
        # one trace: the incoming one; the runtime's span is the ingestor's child
        assert front.span.trace_id == back.span.trace_id == trace_id
        assert front.span.parent_span_id == bytes.fromhex(INCOMING_PARENT)
        assert back.span.parent_span_id == front.span.span_id
        assert front.span.trace_state == back.span.trace_state == "vendor=x"
        assert front.span.kind == Span.SPAN_KIND_SERVER
        assert back.span.kind == Span.SPAN_KIND_SERVER
        for exported in (front, back):
            assert exported.attr("faas.trigger") == "http"
            assert exported.attr("faas.name") == function
            assert exported.attr("faas.coldstart") is cold
            assert exported.attr("http.request.method") == "GET"
        assert front.attr("faas.invoked_name") == function
        assert front.span.name == f"GET {function}"
        assert back.span.name == function

    ok_front, ok_back = of("litefunctions-ingestor", calls[0]), of("litefunctions-runtime", calls[0])
    assert ok_front.attr("http.response.status_code") == 200
    assert ok_back.attr("http.response.status_code") == 200
    assert ok_back.span.status.code != Status.STATUS_CODE_ERROR
    # the handler's own span nests under the runtime's
    inner = collector.wait_for(lambda s: s.span.name == "inner", 2)
    assert {s.span.parent_span_id for s in inner} == {of("litefunctions-runtime", c).span.span_id for c in calls[:2]}
    assert all(s.service == "litefunctions-runtime" for s in inner)

    bad_front, bad_back = of("litefunctions-ingestor", calls[2]), of("litefunctions-runtime", calls[2])
    assert bad_front.attr("http.response.status_code") == 500
    assert bad_front.span.status.code == Status.STATUS_CODE_ERROR
    assert bad_back.span.status.code == Status.STATUS_CODE_ERROR
    assert "ValueError" in bad_back.span.status.message
    assert [e.name for e in bad_back.span.events] == ["exception"]
