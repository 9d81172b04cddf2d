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


def table(results: Mapping[str, Result]) -> str:
    base = canary_rps(results)
    head = f"{'scenario':<28} {'req/s':>9} {'share':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'errors':>7}"
    head += "  CPU µs/call"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        cpu = ", ".join(f"{role} {us:.0f}" for role, us in r.cpu_us_per_call.items() if us >= 0.5)
        lines.append(
            f"{name:<28} {r.rps:>9.0f} {r.rps / base:>7.1%} {r.p50_ms:>6.2f}ms {r.p90_ms:>6.2f}ms "
            f"{r.p99_ms:>6.2f}ms {r.p999_ms:>6.2f}ms {r.errors:>7}  {cpu}"
        )
    return "\n".join(lines)


def as_json(results: Mapping[str, Result]) -> dict[str, object]:
    base = canary_rps(results)
    return {
        "canary_rps": base,
        "results": {name: {**r.as_dict(), "share_of_canary": r.rps / base} for name, r in results.items()},
    }
