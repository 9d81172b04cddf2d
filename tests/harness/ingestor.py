"""The ingestor as a real process (`python -m lf_dataplane`), the one way every suite starts it: a clean environment
plus LF_PORT / LF_NATS_URL and the caller's settings, its stdout and stderr in a log file, ready when /readyz
answers 200; stopped with SIGTERM (its drain), killed only if that takes too long."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from lf_controlplane.natsserver import free_port

from tests.harness.processes import clean_environ, stop_process
from tests.harness.waiting import wait_for


@dataclass
class Ingestor:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        return stop_process(self.process, sig, timeout)


def start_ingestor(
    nats_url: str, log: Path, *, port: int | None = None, ready_timeout: float = 30, **env: str
) -> Ingestor:
    """The ingestor on 127.0.0.1:`port` (a free one by default) with the LF_* settings `env`, once it answers
    /readyz 200; stopped again, with its log in the failure, if it exits or never gets ready."""
    port = port or free_port()
    environment = clean_environ(**{"LF_PORT": str(port), "LF_NATS_URL": nats_url, "PYTHONUNBUFFERED": "1", **env})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "lf_dataplane"], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    ingestor = Ingestor(process, port, log)
    workers = int(env["LF_WORKERS"]) if env.get("LF_WORKERS", "").isdigit() else 1
    try:
        wait_for(
            lambda: process.poll() is not None or httpx.get(f"{ingestor.url}/readyz").status_code == 200,
            ready_timeout,
            "the ingestor's /readyz",
        )
        # /readyz is answered by whichever worker takes the connection: with several, wait for each one's
        # "ready" (routes loaded), or a call landing on a late worker is a 503 not_ready.
        wait_for(lambda: process.poll() is not None or ready_workers(log) >= workers, ready_timeout, "every worker")
        assert process.poll() is None, ingestor.logs()
    except BaseException:
        ingestor.stop()
        raise
    return ingestor


async def wait_routed(client: httpx.AsyncClient, url: str, *, routed: bool = True, timeout: float = 10) -> None:
    """Until the ingestor's route table has (or no longer has) the function of `url`: 404 means it is not there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.get(url)
        if (response.status_code != 404) == routed:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} {'never became' if routed else 'is still'} routed")


def ready_workers(log: Path) -> int:
    """How many worker processes have logged `ready` (their route table loaded) in the ingestor's log."""
    pids = set()
    for line in log.read_text(errors="replace").splitlines():
        if '"event":"ready"' in line:
            try:
                pids.add(json.loads(line)["pid"])
            except (ValueError, KeyError):
                continue
    return len(pids)
