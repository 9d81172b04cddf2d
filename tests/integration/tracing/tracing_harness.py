"""The handlers of the tracing suite, and an ingestor plus one Python runtime serving a fresh function (started with
tests/harness), both exporting to the suite's collector (OTEL_* from `otel_env`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.harness.ingestor import start_ingestor, wait_routed
from tests.harness.routes import Routes, function_route
from tests.harness.runtime import RuntimeProcess

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


@dataclass
class Traced:
    base_url: str  # the ingestor's
    function: str
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"{self.base_url}/function/{self.function}"


@asynccontextmanager
async def traced_function(
    nats_url: str, tmp_path: Path, routes: Routes, handler: str, env: dict[str, str], prefix: str = "tr"
) -> AsyncIterator[Traced]:
    """An ingestor and one runtime serving a new function; the function is routed before its replica starts (so
    the first call is the replica's cold one). Both are stopped on the way out, which flushes their spans."""
    ingestor = start_ingestor(nats_url, tmp_path / "ingestor.log", LF_DRAIN_TIMEOUT="20s", **env)
    function = f"{prefix}-{uuid.uuid4().hex[:10]}"
    runtime: RuntimeProcess | None = None
    try:
        await routes.put(function_route(function))
        async with httpx.AsyncClient(timeout=20) as http:
            await wait_routed(http, f"{ingestor.url}/function/{function}")  # 503 until a replica is up
            runtime = RuntimeProcess.start_python(nats_url, function, tmp_path / "fn", {"handler.py": handler}, **env)
            yield Traced(ingestor.url, function, http)
    finally:
        ingestor.stop()
        if runtime is not None:
            runtime.stop()
