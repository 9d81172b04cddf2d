"""`python -m bench versus --baseline DIR`: this checkout against another one (an earlier commit), side by side.

Both platforms run `lf dev` on this checkout's bench functions, one after the other in interleaved rounds (baseline,
this, baseline, this, ...) so that drift on a shared machine hits both alike; the baseline with its own checkout's
Python (`DIR/.venv/bin/python`, made by `uv sync --locked` there). What a change costs the hot path is then a ratio
measured in one run, not two numbers from two days:

    git worktree add /tmp/base <rev> && (cd /tmp/base && uv sync --locked)
    python -m bench versus --baseline /tmp/base sync-hello sync-1k

Reported per scenario and side: the median requests/s and the median CPU µs per call, the chain's total and each
role's (ingestor, runtime, nats-server), each as a ratio to the baseline.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.chains import lf_dev
from bench.harness import BenchError, measure
from bench.observability import Runs
from bench.scenarios import SCENARIOS

SIDES = ("baseline", "this")


class Side(Runs):
    """One side's runs: the medians of `Runs`, and CPU per call by role."""

    def role_us(self, role: str) -> float:
        return statistics.median(r.cpu_us_per_call.get(role, 0.0) for r in self.results)

    @property
    def roles(self) -> list[str]:
        return sorted({role for r in self.results for role in r.cpu_us_per_call})


def run(baseline: Path, scenarios: Sequence[str], rounds: int, duration: float) -> dict[str, dict[str, Side]]:
    python = baseline / ".venv" / "bin" / "python"
    if not python.is_file():
        raise BenchError(f"{python} is missing: run `uv sync --locked` in {baseline} first")
    unknown = [n for n in scenarios if n not in SCENARIOS]
    if unknown:
        raise BenchError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    chosen = [SCENARIOS[n] for n in scenarios]
    if any(s.chain is not SCENARIOS["sync-hello"].chain for s in chosen):
        raise BenchError("versus measures scenarios of the plain `lf dev` chain only (sync-hello, sync-1k, ...)")
    runs = {s.name: {side: Side() for side in SIDES} for s in chosen}
    with tempfile.TemporaryDirectory(prefix="lf-bench-versus-") as tmp:
        workdir = Path(tmp)
        for round_ in range(rounds):
            for side in SIDES:
                state = workdir / f"{side}-{round_}"
                state.mkdir()
                chain = lf_dev(state, checkout=baseline, python=str(python)) if side == "baseline" else lf_dev(state)
                with chain as endpoint:
                    for scenario in chosen:
                        result = measure(
                            endpoint.url, scenario.request, roots=endpoint.roots, duration=duration,
                            connections=scenario.connections, workdir=workdir,
                        )  # fmt: skip
                        if result.errors or result.non_2xx:
                            failed = f"{result.errors} errors, {result.non_2xx} non-2xx answers"
                            raise BenchError(f"{side} {scenario.name}: {failed}")
                        runs[scenario.name][side].results.append(result)
                        print(f"  round {round_ + 1} {side:<8} {scenario.name}: {result.rps:.0f} req/s, "
                              f"{sum(result.cpu_us_per_call.values()):.1f} µs/call", file=sys.stderr)  # fmt: skip
    return runs


def table(runs: dict[str, dict[str, Side]]) -> str:
    lines = []
    for scenario, sides in runs.items():
        base, this = sides["baseline"], sides["this"]
        head = f"{scenario:<22} {'baseline':>10} {'this':>10} {'this/base':>10}"
        lines += [head, "-" * len(head)]
        lines.append(f"{'req/s':<22} {base.rps:>10.0f} {this.rps:>10.0f} {this.rps / base.rps:>10.3f}")
        lines.append(f"{'CPU µs/call (chain)':<22} {base.cpu_us:>10.1f} {this.cpu_us:>10.1f} "
                     f"{this.cpu_us / base.cpu_us:>10.3f}")  # fmt: skip
        for role in sorted(set(base.roles) | set(this.roles)):
            b, t = base.role_us(role), this.role_us(role)
            lines.append(f"{'  ' + role:<22} {b:>10.1f} {t:>10.1f} {t / b if b else float('nan'):>10.3f}")
        lines.append(f"({len(this.results)} rounds each, medians; this/base > 1 for CPU means this costs more)")
        lines.append("")
    return "\n".join(lines).rstrip()
