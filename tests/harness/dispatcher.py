"""The dispatcher as a real process (`python -m lf_dispatcher`), the one way every suite starts it: a clean
environment plus LF_NATS_URL and the caller's settings, its JSON log lines in a file, ready once it logged
"ready"; stopped with SIGTERM (its drain), killed only if that takes too long."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lf_controlplane.natsserver import free_port

from tests.harness.processes import clean_environ, stop_process
from tests.harness.waiting import wait_for


@dataclass
class Dispatcher:
    process: subprocess.Popen[bytes]
    log: Path
    admin_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/metrics"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines whose event is `name`."""
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                record = json.loads(line)
                if record.get("event") == name:
                    out.append(record)
        return out

    def wait_for(self, name: str, timeout: float = 20, **fields: Any) -> dict[str, Any]:
        """The first `name` event whose fields include `fields`, once it is logged."""

        def found() -> dict[str, Any] | None:
            assert self.process.poll() is None, f"the dispatcher exited:\n{self.logs()[-3000:]}"
            return next((e for e in self.events(name) if all(e.get(k) == v for k, v in fields.items())), None)

        return wait_for(found, timeout, f"dispatcher event {name} {fields}")  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return httpx.get(self.metrics_url, timeout=5).raise_for_status().text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        return stop_process(self.process, sig, timeout)


def start_dispatcher(nats_url: str, log: Path, *, ready_timeout: float = 30, **env: str) -> Dispatcher:
    """A dispatcher with the LF_* settings `env` (its admin listener on a free port), once it logged "ready"."""
    admin_port = int(env.pop("LF_ADMIN_PORT", 0)) or free_port()
    environment = clean_environ(
        **{"LF_NATS_URL": nats_url, "LF_ADMIN_PORT": str(admin_port), "PYTHONUNBUFFERED": "1", **env}
    )
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "lf_dispatcher"], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    dispatcher = Dispatcher(process, log, admin_port)
    try:
        dispatcher.wait_for("ready", ready_timeout)
    except BaseException:
        dispatcher.stop()
        raise
    return dispatcher
