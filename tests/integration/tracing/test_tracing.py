"""One trace across ingestor → NATS → Python runtime, exported over OTLP/HTTP to a collector this test runs.

A real nats-server, a real ingestor process and a real runtime process, both with the standard OTEL_* variables
pointing at an in-process `http.server` that decodes `ExportTraceServiceRequest`s. The handler starts its own
span through the OpenTelemetry API, which must nest under the runtime's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from lf_dataplane.subjects import ROUTES_BUCKET
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.integration.dataplane.test_ingestor import put_route, start_ingestor, stop_ingestor, wait_served
from tests.integration.runtime.runtime_harness import RuntimeProcess, collect_stdout
from tests.otlpcollector import Collector, Exported, otel_env

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT = "00f067aa0ba902b7"

SYNC_HANDLER = """
from opentelemetry import trace

tracer = trace.get_tracer("handler")


def handle(req):
    if req.path == "/raise":
        raise ValueError("boom")
    with tracer.start_as_current_span("inner"):
        return "hi"
"""

ASYNC_HANDLER = """
import asyncio
from opentelemetry import trace

tracer = trace.get_tracer("handler")


async def handle(req):
    if req.path == "/raise":
        raise ValueError("boom")
    with tracer.start_as_current_span("inner"):
        await asyncio.sleep(0.001)  # suspends: the span must stay current in the call's task
        return "hi"
"""


# -- the collector --------------------------------------------------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    collector.thread.start()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


# -- the processes ---------------------------------------------------------------------------------------------------


def start_runtime(nats_url: str, folder: Path, function: str, handler: str, env: dict[str, str]) -> RuntimeProcess:
    folder.mkdir()
    (folder / "handler.py").write_text(handler)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LF_", "OTEL_"))}
    full_env.update(LF_NATS_URL=nats_url, LF_FUNCTION=function, LF_FUNCTION_DIR=str(folder), **env)
    process = subprocess.Popen(
        [sys.executable, "-m", "lf_runtime"],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runtime = RuntimeProcess(process, function, folder)
    runtime.reader = threading.Thread(target=runtime.read, daemon=True)
    runtime.reader.start()
    runtime.stdout_reader = threading.Thread(target=collect_stdout, args=(process, runtime.stdout), daemon=True)
    runtime.stdout_reader.start()
    return runtime


@pytest.fixture
async def kv(nats_url: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        bucket = await js.key_value(ROUTES_BUCKET)
    except Exception:
        bucket = await js.create_key_value(bucket=ROUTES_BUCKET, history=1)
    yield bucket
    await nc.close()


@pytest.mark.parametrize("handler", [SYNC_HANDLER, ASYNC_HANDLER], ids=["sync", "async"])
async def test_one_trace_spans_ingestor_and_runtime(
    nats_url: str, tmp_path: Path, collector: Collector, kv: Any, handler: str
) -> None:
    env = otel_env(collector.endpoint)
    ingestor = start_ingestor(nats_url, tmp_path / "ingestor.log", **env)
    function = f"tr-{uuid.uuid4().hex[:10]}"
    runtime: RuntimeProcess | None = None
    try:
        await put_route(kv, function)
        url = f"{ingestor.url}/function/{function}"
        async with httpx.AsyncClient(timeout=20) as http:
            await wait_served(http, url)  # routed (503: no replica yet), before the runtime's cold call
            runtime = start_runtime(nats_url, tmp_path / "fn", function, handler, env)
            runtime.wait_for("ready")
            incoming = {"traceparent": f"00-{TRACE_ID}-{INCOMING_PARENT}-01", "tracestate": "vendor=x"}
            first, second, failed = [
                await http.get(f"{url}{path}", headers=incoming) for path in ("/a", "/b", "/raise")
            ]
            assert first.status_code == 200 and first.text == "hi"
            assert second.status_code == 200
            assert failed.status_code == 500
            calls = [r.headers["x-call-id"] for r in (first, second, failed)]
    finally:
        stop_ingestor(ingestor)
        if runtime is not None:
            runtime.signal(signal.SIGTERM)
            runtime.exit_code()
            runtime.close()

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
