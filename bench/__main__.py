"""`python -m bench`: run load scenarios, peers, or the CI gate.

    python -m bench run [SCENARIO ...] [--duration 10] [--json out.json]
    python -m bench peers [--duration 10] [--json out.json]
    python -m bench gate [--budgets bench/budgets.toml]
    python -m bench observability [--rounds 3] [--duration 8] [--configs off,metrics,...]
    python -m bench runtimes [--rounds 3] [--duration 4]
    python -m bench versus --baseline DIR [SCENARIO ...] [--rounds 3] [--duration 8]

Every run measures the canary (a bare granian RSGI hello on the same core) before and after the scenarios and
reports each figure absolute and as a share of the canary's mean requests/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import gate, report
from bench.chains import Chain, canary
from bench.harness import BenchError, Request, Result, measure
from bench.scenarios import SCENARIOS, Scenario


def run_chain(chain: Chain, scenarios: Sequence[Scenario], duration: float, workdir: Path) -> dict[str, Result]:
    """Start `chain` once and measure each of its scenarios."""
    results: dict[str, Result] = {}
    with chain(workdir) as endpoint:
        for scenario in scenarios:
            print(f"  {scenario.name}: {scenario.about}", file=sys.stderr)
            results[scenario.name] = measure(
                endpoint.url, scenario.request, roots=endpoint.roots, duration=duration,
                connections=scenario.connections, workdir=workdir,
            )  # fmt: skip
    return results


def measure_canary(duration: float, workdir: Path, connections: int = 50) -> Result:
    with canary(workdir) as endpoint:
        return measure(endpoint.url, Request("/"), roots=endpoint.roots, duration=duration,
                       connections=connections, workdir=workdir)  # fmt: skip


def run_scenarios(names: Sequence[str], duration: float) -> dict[str, Result]:
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise BenchError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    chosen = [SCENARIOS[n] for n in names] or list(SCENARIOS.values())
    by_chain: dict[Chain, list[Scenario]] = {}
    for scenario in chosen:
        by_chain.setdefault(scenario.chain, []).append(scenario)
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        workdir = Path(tmp)
        results = {"canary (before)": measure_canary(duration, workdir)}
        for chain, scenarios in by_chain.items():
            results.update(run_chain(chain, scenarios, duration, workdir))
        results["canary (after)"] = measure_canary(duration, workdir)
    return results


def run_peers(duration: float) -> dict[str, Result]:
    from bench import peers

    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        workdir = Path(tmp)
        results = {"canary (before)": measure_canary(duration, workdir)}
        for scenario in peers.SCENARIOS:
            results.update(run_chain(scenario.chain, [scenario], duration, workdir))
        results["canary (after)"] = measure_canary(duration, workdir)
    return results


def observability_configs() -> tuple[str, ...]:
    from bench.observability import CONFIGS

    return CONFIGS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure scenarios (all by default)")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    for sub in (run, commands.add_parser("peers", help="OpenFaaS, Knative and uvicorn, same handler")):
        sub.add_argument("--duration", type=float, default=10.0)
        sub.add_argument("--json", type=Path, help="write the results here as JSON")
    obs = commands.add_parser("observability", help="sync-hello with metrics off / on / on + tracing")
    obs.add_argument("--rounds", type=int, default=3)
    obs.add_argument("--duration", type=float, default=8.0)
    obs.add_argument("--configs", default=",".join(observability_configs()), help="comma-separated, 'off' included")
    rt = commands.add_parser("runtimes", help="Python, Go and Rust replicas side by side, ratios to Python")
    rt.add_argument("--rounds", type=int, default=3)
    rt.add_argument("--duration", type=float, default=4.0)
    vs = commands.add_parser("versus", help="this checkout against another (--baseline DIR), interleaved rounds")
    vs.add_argument("--baseline", type=Path, required=True, help="the other checkout (with its .venv synced)")
    vs.add_argument("scenarios", nargs="*", default=["sync-hello"], metavar="SCENARIO")
    vs.add_argument("--rounds", type=int, default=3)
    vs.add_argument("--duration", type=float, default=8.0)
    gate_cmd = commands.add_parser("gate", help="the short CI check against bench/budgets.toml")
    gate_cmd.add_argument("--budgets", type=Path, default=gate.BUDGETS)
    args = parser.parse_args(argv)
    try:
        if args.command == "gate":
            return gate.run(args.budgets)
        if args.command == "runtimes":
            from bench import runtimes

            measured = runtimes.run(args.rounds, args.duration)
            print(runtimes.table(measured))
            checks = runtimes.verdicts(measured)
            for passed, what in checks:
                print(f"{'ok  ' if passed else 'FAIL'} {what}")
            return 0 if all(passed for passed, _ in checks) else 1
        if args.command == "versus":
            from bench import versus

            print(versus.table(versus.run(args.baseline.resolve(), args.scenarios, args.rounds, args.duration)))
            return 0
        if args.command == "observability":
            from bench import observability

            configs = tuple(c.strip() for c in args.configs.split(","))
            print(observability.table(observability.run(args.rounds, args.duration, configs)))
            return 0
        results = run_scenarios(args.scenarios, args.duration) if args.command == "run" else run_peers(args.duration)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
