"""The processes of the tracing suite: a Python runtime on a handler given as text, and an ingestor plus one
runtime serving a fresh function, both exporting to the suite's collector (OTEL_* from `otel_env`)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.dataplane.test_ingestor import put_route, start_ingestor, stop_ingestor, wait_served
from tests.integration.runtime.runtime_harness import RuntimeProcess, spawn_runtime

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


def start_runtime(nats_url: str, folder: Path, function: str, handler: str, env: dict[str, str]) -> RuntimeProcess:
    folder.mkdir()
    (folder / "handler.py").write_text(handler)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LF_", "OTEL_"))}
    full_env.update(LF_NATS_URL=nats_url, LF_FUNCTION=function, LF_FUNCTION_DIR=str(folder), **env)
    return spawn_runtime(full_env, function, folder)


def stop_runtime(runtime: RuntimeProcess) -> None:
    runtime.signal(signal.SIGTERM)
    runtime.exit_code()
    runtime.close()


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
    nats_url: str, tmp_path: Path, kv: Any, handler: str, env: dict[str, str], prefix: str = "tr"
) -> AsyncIterator[Traced]:
    """An ingestor and one runtime serving a new function; the function is routed before its replica starts (so
    the first call is the replica's cold one). Both are stopped on the way out, which flushes their spans."""
    ingestor = start_ingestor(nats_url, tmp_path / "ingestor.log", **env)
    function = f"{prefix}-{uuid.uuid4().hex[:10]}"
    runtime: RuntimeProcess | None = None
    try:
        await put_route(kv, function)
        async with httpx.AsyncClient(timeout=20) as http:
            await wait_served(http, f"{ingestor.url}/function/{function}")  # 503 until a replica is up
            runtime = start_runtime(nats_url, tmp_path / "fn", function, handler, env)
            runtime.wait_for("ready")
            yield Traced(ingestor.url, function, http)
    finally:
        stop_ingestor(ingestor)
        if runtime is not None:
            stop_runtime(runtime)
