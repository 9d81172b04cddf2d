"""Starting and stopping the ingestor as a real process (`python -m lf_dataplane`), the one way every suite does it:
started with the test's environment plus LF_PORT / LF_NATS_URL, its stderr in a log file, ready when /readyz says
so; stopped with SIGTERM (its drain), killed only if that takes too long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.waiting import wait_for


def start_ingestor_process(
    nats_url: str, log: Path, port: int, env: dict[str, str], ready_timeout: float = 20
) -> subprocess.Popen[bytes]:
    """The ingestor on 127.0.0.1:`port`, once it answers /readyz 200; stopped again if it never does."""
    environment = {**os.environ, "LF_PORT": str(port), "LF_NATS_URL": nats_url, **env}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "lf_dataplane"], env=environment, stderr=sink)
    try:
        wait_for(
            lambda: process.poll() is not None or httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
            ready_timeout,
            "the ingestor's /readyz",
        )
        assert process.poll() is None, log.read_text(errors="replace")
    except BaseException:
        stop_process(process)
        raise
    return process


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Send `sig` (SIGTERM: drain) and wait; SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
