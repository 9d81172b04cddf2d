"""The systems under test. A chain starts its processes pinned to the SUT core and yields an Endpoint; the
harness sends load to `url` and counts the CPU of `roots` and their descendants.

Ours: the canary (bare granian RSGI hello), `lf dev` serving bench/functions/, and a platform with many routes
served by wildcard bench responders. Peers live in `bench.peers`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
from lf_controlplane.natsserver import NatsServer, free_port
from lf_core.contract.routes import FunctionRoute, encode_route, route_key
from lf_core.contract.subjects import ROUTES_BUCKET

from bench.harness import REPO, SUT_CORE, BenchError, require, service, wait_http

FUNCTIONS = REPO / "bench" / "functions"


@dataclass(frozen=True)
class Endpoint:
    url: str
    roots: list[int]


Chain = Callable[[Path], AbstractContextManager[Endpoint]]


def granian_argv(target: str, port: int, *extra: str) -> list[str]:
    """One granian worker, RSGI on uvloop, the defaults the ingestor uses (not `--task-impl rust`:
    docs/architecture.md, "Decisions")."""
    return [
        sys.executable, "-m", "granian", "--interface", "rsgi", "--loop", "uvloop", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-ws", *extra, target,
    ]  # fmt: skip


@contextmanager
def canary(workdir: Path) -> Iterator[Endpoint]:
    """The bare granian RSGI hello-world every run measures on the same core (docs/performance.md)."""
    port = free_port()
    with service(granian_argv("bench.canary:app", port), cwd=REPO, log=workdir / "canary.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", proc=proc)
        yield Endpoint(url=url, roots=[proc.pid])


@contextmanager
def lf_dev(
    workdir: Path,
    root: Path = FUNCTIONS,
    extra_env: dict[str, str] | None = None,
    checkout: Path = REPO,
    python: str = sys.executable,
) -> Iterator[Endpoint]:
    """`lf dev` on the bench functions: ingestor → NATS → Python runtime, everything on the SUT core. `checkout`
    and `python` run another checkout's platform (`bench versus`) on the same functions."""
    port = free_port()
    argv = [python, "-m", "lf_controlplane", "dev", str(root), "--port", str(port)]
    argv += ["--state-dir", str(workdir / ".lf"), "--no-reload"]
    # LF_METRICS passes through, to measure what metrics cost (`LF_METRICS=0 python -m bench run sync-hello`)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LF_") or k == "LF_METRICS"} | (extra_env or {})
    with service(argv, env=env, cwd=checkout, log=workdir / "lf-dev.log") as proc:
        url = f"http://127.0.0.1:{port}"
        for name in sorted(p.name for p in root.iterdir() if (p / "function.yaml").is_file()):
            wait_http(f"{url}/function/{name}", proc=proc, expect=_expected_idle_status(name))
        yield Endpoint(url=url, roots=[proc.pid])


def _expected_idle_status(name: str) -> int:
    return 400 if name == "json" else 200  # json refuses an empty body: a 400 from the function means it serves


@contextmanager
def lf_dev_valkey(workdir: Path) -> Iterator[Endpoint]:
    """`lf dev` with Valkey (Debian's redis-server 7 here, on the SUT core too) and rate limits in exact mode: one
    Valkey round trip per rate-limited call, the cost docs/architecture.md warns about ("Decisions")."""
    require("redis-server", "apt-get install redis-server")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with service(argv, cwd=workdir, log=workdir / "redis.log") as redis:
        wait_redis(port, proc=redis)
        env = {"LF_VALKEY_URL": f"redis://127.0.0.1:{port}/0", "LF_RATE_LIMIT_MODE": "exact"}
        with lf_dev(workdir, extra_env=env) as endpoint:
            yield Endpoint(url=endpoint.url, roots=[*endpoint.roots, redis.pid])


def wait_redis(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"redis-server did not answer on port {port}")


@contextmanager
def many_routes(workdir: Path, routes: int = 1000, responders: int = 2) -> Iterator[Endpoint]:
    """An ingestor with `routes` functions in LF_ROUTES, all served by `responders` wildcard bench responders."""
    with ExitStack() as stack:
        broker = NatsServer(state_dir=workdir / "nats")
        broker.start()
        stack.callback(broker.stop)
        assert broker.process is not None
        os.sched_setaffinity(broker.process.pid, {int(SUT_CORE)})
        _fill_routes(broker.url, routes)
        port = free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
        env = {**base_env, "LF_PORT": str(port), "LF_NATS_URL": broker.url}
        pids = [broker.process.pid]
        for index in range(responders):
            argv = [sys.executable, "-m", "bench.responder", broker.url]
            proc = stack.enter_context(service(argv, cwd=REPO, log=workdir / f"responder-{index}.log"))
            pids.append(proc.pid)
        ingestor = stack.enter_context(
            service([sys.executable, "-m", "lf_dataplane"], env=env, cwd=REPO, log=workdir / "ingestor.log")
        )
        pids.append(ingestor.pid)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/function/fn-{routes - 1}.bench", proc=ingestor)
        yield Endpoint(url=url, roots=pids)


def _fill_routes(nats_url: str, count: int) -> None:
    async def fill() -> None:
        nc = await nats.connect(nats_url)
        kv = await nc.jetstream().create_key_value(bucket=ROUTES_BUCKET, history=1)
        for i in range(count):
            route = FunctionRoute(
                namespace="bench", name=f"fn-{i}", timeout_ms=30_000,
                max_request_bytes=6 << 20, max_response_bytes=6 << 20,
            )  # fmt: skip
            await kv.put(route_key(route), encode_route(route))
        await nc.close()

    asyncio.run(fill())
