"""Numbers of the three runtimes in one run (issue 6): hello end to end through the ingestor (wrk, 1 thread,
50 connections, client on core 0 and the system under test on core 1 as DESIGN §7 pins it), each runtime's own
per-call cost without HTTP (NATS request-reply, 16 requests outstanding), and idle RSS per replica.

    .venv/bin/python runtimes/conformance/measure.py [--seconds 5]

Serves examples/hello, examples/hello-go and examples/hello-rust with exactly the command lf dev runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import nats
import yaml
from lf_controlplane.dev import builds
from lf_controlplane.dev.functions import runtime_env
from lf_controlplane.natsserver import NatsServer, free_port
from lf_dataplane.routes import encode_route, route_key, route_of
from lf_dataplane.specs import load_manifest
from lf_dataplane.subjects import ROUTES_BUCKET
from lf_native import decode_response, encode_request

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"python": "hello", "go": "hello-go", "rust": "hello-rust"}
PIN_SUT = ["taskset", "-c", "1"]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([*PIN_SUT, *argv], env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if '"event":"ready"' in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60):
        raise SystemExit(f"{argv} did not become ready")
    return process


async def nats_loop(url: str, subject: str, seconds: float, outstanding: int = 16) -> tuple[float, int]:
    """Calls per second of request-reply straight to the runtime (no HTTP, no ingestor)."""
    nc = await nats.connect(url)
    payload = encode_request("c", "GET", "/", "", [("host", "x")], b"", 60_000)
    count = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop:
            reply = await nc.request(subject, payload, timeout=5)
            assert decode_response(reply.data).status == 200
            count += 1

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(outstanding)))
    rate = count / (time.monotonic() - began)
    await nc.close()
    return rate, count


def wrk(url: str, seconds: float) -> tuple[float, str]:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c50", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out)
    return rate, p99.group(1) if p99 else "?"


async def publish_routes(url: str, functions: list) -> None:  # type: ignore[type-arg]
    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket=ROUTES_BUCKET, history=1)
    for function in functions:
        await kv.put(route_key(route_of(function)), encode_route(route_of(function)))
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    seconds = parser.parse_args().seconds
    work = Path(tempfile.mkdtemp(prefix="lf-measure-"))
    broker = NatsServer(state_dir=work / "nats").start()
    processes: list[subprocess.Popen[str]] = []
    try:
        functions = {}
        for runtime, example in EXAMPLES.items():
            folder = REPO / "examples" / example
            functions[runtime] = (folder, load_manifest(yaml.safe_load((folder / "function.yaml").read_text())))
        asyncio.run(publish_routes(broker.url, [f for _, f in functions.values()]))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
        env.update(LF_PORT=str(port), LF_NATS_URL=broker.url)
        ingestor = subprocess.Popen(
            [*PIN_SUT, sys.executable, "-m", "lf_dataplane"], env=env, stderr=subprocess.DEVNULL
        )
        processes.append(ingestor)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        rows = []
        for runtime, (folder, function) in functions.items():
            argv = asyncio.run(builds.runtime_argv(function, folder, work / "builds", lambda _l, _s: None))
            secrets = work / "secrets" / runtime
            secrets.mkdir(parents=True)
            renv = runtime_env(
                function, code_dir=folder, nats_url=broker.url, pythonpath=str(folder), secrets_dir=secrets
            )
            replica = start(argv, renv, folder)
            processes.append(replica)
            url = f"{base}/function/{function.name}"
            for _ in range(100):
                if httpx.get(url, timeout=5).status_code == 200:
                    break
                time.sleep(0.1)
            time.sleep(1)
            idle = rss_mib(replica.pid)
            subject = f"lf.invoke.{function.namespace}.{function.name}"
            cpu_before = cpu_s(replica.pid)
            per_call, calls = asyncio.run(nats_loop(broker.url, subject, seconds))
            cpu_us = (cpu_s(replica.pid) - cpu_before) / calls * 1e6
            e2e, p99 = wrk(url, seconds)
            rows.append((runtime, e2e, p99, per_call, cpu_us, idle))
            replica.terminate()
            replica.wait(30)
        print(
            f"{'runtime':<8} {'e2e req/s':>10} {'p99':>8} {'NATS calls/s':>13} {'CPU µs/call':>12} {'idle RSS MiB':>13}"
        )
        for runtime, e2e, p99, per_call, cpu_us, idle in rows:
            print(f"{runtime:<8} {e2e:>10.0f} {p99:>8} {per_call:>13.0f} {cpu_us:>12.1f} {idle:>13.1f}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        broker.stop()


if __name__ == "__main__":
    main()
