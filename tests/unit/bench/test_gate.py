"""The gate's arithmetic and the wrk report parsing, without running anything."""

from __future__ import annotations

import pytest

from bench.gate import judge, reference
from bench.harness import BenchError, Result, parse_report
from bench.report import canary_rps, table


def result(rps: float, cpu_us: float, errors: int = 0) -> Result:
    return Result(
        rps=rps, p50_ms=1, p90_ms=2, p99_ms=3, p999_ms=4, requests=int(rps * 5), errors=errors, non_2xx=0,
        cpu_us_per_call={"a": cpu_us / 2, "b": cpu_us / 2},
    )  # fmt: skip


def test_share_is_the_canarys_cpu_per_call_over_ours_against_the_mean_canary() -> None:
    results = {
        "canary (before)": result(40_000, cpu_us=20),
        "canary (after)": result(60_000, cpu_us=30),
        "sync-hello": result(10_000, cpu_us=100),
    }
    assert canary_rps(results) == 50_000
    [verdict] = judge(results, {"sync-hello": {"min_share": 0.25}}, margin=0.2)
    assert verdict.share == pytest.approx(0.25)
    assert verdict.rps_share == pytest.approx(0.2)
    assert verdict.floor == pytest.approx(0.2)
    assert verdict.passed


def test_a_paired_canary_run_is_the_scenario_s_reference() -> None:
    # Outside load slowed everything while sync-hello ran: its own canary run saw it too, the mean did not.
    results = {
        "canary (before)": result(50_000, cpu_us=20),
        reference("sync-hello"): result(30_000, cpu_us=30),
        "sync-hello": result(8_000, cpu_us=120),
        "canary (after)": result(50_000, cpu_us=20),
    }
    budgets = {"sync-hello": {"min_share": 0.25}}
    unnamed = {("canary (other)" if name == reference("sync-hello") else name): r for name, r in results.items()}
    [unpaired] = judge(unnamed, budgets, margin=0.2)
    assert unpaired.share == pytest.approx(70 / 3 / 120) and not unpaired.passed
    [paired] = judge(results, budgets, margin=0.2)
    assert paired.share == pytest.approx(0.25) and paired.passed


def test_a_share_below_the_floor_fails() -> None:
    results = {"canary": result(50_000, cpu_us=20), "sync-hello": result(9_000, cpu_us=150)}
    [verdict] = judge(results, {"sync-hello": {"min_share": 0.25}}, margin=0.2)
    assert not verdict.passed
    assert "FAIL" in verdict.line()


def test_any_error_fails_even_when_fast_enough() -> None:
    results = {"canary": result(50_000, cpu_us=20), "sync-hello": result(40_000, cpu_us=25, errors=3)}
    [verdict] = judge(results, {"sync-hello": {"min_share": 0.25}}, margin=0.2)
    assert not verdict.passed
    assert "3 errors" in verdict.line()


def test_wrk_report_line_is_parsed() -> None:
    output = (
        "Running 5s test\n"
        'LF_REPORT {"requests": 50000, "duration_us": 5000000, "p50_us": 1500, "p90_us": 2500, "p99_us": 4000, '
        '"p999_us": 9000, "errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0}}\n'
    )
    parsed = parse_report(output)
    assert parsed.rps == 10_000
    assert (parsed.p50_ms, parsed.p99_ms, parsed.p999_ms) == (1.5, 4.0, 9.0)
    assert (parsed.errors, parsed.non_2xx) == (3, 2)
    assert "sync" not in table({"canary": parsed})


def test_missing_report_is_an_error() -> None:
    with pytest.raises(BenchError, match="no report"):
        parse_report("wrk: connection refused\n")
