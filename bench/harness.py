"""The measuring harness (docs/performance.md, "Method"): load from wrk pinned to one core, the system under test
pinned to the other, processes started and stopped by the harness, results with CPU per process role.

Building blocks only; `bench.scenarios` says what to measure and `bench.__main__` runs it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LOAD_CORE = os.environ.get("LF_BENCH_LOAD_CORE", "0")
SUT_CORE = os.environ.get("LF_BENCH_SUT_CORE", "1")
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"


class BenchError(RuntimeError):
    """The bench could not run (a tool missing, a service that did not start)."""


@dataclass(frozen=True)
class Request:
    """What every wrk request sends."""

    path: str = "/"
    method: str = "GET"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # When set, each request picks one of these paths at random (e.g. 1,000 routes); `path` is then unused.
    paths: tuple[str, ...] = ()


@dataclass
class Result:
    """One load run: throughput, latency percentiles (ms), errors, and CPU per call by process role (µs)."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    errors: int
    non_2xx: int
    cpu_us_per_call: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def require(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BenchError(f"{tool} not found: {hint}")
    return found


def pinned(argv: list[str], core: str) -> list[str]:
    return ["taskset", "-c", core, *argv]


@contextmanager
def service(
    argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of the system under test, pinned to SUT_CORE (its children inherit the pinning).

    Stopped with SIGTERM (then SIGKILL to its whole process group) when the block ends.
    """
    out = log.open("ab") if log is not None else None
    try:
        proc = subprocess.Popen(
            pinned(argv, SUT_CORE),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=out or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_http(url: str, timeout: float = 60, expect: int = 200, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers `expect`; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"the process behind {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == expect:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise BenchError(f"{url} did not answer {expect} within {timeout:.0f} s")


# -- load ------------------------------------------------------------------------------------------------------


def wrk(base_url: str, request: Request, *, duration: float, connections: int, workdir: Path) -> Result:
    """Run wrk (1 thread) pinned to LOAD_CORE; return what it measured (CPU accounting is the caller's)."""
    require("wrk", "apt-get install wrk")
    body_file = workdir / "wrk-body.bin"
    body_file.write_bytes(request.body)
    paths_file = workdir / "wrk-paths.txt"
    paths_file.write_text("\n".join(request.paths))
    env = {
        **os.environ,
        "WRK_METHOD": request.method,
        "WRK_BODY_FILE": str(body_file),
        "WRK_HEADERS": json.dumps(dict(request.headers)),
        "WRK_PATHS_FILE": str(paths_file) if request.paths else "",
    }
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(int(duration), 1)}s", "-s", str(WRK_SCRIPT)]
    command.append(base_url.rstrip("/") + request.path)
    done = subprocess.run(pinned(command, LOAD_CORE), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_report(done.stdout)


def parse_report(output: str) -> Result:
    """The JSON line our wrk script prints in `done()` (see wrk_report.lua)."""
    for line in reversed(output.splitlines()):
        if line.startswith("LF_REPORT "):
            data = json.loads(line.removeprefix("LF_REPORT "))
            seconds = data["duration_us"] / 1e6
            errors = sum(data["errors"].values())
            return Result(
                rps=data["requests"] / seconds,
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                p999_ms=data["p999_us"] / 1000,
                requests=data["requests"],
                errors=errors,
                non_2xx=data["errors"]["status"],
            )
    raise BenchError(f"wrk printed no report:\n{output}")


# -- CPU accounting --------------------------------------------------------------------------------------------

ROLES = (
    ("nats-server", "nats-server"),
    ("lf_dataplane", "ingestor"),
    ("lf_dispatcher", "dispatcher"),
    ("lf_runtime", "runtime"),
    ("bench.responder", "runtime"),
    ("lf_controlplane", "lf dev"),
    ("granian", "granian"),
    ("uvicorn", "uvicorn"),
    ("flask_hello", "flask/waitress"),
    ("/queue", "queue-proxy"),
    ("openfaas-model", "openfaas model"),
)


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command line, CPU seconds used so far), from /proc."""
    table: dict[int, tuple[int, str, float]] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / ticks)
    return table


def role_of(cmdline: str) -> str:
    for needle, role in ROLES:
        if needle in cmdline:
            return role
    return os.path.basename(cmdline.split(" ", 1)[0]) or "other"


def cpu_by_role(roots: list[int]) -> dict[str, float]:
    """CPU seconds used so far by `roots` and all their descendants, summed by role."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, frontier = set(roots), list(roots)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    roles: dict[str, float] = {}
    for pid in seen & table.keys():
        _, cmdline, cpu = table[pid]
        if cmdline.startswith("taskset "):
            continue
        role = role_of(cmdline)
        roles[role] = roles.get(role, 0.0) + cpu
    return roles


@contextmanager
def exclusive(path: Path = Path("/tmp/lf-bench.lock")) -> Iterator[None]:
    """One measurement at a time on this machine: two benches sharing the SUT core would skew both."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measure(
    base_url: str,
    request: Request,
    *,
    roots: list[int],
    duration: float,
    connections: int,
    workdir: Path,
    warmup: float = 2.0,
) -> Result:
    """Warm up, then one measured wrk run with the CPU each role of `roots` used during it."""
    with exclusive():
        if warmup > 0:
            wrk(base_url, request, duration=warmup, connections=connections, workdir=workdir)
        before = cpu_by_role(roots)
        result = wrk(base_url, request, duration=duration, connections=connections, workdir=workdir)
        after = cpu_by_role(roots)
    calls = max(result.requests, 1)
    result.cpu_us_per_call = {
        role: round((after[role] - before.get(role, 0.0)) / calls * 1e6, 1) for role in sorted(after)
    }
    return result
