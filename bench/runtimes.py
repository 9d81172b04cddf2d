"""`python -m bench runtimes`: the three runtimes side by side (issue #6), the Python runtime as the baseline.

One nats-server, one ingestor and one replica of each example (`examples/hello`, `hello-go`, `hello-rust`, started
with exactly the command `lf dev` runs), all on the SUT core; the load (wrk, and this process's NATS client) on the
load core. In interleaved rounds (the order rotates, so drift on a shared machine hits all three alike):

- **replica CPU per call**: request-reply straight to the replica over NATS, 16 calls outstanding, no HTTP and no
  ingestor: what the runtime itself costs (CPU seconds of the replica process / calls);
- **end to end**: `GET /function/NAME` through the ingestor (wrk, 1 thread, 50 connections): requests/s, p99, and
  the CPU per call of the ingestor and of the replica.

Reported: the median of the rounds, each with its ratio to Python's, and the idle RSS of each replica. The checks
are issue #6's: Go and Rust not slower end to end than Python (within `E2E_NOISE`), and no replica costing more
CPU per call than the ingestor in front of it (a replica that did would be the bottleneck of the path).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
import yaml
from lf_controlplane.dev import builds
from lf_controlplane.dev.functions import runtime_env
from lf_controlplane.natsserver import NatsServer, free_port
from lf_core.contract.routes import encode_route, route_key, route_of
from lf_core.contract.specs import Function, load_manifest
from lf_core.contract.subjects import ROUTES_BUCKET
from lf_native import decode_response, encode_request

from bench.harness import LOAD_CORE, REPO, BenchError, Request, cpu_by_role, exclusive, measure, service, wait_http

EXAMPLES = {"python": "hello", "go": "hello-go", "rust": "hello-rust"}
BASELINE = "python"
E2E_NOISE = 0.9  # Go and Rust pass when their e2e req/s is at least this share of Python's (same run, medians)
OUTSTANDING = 16


@dataclass
class Replica:
    runtime: str
    function: Function
    pid: int
    idle_rss_mib: float
    nats_cpu_us: list[float] = field(default_factory=list)
    nats_rate: list[float] = field(default_factory=list)
    e2e_rps: list[float] = field(default_factory=list)
    e2e_p99_ms: list[float] = field(default_factory=list)
    e2e_replica_us: list[float] = field(default_factory=list)
    e2e_ingestor_us: list[float] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"lf.invoke.{self.function.namespace}.{self.function.name}"


def rss_mib(pid: int) -> float:
    found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) / 1024 if found else float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds `pid` used so far (the harness's accounting, one process)."""
    return sum(cpu_by_role([pid]).values())


async def request_reply(url: str, subject: str, seconds: float) -> tuple[float, int]:
    """Calls per second, and calls, of request-reply straight to the replica."""
    client = await nats.connect(url)
    payload = encode_request("bench", "GET", "/", "", [("host", "bench")], b"", 60_000)
    count = 0
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            reply = await client.request(subject, payload, timeout=5)
            if decode_response(reply.data).status != 200:
                raise BenchError(f"{subject} answered {decode_response(reply.data).status}")
            count += 1

    began = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(OUTSTANDING)))
    rate = count / (time.monotonic() - began)
    await client.close()
    return rate, count


async def publish_routes(url: str, functions: list[Function]) -> None:
    client = await nats.connect(url)
    kv = await client.jetstream().create_key_value(bucket=ROUTES_BUCKET, history=1)
    for function in functions:
        await kv.put(route_key(route_of(function)), encode_route(route_of(function)))
    await client.close()


@contextmanager
def platform(workdir: Path) -> Iterator[tuple[str, str, list[Replica], int]]:
    """nats-server, the ingestor and one replica per runtime: (NATS URL, base URL, replicas, ingestor pid)."""
    functions = {}
    for runtime, example in EXAMPLES.items():
        folder = REPO / "examples" / example
        functions[runtime] = (folder, load_manifest(yaml.safe_load((folder / "function.yaml").read_text())))
    broker = NatsServer(state_dir=workdir / "nats").start()
    try:
        with ExitStack() as stack:
            asyncio.run(publish_routes(broker.url, [f for _, f in functions.values()]))
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
            env.update(LF_PORT=str(port), LF_NATS_URL=broker.url)
            ingestor = stack.enter_context(
                service([sys.executable, "-m", "lf_dataplane"], env=env, cwd=REPO, log=workdir / "ingestor.log")
            )
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/readyz", proc=ingestor)
            replicas = []
            for runtime, (folder, function) in functions.items():
                print(f"  {runtime}: building and starting {folder.name}", file=sys.stderr)
                printer = lambda _label, line: print(f"    {line}", file=sys.stderr)  # noqa: E731
                argv = asyncio.run(builds.runtime_argv(function, folder, workdir / "builds", printer))
                secrets = workdir / "secrets" / runtime
                secrets.mkdir(parents=True)
                renv = runtime_env(
                    function, code_dir=folder, nats_url=broker.url, pythonpath=str(folder), secrets_dir=secrets
                )
                log = workdir / f"{runtime}.log"
                proc = stack.enter_context(service(argv, env=renv, cwd=folder, log=log))
                wait_http(f"{base}/function/{function.name}", proc=proc)
                replicas.append(Replica(runtime, function, proc.pid, idle_rss_mib=0.0))
            time.sleep(1)  # settle before the idle RSS
            for replica in replicas:
                replica.idle_rss_mib = rss_mib(replica.pid)
            yield broker.url, base, replicas, ingestor.pid
    finally:
        broker.stop()


