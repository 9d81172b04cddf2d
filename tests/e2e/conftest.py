"""`lf dev` started as a user starts it (the `lf` command in a child process) on a copy of examples/.

Each module gets its own platform on free ports and its own copy of the function folders, so tests may edit
handlers, kill replicas or stop the platform.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lf_controlplane.natsserver import free_port

from tests.harness.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TEST_FUNCTIONS = Path(__file__).resolve().parent / "functions"


@dataclass
class LfDev:
    root: Path
    state_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str, rest: str = "") -> str:
        return f"{self.base_url}/function/{name}{rest}"

    def lf(self, *args: str, check: bool = True, input_: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run the `lf` CLI against this platform."""
        env = {**os.environ, "LF_STATE_DIR": str(self.state_dir), "LF_URL": self.base_url}
        return subprocess.run(
            [sys.executable, "-m", "lf_controlplane", *args],
            env=env,
            capture_output=True,
            check=check,
            input=input_,
            timeout=60,
        )

    def state(self) -> list[dict[str, Any]]:
        functions: list[dict[str, Any]] = json.loads(self.lf("list", "-o", "json").stdout)
        return functions

    def function_state(self, name: str) -> dict[str, Any]:
        return next(f for f in self.state() if f["name"] == name)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, name: str, timeout: float = 30.0) -> None:
        wait_for(
            lambda: httpx.get(self.url(name), timeout=5).status_code not in (502, 503),
            timeout,
            f"{name} to be served",
        )


def start_lf_dev(root: Path, state_dir: Path, log: Path, extra_env: dict[str, str] | None = None) -> LfDev:
    """`extra_env` (e.g. LF_HEADER_READ_TIMEOUT) reaches lf dev and, through it, the ingestor."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")} | (extra_env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lf_controlplane",
                "dev",
                str(root),
                "--port",
                str(port),
                "--state-dir",
                str(state_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    dev = LfDev(root=root, state_dir=state_dir, port=port, process=process, log=log)
    try:
        wait_for(lambda: _ready(dev), 60, "lf dev to serve /readyz")
    except AssertionError:
        stop(dev)
        raise AssertionError(f"lf dev did not come up; its output:\n{dev.output()}") from None
    return dev


def _ready(dev: LfDev) -> bool:
    if dev.process.poll() is not None:
        raise AssertionError(f"lf dev exited with {dev.process.returncode}:\n{dev.output()}")
    return httpx.get(f"{dev.base_url}/readyz", timeout=2).status_code == 200


def stop(dev: LfDev, timeout: float = 60) -> int:
    if dev.process.poll() is None:
        dev.process.send_signal(signal.SIGTERM)
        try:
            dev.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(dev.process.pid, signal.SIGKILL)
            dev.process.wait()
    return dev.process.returncode


@pytest.fixture(scope="module")
def functions_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/ plus the test-only functions, copied so a test may change them."""
    root = tmp_path_factory.mktemp("functions")
    shutil.copytree(EXAMPLES, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lf", "__pycache__"))
    shutil.copytree(TEST_FUNCTIONS, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def lf_dev(functions_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LfDev]:
    work = tmp_path_factory.mktemp("lfdev")
    dev = start_lf_dev(functions_root, work / ".lf", work / "lf-dev.log")
    try:
        for name in ("hello", "echo", "fail", "slow", "gate", "withdeps"):
            dev.wait_serving(name)
        yield dev
    finally:
        code = stop(dev)
        if code != 0:
            print(dev.output())
