"""What every Go build of tools/ shares (Kubernetes, its add-ons, Zot, helm): the toolchain, the machine-wide lock
that lets one cold build run at a time on the shared cores, and a logged build whose wall time and peak RSS are
measured (by /usr/bin/time -v when the machine has it).

The product's own builds (lf_controlplane.images.functions, for a function's Go or Rust binary) take the same lock
file but cannot import tools/.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

COLD_BUILD_LOCK = Path("/tmp/lf-cold-build.lock")  # machine-wide on purpose
TIMER = Path("/usr/bin/time")


class BuildError(RuntimeError):
    """A build could not run or failed; the message names the log."""


def go_tool(what: str) -> str:
    """The `go` command (PATH, else /usr/local/go/bin/go); BuildError naming `what` needs it."""
    found = shutil.which("go") or (str(Path("/usr/local/go/bin/go")) if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise BuildError(f"go not found: {what} is built with the Go toolchain")
    return found


@contextlib.contextmanager
def cold_build_lock() -> Iterator[None]:
    """Hold the machine-wide cold-build lock. Not re-entrant: take it once, around the build and the check that
    the build is still needed (another process may have built it while this one waited)."""
    with COLD_BUILD_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def peak_rss_kib(time_output: str) -> int | None:
    """The peak RSS in /usr/bin/time -v's report."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_kib: int | None


def run_logged(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path, label: str, tail_lines: int = 20
) -> Measured:
    """Run a build `command` in `cwd` with its output in `log` (the command first), timed; BuildError with the
    log's last lines when it fails. `label` names it in the progress lines on stderr."""
    stats = log.with_suffix(".time")
    argv = [str(TIMER), "-v", "-o", str(stats), *command] if TIMER.exists() else list(command)
    print(f"{label}: building (log: {log})", file=sys.stderr, flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(argv, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-tail_lines:])
        raise BuildError(f"{label}: build failed (exit {done.returncode}); see {log}:\n{tail}")
    peak = peak_rss_kib(stats.read_text()) if stats.exists() else None
    print(f"{label}: built in {seconds}s, peak RSS {peak} KiB", file=sys.stderr, flush=True)
    return Measured(seconds, peak)
