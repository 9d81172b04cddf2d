"""Traces of async calls: the ingestor's span of the submission is the parent of the runtime's span of the run (the
dispatcher invokes the function like a sync call, with the trace context stored at submission), in the caller's
trace; the status endpoint gets its own span. Real nats-server (JetStream), ingestor, dispatcher and Python runtime
processes; spans exported over OTLP/HTTP to the in-process collector of test_tracing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.harness.dispatcher import Dispatcher, start_dispatcher
from tests.harness.otlpcollector import Collector, Exported, otel_env
from tests.harness.routes import Routes
from tests.harness.waiting import wait_for
from tests.integration.tracing.tracing_harness import INCOMING_PARENT, SYNC_HANDLER, TRACE_ID, traced_function

pytestmark = pytest.mark.integration


@pytest.fixture
def dispatcher(nats_url: str, tmp_path: Path) -> Iterator[Dispatcher]:
    started = start_dispatcher(nats_url, tmp_path / "dispatcher.log")
    yield started
    started.stop()


async def test_async_run_is_a_child_of_the_submission(
    nats_url: str,
    tmp_path: Path,
    collector: Collector,
    routes: Routes,
    dispatcher: Dispatcher,
) -> None:
    incoming = {"traceparent": f"00-{TRACE_ID}-{INCOMING_PARENT}-01"}
    async with traced_function(nats_url, tmp_path, routes, SYNC_HANDLER, otel_env(collector.endpoint), "tra") as traced:
        function = traced.function
        submitted = await traced.http.post(f"{traced.base_url}/async-function/{function}/a", headers=incoming)
        assert submitted.status_code == 202, submitted.text
        call_id = submitted.headers["x-call-id"]
        status_url = f"{traced.base_url}/invocations/{call_id}"

        def completed() -> bool:
            answer = httpx.get(status_url, timeout=5)
            return answer.status_code == 200 and answer.json()["status"] == "succeeded"

        wait_for(completed, timeout=20, what="the async call's result")

    def one(predicate: Any) -> Exported:
        found = collector.wait_for(predicate, 1)
        assert len(found) == 1, [s.span.name for s in found]
        return found[0]

    submit = one(lambda s: s.service == "litefunctions-ingestor" and s.span.name == f"POST {function} async")
    run = one(lambda s: s.service == "litefunctions-runtime" and s.attr("faas.invocation_id") == call_id)
    assert submit.attr("faas.invocation_id") == call_id
    assert submit.attr("litefunctions.async") is True
    assert submit.attr("http.response.status_code") == 202
    assert submit.span.kind == Span.SPAN_KIND_SERVER
    assert submit.span.trace_id == run.span.trace_id == bytes.fromhex(TRACE_ID)
    assert submit.span.parent_span_id == bytes.fromhex(INCOMING_PARENT)
    assert run.span.parent_span_id == submit.span.span_id
    assert run.span.kind == Span.SPAN_KIND_SERVER
    assert run.attr("http.response.status_code") == 200
    # the handler's own span nests under the run
    inner = one(lambda s: s.span.name == "inner")
    assert inner.span.parent_span_id == run.span.span_id
    # each status poll is a span of the ingestor's, named by route (not by call id) and carrying the call id
    polls = collector.wait_for(lambda s: s.span.name == "GET /invocations/{id}", 1)
    assert {p.attr("faas.invocation_id") for p in polls} == {call_id}
    assert polls[-1].attr("http.response.status_code") == 200
