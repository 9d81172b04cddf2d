"""What every child process of the tests shares: an environment without the caller's LF_* / OTEL_* settings (each
test names the ones it means), and one way to stop it (SIGTERM, SIGKILL only if that takes too long)."""

from __future__ import annotations

import os
import signal
import subprocess

# Settings a developer's shell may carry that would change what the process under test does.
INHERITED_OUT = ("LF_", "OTEL_")


def clean_environ(**env: str) -> dict[str, str]:
    """This process's environment without LF_* and OTEL_* variables, plus `env`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(INHERITED_OUT)}, **env}


def stop_process(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20
) -> int:
    """Send `sig` (SIGTERM: drain) and wait; SIGKILL after `timeout` seconds. The exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
