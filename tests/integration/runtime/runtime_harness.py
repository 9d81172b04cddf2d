"""Helpers of the runtime tests: the handler the test functions run, a runtime process handle that reads the
JSON log lines so tests wait for events ("ready", "draining", ...) instead of sleeping, and a NATS call helper."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lf_native import ResponseEnvelope, decode_response, encode_request
from nats.aio.client import Client

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


@dataclass
class RuntimeProcess:
    """A runtime subprocess and the JSON events it logged on stderr."""

    process: subprocess.Popen[str]
    function: str
    gate: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    stdout_reader: threading.Thread | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "raw", "line": line}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, name: str, timeout: float = 10.0, count: int = 1) -> dict[str, Any]:
        """Block until the runtime logged `count` events named `name`; fail if it exits or the time runs out."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.get("event") == name]
                if len(found) >= count:
                    return found[count - 1]
                if self.process.poll() is not None and not self._reader_alive():
                    raise AssertionError(f"runtime exited ({self.process.returncode}) before {name!r}: {self.events}")
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name!r} event within {timeout}s: {self.events}")
                self._changed.wait(min(left, 0.1))

    def _reader_alive(self) -> bool:
        return self.reader is not None and self.reader.is_alive()

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("event") == name]

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

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def close(self) -> None:
        """After exit: let the readers reach the end of the pipes, then close them."""
        for thread in (self.reader, self.stdout_reader):
            if thread is not None:
                thread.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def exit_code(self, timeout: float = 15.0) -> int:
        return self.process.wait(timeout)


Start = Callable[..., RuntimeProcess]


def spawn_runtime(env: dict[str, str], function: str, gate: Path) -> RuntimeProcess:
    """`python -m lf_runtime` with exactly `env`, its stderr events and stdout lines collected by two threads."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lf_runtime"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runtime = RuntimeProcess(process, function, gate)
    runtime.reader = threading.Thread(target=runtime.read, daemon=True)
    runtime.reader.start()
    runtime.stdout_reader = threading.Thread(target=collect_stdout, args=(process, runtime.stdout), daemon=True)
    runtime.stdout_reader.start()
    return runtime


def collect_stdout(process: subprocess.Popen[str], into: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.append(line)


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
