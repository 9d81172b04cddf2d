"""Runtime replicas as real processes, for every language: `python -m lf_runtime` by default, or the command `lf dev`
runs for a function (`replica_command`: the interpreter for Python, the binary built with the runtime for Go and
Rust). Its stderr lines, and the JSON events among them, are read by one thread and its stdout lines by another,
so tests wait for events ("ready", "draining", ...) instead of sleeping."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from signal import SIGCONT, SIGKILL, SIGTERM, Signals
from typing import IO, Any, Self

from lf_controlplane.dev import builds
from lf_controlplane.dev.functions import runtime_env
from lf_core.contract.specs import Function

from tests.harness.processes import clean_environ, stop_process

PYTHON_RUNTIME = (sys.executable, "-m", "lf_runtime")


def replica_command(function: Function, code_dir: Path, state: Path, nats_url: str) -> tuple[list[str], dict[str, str]]:
    """The command `lf dev` runs for a replica of `function` in any runtime (its code in `code_dir`; a Go or Rust
    binary built into `state` or taken from the build cache) and the environment it gives it."""
    argv = asyncio.run(builds.runtime_argv(function, code_dir, state / "builds", lambda _l, _s: None))
    secrets = state / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    env = runtime_env(function, code_dir=code_dir, nats_url=nats_url, pythonpath=str(code_dir), secrets_dir=secrets)
    return argv, env


class RuntimeProcess:
    """A runtime process, the lines it wrote on stderr (`lines`, parsed into `events`) and on stdout (`stdout`).
    Started by `start` (any command) or `start_python`; a suite may subclass it for helpers of its own."""

    def __init__(self, process: subprocess.Popen[str], env: dict[str, str]) -> None:
        self.process = process
        self.env = env
        self.function = env.get("LF_FUNCTION", "")
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.stdout: list[str] = []
        self._changed = threading.Condition()
        assert process.stderr is not None and process.stdout is not None
        self._readers = [
            threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True),
            threading.Thread(target=self._read_stdout, args=(process.stdout,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        argv: Sequence[str] = PYTHON_RUNTIME,
        *,
        cwd: Path | None = None,
        ready_timeout: float | None = 20,
    ) -> Self:
        """`argv` with exactly `env`, once it logged "ready" (not waited for with `ready_timeout` None); stopped
        again, with its log in the failure, if it never does."""
        process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runtime = cls(process, env)
        if ready_timeout is not None:
            try:
                runtime.wait_for("ready", ready_timeout)
            except BaseException:
                runtime.stop(SIGKILL)
                raise
        return runtime

    @classmethod
    def start_python(
        cls,
        nats_url: str,
        function: str,
        folder: Path,
        files: dict[str, str] | None = None,
        *,
        ready_timeout: float | None = 20,
        **env: str,
    ) -> Self:
        """`python -m lf_runtime` serving `function` from `folder`, first written with `files` (name -> text:
        handler.py at least, unless an earlier replica wrote it), in a clean environment plus `env`
        (which may name another LF_NATS_URL)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        environment = clean_environ(
            **{"LF_NATS_URL": nats_url, "LF_FUNCTION": function, "LF_FUNCTION_DIR": str(folder), **env}
        )
        return cls.start(environment, ready_timeout=ready_timeout)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "raw", "line": line}
            with self._changed:
                self.lines.append(line)
                self.events.append(event if isinstance(event, dict) else {"event": "raw", "line": line})
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            self.stdout.append(line)

    @property
    def metrics_url(self) -> str | None:
        """Where it serves /metrics (LF_METRICS_PORT), if it does."""
        port = self.env.get("LF_METRICS_PORT")
        return f"http://{self.env.get('LF_METRICS_HOST', '127.0.0.1')}:{port}/metrics" if port else None

    def logs(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("event") == name]

    def wait_for(self, name: str, timeout: float = 10.0, count: int = 1) -> dict[str, Any]:
        """Block until the runtime logged `count` events named `name`; fail if it exits or the time runs out."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.get("event") == name]
                if len(found) >= count:
                    return found[count - 1]
                if self.process.poll() is not None and not self._readers[0].is_alive():
                    raise AssertionError(f"runtime exited ({self.process.returncode}) before {name!r}: {self.lines}")
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name!r} event within {timeout}s: {self.lines}")
                self._changed.wait(min(left, 0.1))

    def signal(self, sig: Signals) -> None:
        self.process.send_signal(sig)

    def exit_code(self, timeout: float = 15.0) -> int:
        return self.process.wait(timeout)

    def stop(self, sig: int = SIGTERM, timeout: float = 20) -> int:
        """Stop it (SIGCONT first, in case a test paused it), let the readers finish; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(SIGCONT)
        code = stop_process(self.process, sig, timeout)
        self.close()
        return code

    def close(self) -> None:
        """After exit: let the readers reach the end of the pipes, then close them."""
        for reader in self._readers:
            reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
