"""Async calls end to end on `lf dev`: submit N calls to bench/functions/hello with a bounded number in flight,
wait for every result, and print accepted/s, completed/s, the completion rate, how many accepted calls were lost,
and the CPU each process spent per completed call (ingestor, dispatcher, runtime, nats-server, lf dev, and this
load generator).

    python -m bench.async_completion [--calls 5000] [--in-flight 50] [--cores all|one|split] [--sync-always]
        [--runtime go] [--baseline ../base --rounds 3] [--json out.json]

`--cores`: `all` (default) runs everything unpinned on the node; `one` pins everything, this load generator
included, to core 0 (`taskset -c 0`); `split` puts lf dev on the SUT core and the load generator on the load core
(bench/harness.py: LF_BENCH_SUT_CORE, LF_BENCH_LOAD_CORE).

`--baseline DIR` measures another checkout's platform too (its lf dev, with DIR/.venv/bin/python), in the same run
with the same load generator: `--rounds` rounds, each this checkout then the baseline, interleaved so that a noisy
moment hits both; the medians are printed side by side.

`--runtime go` (or `rust`) serves `hello` from that runtime instead (the same answer, built into a temporary function
folder); given more than once (`--runtime python --runtime go`), each runtime is measured in turn on a fresh lf
dev and the ratio of their completed/s is printed too.

`--sync-always` runs lf dev against a nats-server with `jetstream { sync_interval: always }` (fsync before every
PubAck: what surviving power loss needs), to measure what it costs. Exits 1 when an accepted call is lost (no
record, or none reaching a final status in time) or ended anything but succeeded; 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from lf_controlplane.natsserver import NatsServer

from bench import harness
from bench.chains import FUNCTIONS, Endpoint, lf_dev
from bench.harness import LOAD_CORE, BenchError, cpu_by_role, exclusive

FINAL = frozenset({"succeeded", "dead", "cancelled"})
REPO = Path(__file__).resolve().parents[1]
GO_HELLO = {
    "function.yaml": "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: hello}\n"
    "spec: {runtime: go, concurrency: 64}\n",
    "go.mod": "module hello\n\ngo 1.26\n\nrequire litefunctions.io/runtime v0.1.0\n\n"
    f"replace litefunctions.io/runtime => {REPO / 'runtimes' / 'go'}\n",
    "handler.go": 'package hello\n\nimport (\n\t"context"\n\n\t"litefunctions.io/runtime/lf"\n)\n\n'
    "// Handle is bench/functions/hello in Go.\n"
    "func Handle(_ context.Context, _ *lf.Request) (*lf.Response, error) {\n"
    '\treturn lf.Bytes(200, []byte("Hello, world!\\n")), nil\n}\n',
}
RUST_HELLO = {
    "function.yaml": "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: hello}\n"
    "spec: {runtime: rust, concurrency: 64}\n",
    "Cargo.toml": '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n\n'
    '[dependencies]\nlf-runtime = "0.1"\n\n[workspace]\n',
    "src/lib.rs": "//! bench/functions/hello in Rust.\n\nuse lf_runtime::{Request, Response, Result};\n\n"
    "#[allow(clippy::needless_pass_by_value, clippy::unnecessary_wraps)]\n"
    "pub fn handle(_req: Request) -> Result<Response> {\n"
    '    Ok(Response::bytes(b"Hello, world!\\n".to_vec()))\n}\n',
}


def functions_root(workdir: Path, runtime: str) -> Path:
    """A folder holding only `hello` (bench/functions/hello, or GO_HELLO), so nothing else runs beside it."""
    folder = workdir / "functions" / "hello"
    if runtime == "python":
        shutil.copytree(FUNCTIONS / "hello", folder)
    else:
        folder.mkdir(parents=True)
        for name, text in (GO_HELLO if runtime == "go" else RUST_HELLO).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return folder.parent


@contextmanager
def platform(workdir: Path, *, sync_always: bool, runtime: str = "python", checkout: Path = REPO) -> Iterator[Endpoint]:
    """lf dev (of `checkout`) on `hello` of `runtime`; with `sync_always`, on a broker of our own that fsyncs every
    write."""
    root = functions_root(workdir, runtime)
    python = sys.executable if checkout == REPO else str(checkout / ".venv" / "bin" / "python")
    if not sync_always:
        with lf_dev(workdir, root=root, checkout=checkout, python=python) as endpoint:
            pulling(workdir / "lf-dev.log")
            yield endpoint
        return
    state = workdir / "nats"
    jetstream = f'jetstream {{\n  store_dir: "{state / "jetstream"}"\n  sync_interval: always\n}}'
    broker = NatsServer(state_dir=state, jetstream=False, extra_config=jetstream).start()
    try:
        with lf_dev(
            workdir, root=root, extra_env={"LF_NATS_URL": broker.url}, checkout=checkout, python=python
        ) as endpoint:
            pulling(workdir / "lf-dev.log")
            yield Endpoint(url=endpoint.url, roots=[*endpoint.roots, broker.process.pid if broker.process else 0])
    finally:
        broker.stop()


def pulling(log: Path, timeout: float = 60.0) -> None:
    """Until hello's async calls are pulled (`async_ready`: the dispatcher's, or before issue 15 the runtime's):
    lf dev answers sync calls before that, and a dispatcher still importing would be measured as the calls' cost
    (and compete with the ingestor for the first accepted calls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if any("async_ready" in line and "hello" in line for line in text.splitlines()):
            time.sleep(0.5)  # the first pull requests settle
            return
        time.sleep(0.05)
    raise BenchError(f"hello's async calls were not pulled within {timeout:.0f} s (see {log})")


class Connection:
    """One keep-alive HTTP/1.1 connection, a request written in one piece. httpx's async pool managed ~120
    calls/s at 50 in flight here (~1,300/s this way), so it measured the client, not lf dev."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split()[1]), headers, content

    def close(self) -> None:
        self.writer.close()


async def submit_all(url: str, calls: int, in_flight: int) -> tuple[list[str], dict[int, int], float]:
    """(call ids of the 202s, count per other status (-1: connection failed), seconds it took)."""
    accepted: list[str] = []
    refused: dict[int, int] = {}
    next_call = iter(range(calls))

    async def worker() -> None:
        conn = await Connection.open(url)
        try:
            for n in next_call:
                try:
                    status, headers, _ = await conn.request("POST", "/async-function/hello", f"call {n}".encode())
                except (OSError, asyncio.IncompleteReadError):
                    refused[-1] = refused.get(-1, 0) + 1
                    conn.close()
                    conn = await Connection.open(url)
                    continue
                if status == 202:
                    accepted.append(headers["x-call-id"])
                else:
                    refused[status] = refused.get(status, 0) + 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return accepted, refused, time.perf_counter() - started


async def wait_results(url: str, call_ids: list[str], timeout: float, pollers: int = 8) -> tuple[dict[str, str], float]:
    """The final status of each call that reached one within `timeout` (missing: lost), and when the last did."""
    final: dict[str, str] = {}
    pending = list(call_ids)
    deadline = time.perf_counter() + timeout
    last_done = time.perf_counter()
    conns = [await Connection.open(url) for _ in range(pollers)]

    async def poller(conn: Connection, chunks: Iterator[str], still: list[str]) -> None:
        nonlocal last_done
        for call_id in chunks:
            status, _, body = await conn.request("GET", f"/invocations/{call_id}")
            state = json.loads(body).get("status") if status == 200 else None
            if state in FINAL:
                final[call_id] = state
                last_done = time.perf_counter()
            else:  # queued, running, failed (a retry is due) or 404 (not stored: lost unless it shows up)
                still.append(call_id)

    try:
        while pending and time.perf_counter() < deadline:
            still: list[str] = []
            chunks = iter(pending)
            await asyncio.gather(*(poller(conn, chunks, still) for conn in conns))
            pending = still
            if pending:
                await asyncio.sleep(0.2)
    finally:
        for conn in conns:
            conn.close()
    return final, last_done


async def run(url: str, calls: int, in_flight: int, timeout: float) -> dict[str, object]:
    started = time.perf_counter()
    accepted, refused, submit_s = await submit_all(url, calls, in_flight)
    final, last_done = await wait_results(url, accepted, timeout)
    succeeded = sum(1 for s in final.values() if s == "succeeded")
    return {
        "calls": calls,
        "in_flight": in_flight,
        "accepted": len(accepted),
        "refused": refused,
        "accepted_per_s": round(len(accepted) / submit_s, 1),
        "succeeded": succeeded,
        "not_succeeded": len(final) - succeeded,
        "lost": len(accepted) - len(final),
        "completion_rate": round(succeeded / len(accepted), 6) if accepted else 0.0,
        "completed_per_s": round(succeeded / (last_done - started), 1),
        "end_to_end_s": round(last_done - started, 2),
    }


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per role during the run (a Go function's binary, `function`, counts as the runtime)."""
    used: dict[str, float] = {}
    for role, seconds in after.items():
        name = "runtime" if role == "function" else role
        used[name] = round(used.get(name, 0.0) + seconds - before.get(role, 0.0), 3)
    return used


CORES = {"all": None, "one": "0", "split": None}


def pin(cores: str) -> None:
    """Where lf dev (bench.harness.service pins it to SUT_CORE) and this process run."""
    everything = ",".join(str(c) for c in sorted(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))))
    if cores == "all":
        harness.SUT_CORE = everything
        os.sched_setaffinity(0, {int(c) for c in everything.split(",")})
    elif cores == "one":
        harness.SUT_CORE = "0"
        os.sched_setaffinity(0, {0})
    else:
        os.sched_setaffinity(0, {int(LOAD_CORE)})  # the client on the load core, lf dev on the SUT core


