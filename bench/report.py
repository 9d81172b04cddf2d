"""Results as a table for people and as JSON for tools; every figure also as a share of the canary."""

from __future__ import annotations

from collections.abc import Mapping

from bench.harness import Result


def canary_rps(results: Mapping[str, Result]) -> float:
    """Mean requests/s of the canary runs (before and after the scenarios)."""
    runs = [r.rps for name, r in results.items() if name.startswith("canary")]
    if not runs:
        raise ValueError("no canary run in the results")
    return sum(runs) / len(runs)


def canary_cpu_us(results: Mapping[str, Result]) -> float:
    """Mean CPU µs per call of the canary runs."""
    runs = [sum(r.cpu_us_per_call.values()) for name, r in results.items() if name.startswith("canary")]
    if not runs:
        raise ValueError("no canary run in the results")
    return sum(runs) / len(runs)


def cpu_share(result: Result, canary_us: float) -> float:
    """The canary's CPU per call over this chain's: the share of the canary's throughput this chain would reach
    with one core to itself. Unlike requests/s it barely moves when other work shares the machine."""
    total = sum(result.cpu_us_per_call.values())
    return canary_us / total if total > 0 else 0.0


def table(results: Mapping[str, Result]) -> str:
    base = canary_rps(results)
    base_cpu = canary_cpu_us(results) if all(r.cpu_us_per_call for r in results.values()) else 0.0
    width = max(28, *(len(name) for name in results))
    head = (
        f"{'scenario':<{width}} {'req/s':>9} {'share':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'errors':>7}"
    )
    head += "  cpu-share  CPU µs/call"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        cpu = ", ".join(f"{role} {us:.0f}" for role, us in r.cpu_us_per_call.items() if us >= 0.5)
        lines.append(
            f"{name:<{width}} {r.rps:>9.0f} {r.rps / base:>7.1%} {r.p50_ms:>6.2f}ms {r.p90_ms:>6.2f}ms "
            f"{r.p99_ms:>6.2f}ms {r.p999_ms:>6.2f}ms {r.errors:>7}  {cpu_share(r, base_cpu):>9.1%}  {cpu}"
        )
    failed = [name for name, r in results.items() if r.errors]
    if failed:
        lines.append(f"WARNING: requests failed in {', '.join(failed)}: their figures are not comparable")
    return "\n".join(lines)


def as_json(results: Mapping[str, Result]) -> dict[str, object]:
    base = canary_rps(results)
    base_cpu = canary_cpu_us(results)
    return {
        "canary_rps": base,
        "canary_cpu_us_per_call": base_cpu,
        "results": {
            name: {**r.as_dict(), "share_of_canary": r.rps / base, "cpu_share_of_canary": cpu_share(r, base_cpu)}
            for name, r in results.items()
        },
    }
