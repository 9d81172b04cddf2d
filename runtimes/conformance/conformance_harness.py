"""The conformance platform's parts (fixtures in conftest.py): nats-server, the real ingestor, a replica per runtime.

Why not `lf dev`: the suite must signal one replica (draining) and watch its log, and that needs the process
itself. It still runs exactly what `lf dev` and the images run: the argv comes from
`lf_controlplane.dev.builds.runtime_argv` (the interpreter for Python, the binary built with the runtime for Go
and Rust) and the environment from `lf_controlplane.dev.functions.runtime_env`; routes are written to LF_ROUTES
with `lf_core.contract.routes`, as `lf dev` does.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import yaml
from lf_controlplane.dev import builds
from lf_controlplane.dev.functions import runtime_env
from lf_core.contract.routes import encode_route, route_key, route_of
from lf_core.contract.specs import Function, load_manifest
from lf_core.contract.subjects import ROUTES_BUCKET
from lf_native import decode_response

from tests.waiting import wait_for

FUNCTIONS = Path(__file__).resolve().parent / "functions"
RUNTIMES = ("python", "go", "rust")


def load_function(runtime: str) -> Function:
    manifest = FUNCTIONS / runtime / "function.yaml"
    return load_manifest(yaml.safe_load(manifest.read_text()), source=str(manifest))


def launch(runtime: str, function: Function, state: Path, nats_url: str) -> tuple[list[str], dict[str, str]]:
    """The command `lf dev` runs for a replica of `function` (the runtime's conformance code, built into `state`
    or taken from the build cache: the binary does not depend on the function's name or settings) and the
    environment it gives it."""
    code_dir = FUNCTIONS / runtime
    argv = asyncio.run(builds.runtime_argv(load_function(runtime), code_dir, state / "builds", lambda _l, _s: None))
    secrets = state / "secrets"
    secrets.mkdir(exist_ok=True)
    env = runtime_env(function, code_dir=code_dir, nats_url=nats_url, pythonpath=str(code_dir), secrets_dir=secrets)
    return argv, env


def route(nats_url: str, ingestor: str, function: Function) -> None:
    """Write `function`'s route to LF_ROUTES as `lf dev` does and wait until the ingestor routes it."""

    async def put() -> None:
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(ROUTES_BUCKET)
            entry = route_of(function)
            await kv.put(route_key(entry), encode_route(entry))
        finally:
            await nc.close()

    asyncio.run(put())
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
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)
    first_calls: list[str] = field(default_factory=list)  # X-Call-Id of the first two calls after start

    def url(self, rest: str = "") -> str:
        return f"{self.base_url}/function/{self.function.name}{rest}"

    def start(self) -> None:
        self.log = log = []
        self.process = process = subprocess.Popen(
            self.argv, env=self.env, cwd=FUNCTIONS / self.runtime, stderr=subprocess.PIPE, text=True
        )
        assert process.stderr is not None
        ready = threading.Event()

        def read() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                log.append(line)
                if '"event":"ready"' in line:
                    ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(30):
            raise AssertionError(f"{self.runtime} replica not ready:\n{''.join(log)}")
        self.first_calls = [httpx.get(self.url("/inspect"), timeout=10).headers["x-call-id"] for _ in range(2)]

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(30)
        self._reader.join(5)  # the last lines are in `log`
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code