def measure(args: argparse.Namespace, runtime: str, checkout: Path) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory(prefix="lf-async-bench-") as tmp,
        platform(Path(tmp), sync_always=args.sync_always, runtime=runtime, checkout=checkout) as endpoint,
    ):
        before = cpu_by_role(endpoint.roots)
        load_before = time.process_time()
        figures = asyncio.run(run(endpoint.url, args.calls, args.in_flight, args.timeout))
        used = cpu_used(before, cpu_by_role(endpoint.roots))
        used["load generator"] = round(time.process_time() - load_before, 3)
    succeeded = int(figures["succeeded"])  # type: ignore[call-overload]
    figures["cpu_s"] = used
    figures["cpu_us_per_call"] = {role: round(s / max(succeeded, 1) * 1e6, 1) for role, s in used.items()}
    figures["runtime_cpu_us_per_call"] = figures["cpu_us_per_call"].get("runtime", 0.0)  # type: ignore[attr-defined]
    figures["sync_interval"] = "always" if args.sync_always else "default"
    figures["runtime"] = runtime
    figures["cores"] = args.cores
    figures["checkout"] = str(checkout)
    return figures


def side_by_side(rounds: list[tuple[dict[str, object], dict[str, object]]]) -> dict[str, object]:
    """Medians of each figure over the rounds, this checkout against the baseline."""

    def median(runs: list[dict[str, object]], key: str) -> float:
        return round(statistics.median(float(r[key]) for r in runs), 1)  # type: ignore[arg-type]

    def cpu(runs: list[dict[str, object]]) -> dict[str, float]:
        roles = {role for r in runs for role in r["cpu_us_per_call"]}  # type: ignore[attr-defined]
        return {
            role: round(statistics.median(r["cpu_us_per_call"].get(role, 0.0) for r in runs), 1)  # type: ignore[attr-defined]
            for role in sorted(roles)
        }

    this, base = [r[0] for r in rounds], [r[1] for r in rounds]
    out: dict[str, object] = {}
    for key in ("accepted_per_s", "completed_per_s"):
        out[key] = {"this": median(this, key), "baseline": median(base, key),
                    "each_this": [r[key] for r in this], "each_baseline": [r[key] for r in base]}  # fmt: skip
    out["cpu_us_per_call"] = {"this": cpu(this), "baseline": cpu(base)}
    out["lost"] = {"this": sum(int(r["lost"]) for r in this), "baseline": sum(int(r["lost"]) for r in base)}  # type: ignore[call-overload]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.async_completion", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the results")
    parser.add_argument("--sync-always", action="store_true", help="JetStream fsyncs every write")
    parser.add_argument("--cores", choices=tuple(CORES), default="all", help="where everything runs (see above)")
    parser.add_argument(
        "--runtime", action="append", choices=("python", "go", "rust"), help="hello's runtime (repeatable)"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of this checkout then the baseline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    pin(args.cores)
    runs: list[dict[str, object]] = []
    rounds: list[tuple[dict[str, object], dict[str, object]]] = []
    try:
        with exclusive():  # no other bench on the machine meanwhile
            if args.baseline is not None:
                runtime = (args.runtime or ["python"])[0]
                for n in range(args.rounds):
                    this = measure(args, runtime, REPO)
                    base = measure(args, runtime, args.baseline.resolve())
                    print(f"round {n + 1}: this {_line(this)} | baseline {_line(base)}", file=sys.stderr)
                    rounds.append((this, base))
                    runs += [this, base]
            else:
                for runtime in args.runtime or ["python"]:
                    runs.append(measure(args, runtime, REPO))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report: dict[str, object] = runs[0]
    if rounds:
        report = {"side_by_side": side_by_side(rounds), "runs": runs}
    elif len(runs) > 1:
        first = float(runs[0]["completed_per_s"])  # type: ignore[arg-type]
        ratios = {str(r["runtime"]): round(float(r["completed_per_s"]) / first, 2) for r in runs[1:]}  # type: ignore[arg-type]
        report = {"runs": runs, f"completed_per_s_vs_{runs[0]['runtime']}": ratios}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    for figures in runs:
        if figures["lost"] or figures["not_succeeded"]:
            lost, failed = figures["lost"], figures["not_succeeded"]
            print(
                f"FAIL ({figures['checkout']}): {lost} accepted calls lost, {failed} did not succeed", file=sys.stderr
            )
            return 1
    return 0


def _line(figures: dict[str, object]) -> str:
    cpu = ", ".join(f"{k} {v:g}" for k, v in figures["cpu_us_per_call"].items())  # type: ignore[attr-defined]
    return (
        f"accepted/s {figures['accepted_per_s']}, completed/s {figures['completed_per_s']}, lost {figures['lost']}"
        f" (CPU µs/call: {cpu})"
    )


if __name__ == "__main__":
    sys.exit(main())
