"""`python -m bench observability`: what metrics and tracing cost a sync call (issue #4; budget: metrics on
within 5% of off, docs/architecture.md "Budgets").

Three configurations of `lf dev` on the bench functions, measured on `sync-hello` in interleaved rounds (off,
metrics, tracing, off, metrics, ...) so that drift on a shared machine hits all three alike:

- `off`: LF_METRICS=0 (the ingestor keeps no per-function counters and serves no /metrics);
- `metrics`: LF_METRICS=1, the default;
- `metrics+tracing`: as `metrics`, plus OTLP/HTTP export of every call's spans (ingestor and runtime, parent-based
  always-on sampling: the worst case) to a sink process on the load core;
- `metrics+tracing 1%`: the same with `parentbased_traceidratio` 0.01, what a busy function would run with.

The SDK's batch processor has a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048): at thousands of calls per second
with every call sampled it drops spans rather than slow calls down; the table shows the share of spans exported.

Reported per configuration: the median requests/s and the median CPU µs per call of the whole chain, each as a
ratio to `off`; CPU per call is the steady figure under noise.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lf_controlplane.natsserver import free_port

from bench.chains import lf_dev
from bench.harness import LOAD_CORE, REPO, BenchError, Result, measure, pinned, stop
from bench.scenarios import SCENARIOS

CONFIGS = ("off", "metrics", "metrics+tracing", "metrics+tracing 1%")


@dataclass
class Runs:
    results: list[Result] = field(default_factory=list)
    spans: int = 0
    calls: int = 0

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.results)

    @property
    def cpu_us(self) -> float:
        return statistics.median(sum(r.cpu_us_per_call.values()) for r in self.results)


@contextmanager
def otlp_sink(workdir: Path) -> Iterator[str]:
    """The sink on the load core; yields its endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    port = free_port()
    with (workdir / "otlp-sink.log").open("ab") as log:
        proc = subprocess.Popen(
            pinned([sys.executable, "-m", "bench.otlpsink", str(port)], LOAD_CORE), cwd=REPO, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                spans_received(url)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the OTLP sink did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        stop(proc)


def spans_received(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=5) as answer:
        return int(answer.read())


def env_of(config: str, sink: str) -> dict[str, str]:
    env = {"LF_METRICS": "0" if config == "off" else "1"}
    if config.startswith("metrics+tracing"):
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        if config.endswith("1%"):
            env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    else:
        env |= {"OTEL_TRACES_EXPORTER": "none"}
    return env


def run(rounds: int, duration: float, configs: tuple[str, ...] = CONFIGS) -> dict[str, Runs]:
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or "off" not in configs:
        raise BenchError(f"configurations must include 'off' and be among {', '.join(CONFIGS)}; got {configs}")
    scenario = SCENARIOS["sync-hello"]
    runs = {config: Runs() for config in configs}
    with tempfile.TemporaryDirectory(prefix="lf-bench-obs-") as tmp:
        workdir = Path(tmp)
        with otlp_sink(workdir) as sink:
            for round_ in range(rounds):
                for config in configs:
                    before = spans_received(sink)
                    state = workdir / f"{config}-{round_}".replace(" ", "-").replace("%", "pct")
                    state.mkdir()
                    with lf_dev(state, extra_env=env_of(config, sink)) as endpoint:
                        result = measure(
                            endpoint.url, scenario.request, roots=endpoint.roots, duration=duration,
                            connections=scenario.connections, workdir=workdir,
                        )  # fmt: skip
                    exported = spans_received(sink) - before  # lf dev is stopped: its spans are flushed
                    if config.startswith("metrics+tracing") != (exported > 0):
                        raise BenchError(f"{config}: {exported} spans exported")
                    if result.errors or result.non_2xx:
                        raise BenchError(f"{config}: {result.errors} errors, {result.non_2xx} non-2xx answers")
                    runs[config].results.append(result)
                    runs[config].spans += exported
                    runs[config].calls += result.requests
                    print(f"  round {round_ + 1} {config}: {result.rps:.0f} req/s, "
                          f"{sum(result.cpu_us_per_call.values()):.1f} µs/call", file=sys.stderr)  # fmt: skip
    return runs


def table(runs: dict[str, Runs]) -> str:
    base = runs["off"]
    head = f"{'sync-hello':<20} {'req/s':>8} {'vs off':>7} {'CPU µs/call':>12} {'vs off':>7} {'spans/call':>11}  runs"
    lines = [head, "-" * len(head)]
    for config, r in runs.items():
        lines.append(
            f"{config:<20} {r.rps:>8.0f} {r.rps / base.rps:>7.3f} {r.cpu_us:>12.1f} {base.cpu_us / r.cpu_us:>7.3f}"
            f" {r.spans / max(r.calls, 1):>11.3f}  {len(r.results)}"
        )
    lines.append("(vs off: ratio of medians; for CPU off's µs/call over this one's, so < 1 costs more. spans/call:")
    lines.append(" exported over measured calls; warm-up calls are traced too, 2 per call if every span is kept)")
    return "\n".join(lines)
