"""Sync hello through `lf dev` against the canary, DESIGN §7's way: wrk (1 thread, 50 connections) pinned to
core 0, everything under test pinned to core 1, both measured in the same run.

    uv run python -m bench.sync_hello [--duration 10] [--connections 50]

Prints a table and one JSON line. A first cut for issue 2's numbers; the full harness and gate are issue 3's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from lf_controlplane.natsserver import free_port

REPO = Path(__file__).resolve().parents[1]
LOAD_CORE, SUT_CORE = "0", "1"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, errors and latency percentiles (ms) from `wrk --latency` output."""
    result: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])}  # type: ignore[index]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = float(errors[1]) if errors else 0.0
    return result


def wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    return parse_wrk(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command name, CPU seconds used so far), from /proc."""
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


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds of `root` and its descendants, summed by role (nats-server, ingestor, runtime, lf dev)."""
    table = _proc_table()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in table.items() if ppid == parent]
        tree.update(children)
        frontier += children
    roles: dict[str, float] = {}
    for pid in tree & table.keys():
        cmd = table[pid][1]
        role = (
            "nats-server"
            if "nats-server" in cmd
            else "ingestor"
            if "lf_dataplane" in cmd
            else "runtime"
            if "lf_runtime" in cmd
            else "lf dev"
            if "lf_controlplane" in cmd
            else "other"
        )
        roles[role] = roles.get(role, 0.0) + table[pid][2]
    return roles


def wait_ok(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


@contextmanager
def process(argv: list[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["taskset", "-c", SUT_CORE, *argv], start_new_session=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def canary(port: int) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "granian", "--interface", "rsgi", "--loop", "uvloop", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning", "--no-ws", "bench.canary:app"]
    return process(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as work:
        canary_port, dev_port = free_port(), free_port()
        with canary(canary_port):
            url = f"http://127.0.0.1:{canary_port}/"
            wait_ok(url)
            wrk(url, 2, args.connections)
            results["canary"] = wrk(url, args.duration, args.connections)
        dev_argv = [sys.executable, "-m", "lf_controlplane", "dev", str(REPO / "examples"), "--port", str(dev_port)]
        dev_argv += ["--state-dir", str(Path(work) / ".lf"), "--no-reload"]
        with process(dev_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as dev:
            url = f"http://127.0.0.1:{dev_port}/function/hello"
            wait_ok(url)
            wrk(url, 2, args.connections)
            before = cpu_by_role(dev.pid)
            results["lf dev: ingestor → NATS → python runtime"] = result = wrk(url, args.duration, args.connections)
            after = cpu_by_role(dev.pid)
            requests = result["rps"] * args.duration
            for role in sorted(after):
                used = after[role] - before.get(role, 0.0)
                result[f"cpu_us_per_call[{role}]"] = used / requests * 1e6
                result[f"cpu_share[{role}]"] = used / args.duration
    base = results["canary"]["rps"]
    print(f"{'chain':<45} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'share':>7}")
    for name, r in results.items():
        print(f"{name:<45} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['rps'] / base:>7.1%}")
    for name, r in results.items():
        for key, value in r.items():
            if key.startswith("cpu_us_per_call"):
                print(f"{name}: {key} = {value:.1f} µs")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
