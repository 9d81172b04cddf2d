"""The observability bench's configurations and table (the measuring itself runs lf dev: `python -m bench
observability`)."""

from __future__ import annotations

import pytest

from bench.harness import BenchError, Result
from bench.observability import CONFIGS, Runs, env_of, run, table

SINK = "http://127.0.0.1:4318"


def test_each_configuration_sets_metrics_and_tracing_as_named() -> None:
    envs = {config: env_of(config, SINK) for config in CONFIGS}
    assert envs["off"] == {"LF_METRICS": "0", "OTEL_TRACES_EXPORTER": "none"}
    assert envs["metrics"] == {"LF_METRICS": "1", "OTEL_TRACES_EXPORTER": "none"}
    assert envs["metrics+tracing"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == SINK
    assert "OTEL_TRACES_SAMPLER" not in envs["metrics+tracing"]  # the default: every new trace sampled
    assert envs["metrics+tracing 1%"]["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert envs["metrics+tracing 1%"]["OTEL_TRACES_SAMPLER_ARG"] == "0.01"


def _result(rps: float, cpu_us: float) -> Result:
    return Result(rps, 1, 2, 3, 4, 1000, 0, 0, {"ingestor": cpu_us * 0.75, "runtime": cpu_us * 0.25})


def test_the_table_gives_ratios_of_medians_against_off() -> None:
    runs = {
        "off": Runs([_result(1000, 100), _result(900, 110), _result(5000, 90)], spans=0, calls=3000),
        "metrics+tracing": Runs([_result(500, 200), _result(400, 250), _result(450, 300)], spans=6000, calls=3000),
    }
    lines = table(runs).splitlines()
    off = lines[2].split()
    traced = lines[3].split()
    assert off[1:5] == ["1000", "1.000", "100.0", "1.000"]
    assert traced[1:6] == ["450", "0.450", "250.0", "0.400", "2.000"]


def test_configurations_must_include_off_and_be_known() -> None:
    with pytest.raises(BenchError):
        run(1, 1.0, ("metrics",))
    with pytest.raises(BenchError):
        run(1, 1.0, ("off", "tracing"))
