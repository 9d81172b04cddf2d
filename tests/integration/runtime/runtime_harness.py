"""Helpers of the runtime tests: the handler the test functions run, the runtime process (tests/harness/runtime.py)
with the handler's gate for held calls, and a NATS call helper."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from lf_native import ResponseEnvelope, decode_response, encode_request
from nats.aio.client import Client

from tests.harness.runtime import RuntimeProcess

# One handler module serving every behaviour the tests need, selected by path. GATE_DIR lets a test hold a call
# in flight: `/hold` writes started-{call_id} and waits until the file `release` exists.
HANDLER_BODY = """
import os, time
from pathlib import Path
from lf_runtime import Response

GATE = Path(os.environ["GATE_DIR"])


def _released():
    return (GATE / "release").exists()


def _route(req):
    p = req.path
    if p == "/text":
        return "hello"
    if p == "/bytes":
        return b"\\x00\\x01"
    if p == "/dict":
        return {"query": req.query_params, "x_a": req.headers.get("x-a"), "body": req.text, "params": req.params}
    if p == "/none":
        return None
    if p == "/response":
        return Response(b"made", status=201, headers=[("x-b", "1"), ("x-b", "2")], content_type="text/x")
    if p == "/raise":
        raise ValueError("boom")
    if p == "/bad-return":
        return 42
    if p == "/big":
        return b"x" * int(req.query_params["n"])
    if p == "/json":
        return req.json()
    if p == "/pid":
        return str(os.getpid())
    if p == "/print":
        print("from the handler", flush=True)
        return "printed"
    return Response("no such path", status=404)
"""

SYNC_HANDLER = (
    HANDLER_BODY
    + """

def handle(req):
    if req.path == "/hold":
        (GATE / f"started-{req.call_id}").touch()
        end = time.monotonic() + 60
        while not _released() and time.monotonic() < end:
            time.sleep(0.005)
        return "released"
    if req.path == "/sleep":
        time.sleep(float(req.query_params["s"]))
        return "slept"
    return _route(req)
"""
)

ASYNC_HANDLER = (
    HANDLER_BODY
    + """
import asyncio


async def handle(req):
    if req.path == "/hold":
        (GATE / f"started-{req.call_id}").touch()
        while not _released():
            await asyncio.sleep(0.005)
        return "released"
    if req.path == "/sleep":
        try:
            await asyncio.sleep(float(req.query_params["s"]))
        except asyncio.CancelledError:
            (GATE / f"cancelled-{req.call_id}").touch()
            raise
        return "slept"
    return _route(req)
"""
)


class GatedRuntime(RuntimeProcess):
    """A runtime on the handler above, with its GATE_DIR: held calls, and their release."""

    @property
    def gate(self) -> Path:
        return Path(self.env["GATE_DIR"])

    def started_calls(self) -> list[str]:
        return sorted(p.name.removeprefix("started-") for p in self.gate.glob("started-*"))

    def wait_started(self, count: int, timeout: float = 10.0) -> list[str]:
        """Wait until `count` held calls are inside the handler (each wrote its started- file)."""
        end = time.monotonic() + timeout
        while len(self.started_calls()) < count:
            assert time.monotonic() < end, f"only {self.started_calls()} of {count} held calls started"
            assert self.process.poll() is None, f"runtime exited: {self.events}"
            time.sleep(0.005)
        return self.started_calls()

    def release(self) -> None:
        (self.gate / "release").touch()


Start = Callable[..., GatedRuntime]


async def call(
    client: Client,
    function: str,
    path: str = "/text",
    *,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    budget_ms: int = 10_000,
    call_id: str | None = None,
    params: list[tuple[str, str]] | None = None,
) -> ResponseEnvelope:
    """One sync call through NATS as the ingestor makes it; waits a little past the budget."""
    payload = encode_request(
        call_id or uuid.uuid4().hex, "GET", path, query, headers or [], body, budget_ms, params or []
    )
    msg = await client.request(f"lf.invoke.default.{function}", payload, timeout=budget_ms / 1000 + 5)
    return decode_response(msg.data)
