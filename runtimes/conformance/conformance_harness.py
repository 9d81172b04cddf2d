"""The conformance platform's parts (fixtures in conftest.py): the suite's functions, the wiretap, a replica per
runtime and the one dispatcher that runs their async calls; nats-server, the ingestor, the dispatcher and replica
processes and LF_ROUTES are tests/harness's.

Why not `lf dev`: the suite must signal one replica (draining) and watch its log, and that needs the process
itself. It still runs exactly what `lf dev` and the images run: `tests.harness.runtime.replica_command` takes the
argv from `lf_controlplane.dev.builds.runtime_argv` (the interpreter for Python, the binary built with the runtime
for Go and Rust) and the environment from `lf_controlplane.dev.functions.runtime_env`; routes are written to
LF_ROUTES with `lf_core.contract.routes`, as `lf dev` does, and the dispatcher is `python -m lf_dispatcher`, as
`lf dev` starts it: it finds the functions in LF_ROUTES and invokes their replicas like a sync caller.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from lf_core.contract.routes import route_of
from lf_core.contract.specs import Function, load_manifest
from lf_native import decode_response

from tests.harness.dispatcher import Dispatcher, start_dispatcher
from tests.harness.routes import put_routes
from tests.harness.runtime import RuntimeProcess, replica_command
from tests.harness.waiting import wait_for

FUNCTIONS = Path(__file__).resolve().parent / "functions"
RUNTIMES = ("python", "go", "rust")


def load_function(runtime: str) -> Function:
    manifest = FUNCTIONS / runtime / "function.yaml"
    return load_manifest(yaml.safe_load(manifest.read_text()), source=str(manifest))


def launch(runtime: str, function: Function, state: Path, nats_url: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment `lf dev` gives a replica of `function`, on `runtime`'s conformance code (the
    binary does not depend on the function's name or settings, so one build serves every variant)."""
    return replica_command(function, FUNCTIONS / runtime, state, nats_url)


def start_suite_dispatcher(nats_url: str, log: Path) -> Dispatcher:
    """The dispatcher (`python -m lf_dispatcher`) once it logged `ready`: a 1 s ack grace, so a call held by a
    replica that died is redelivered in seconds, and a short drain."""
    return start_dispatcher(nats_url, log, LF_ASYNC_ACK_GRACE="1s", LF_DRAIN_TIMEOUT="10s")


def route(nats_url: str, ingestor: str, function: Function) -> None:
    """Write `function`'s route to LF_ROUTES as `lf dev` does and wait until the ingestor routes it."""
    put_routes(nats_url, route_of(function))
    url = f"{ingestor}/function/{function.name}/inspect"
    wait_for(lambda: httpx.get(url, timeout=5).status_code != 404, 20, f"the ingestor to route {function.name}")


@dataclass
class Wiretap:
    """Reads every reply on `_INBOX.>` from the broker (raw protocol, no client library): the cold-start flag
    is in the response envelope and nowhere in the HTTP answer today."""

    url: str
    replies: list[tuple[str, bool]] = field(default_factory=list)  # (call id, cold start)

    def start(self) -> None:
        host, port = self.url.removeprefix("nats://").rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)))
        self._sock.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.> 1\r\nPING\r\n')
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\r\n" in buffer:
                line, rest = buffer.split(b"\r\n", 1)
                if line.startswith(b"PING"):
                    self._sock.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    if len(rest) < size + 2:
                        break
                    payload, rest = rest[:size], rest[size + 2 :]
                    try:
                        envelope = decode_response(payload)
                        self.replies.append((envelope.call_id, envelope.cold_start))
                    except ValueError:
                        pass
                buffer = rest

    def close(self) -> None:
        self._sock.close()

    def cold(self, call_id: str) -> bool | None:
        return next((cold for cid, cold in self.replies if cid == call_id), None)


@dataclass
class Replica:
    runtime: str
    function: Function
    argv: list[str]
    env: dict[str, str]
    base_url: str
    started: RuntimeProcess | None = None
    first_calls: list[str] = field(default_factory=list)  # X-Call-Id of the first two calls after start

    @property
    def process(self) -> subprocess.Popen[str] | None:
        return None if self.started is None else self.started.process

    @property
    def log(self) -> list[str]:
        """Its stderr lines so far."""
        return [] if self.started is None else self.started.lines

    def url(self, rest: str = "") -> str:
        return f"{self.base_url}/function/{self.function.name}{rest}"

    def start(self) -> None:
        self.started = RuntimeProcess.start(self.env, self.argv, cwd=FUNCTIONS / self.runtime, ready_timeout=30)
        self.first_calls = [httpx.get(self.url("/inspect"), timeout=10).headers["x-call-id"] for _ in range(2)]

    def stop(self) -> int:
        assert self.started is not None
        return self.started.stop(timeout=30)