def run(rounds: int, duration: float) -> list[Replica]:
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # this process's NATS client is load, not the system under test
    with tempfile.TemporaryDirectory(prefix="lf-bench-runtimes-") as tmp, platform(Path(tmp)) as setup:
        nats_url, base, replicas, ingestor_pid = setup
        for round_ in range(rounds):
            order = replicas[round_ % len(replicas) :] + replicas[: round_ % len(replicas)]
            print(f"  round {round_ + 1}/{rounds}: {', '.join(r.runtime for r in order)}", file=sys.stderr)
            for replica in order:
                with exclusive():
                    asyncio.run(request_reply(nats_url, replica.subject, 0.5))  # warm-up
                    before = cpu_s(replica.pid)
                    rate, calls = asyncio.run(request_reply(nats_url, replica.subject, duration))
                    replica.nats_cpu_us.append((cpu_s(replica.pid) - before) / calls * 1e6)
                    replica.nats_rate.append(rate)
                result = measure(
                    base, Request(f"/function/{replica.function.name}"), roots=[ingestor_pid, replica.pid],
                    duration=duration, connections=50, workdir=Path(tmp), warmup=1.0,
                )  # fmt: skip
                if result.errors:
                    raise BenchError(f"{replica.runtime}: {result.errors} errors end to end")
                cpu = dict(result.cpu_us_per_call)
                replica.e2e_rps.append(result.rps)
                replica.e2e_p99_ms.append(result.p99_ms)
                replica.e2e_ingestor_us.append(cpu.pop("ingestor", float("nan")))
                replica.e2e_replica_us.append(sum(cpu.values()))  # the replica's role: runtime, or the binary
        return replicas


def table(replicas: list[Replica]) -> str:
    """The medians, each with its ratio to the baseline's, then the idle RSS."""
    base = next(r for r in replicas if r.runtime == BASELINE)
    med = statistics.median

    def ratio(value: float, baseline: float) -> str:
        return f"{value / baseline:.2f}x" if baseline else "-"

    header = (
        f"{'runtime':<8} {'e2e req/s':>10} {'÷ py':>6} {'p99 ms':>7} {'ingestor µs':>12} {'replica µs':>11} "
        f"{'NATS calls/s':>13} {'replica µs (NATS)':>18} {'÷ py':>6} {'idle RSS MiB':>13}"
    )
    lines = [header, "-" * len(header)]
    for r in replicas:
        lines.append(
            f"{r.runtime:<8} {med(r.e2e_rps):>10.0f} {ratio(med(r.e2e_rps), med(base.e2e_rps)):>6} "
            f"{med(r.e2e_p99_ms):>7.1f} {med(r.e2e_ingestor_us):>12.1f} {med(r.e2e_replica_us):>11.1f} "
            f"{med(r.nats_rate):>13.0f} {med(r.nats_cpu_us):>18.1f} "
            f"{ratio(med(r.nats_cpu_us), med(base.nats_cpu_us)):>6} {r.idle_rss_mib:>13.1f}"
        )
    return "\n".join(lines)


def verdicts(replicas: list[Replica]) -> list[tuple[bool, str]]:
    """Issue #6's two checks: (passed, what was checked)."""
    base = next(r for r in replicas if r.runtime == BASELINE)
    med = statistics.median
    out = []
    for r in replicas:
        if r is not base:
            share = med(r.e2e_rps) / med(base.e2e_rps)
            out.append((share >= E2E_NOISE, f"{r.runtime} end to end: {share:.2f}x Python's req/s (floor {E2E_NOISE})"))
        replica_us, ingestor_us = med(r.nats_cpu_us), med(r.e2e_ingestor_us)
        out.append(
            (replica_us < ingestor_us, f"{r.runtime} replica {replica_us:.1f} µs/call < ingestor {ingestor_us:.1f}")
        )
    return out
