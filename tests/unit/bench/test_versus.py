"""`bench versus`'s table and its refusals (the measuring itself runs two `lf dev`s: `python -m bench versus`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness import BenchError, Result
from bench.versus import Side, run, table


def _result(rps: float, ingestor_us: float, runtime_us: float) -> Result:
    return Result(rps, 1, 2, 3, 4, 1000, 0, 0, {"ingestor": ingestor_us, "runtime": runtime_us})


def test_the_table_gives_medians_and_ratios_to_the_baseline_per_role() -> None:
    runs = {
        "sync-hello": {
            "baseline": Side([_result(1000, 80, 20), _result(900, 90, 20), _result(5000, 70, 20)]),
            "this": Side([_result(800, 100, 20), _result(700, 110, 30), _result(750, 90, 10)]),
        }
    }
    rows = {line[:22].strip(): line[22:].split() for line in table(runs).splitlines()[2:6]}
    assert rows["req/s"] == ["1000", "750", "0.750"]
    assert rows["CPU µs/call (chain)"] == ["100.0", "120.0", "1.200"]
    assert rows["ingestor"] == ["80.0", "100.0", "1.250"]
    assert rows["runtime"] == ["20.0", "20.0", "1.000"]


def test_a_baseline_without_its_venv_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="uv sync --locked"):
        run(tmp_path, ["sync-hello"], rounds=1, duration=1)


def test_only_scenarios_of_the_plain_lf_dev_chain(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    with pytest.raises(BenchError, match="unknown scenario"):
        run(tmp_path, ["no-such"], rounds=1, duration=1)
    with pytest.raises(BenchError, match="plain `lf dev` chain"):
        run(tmp_path, ["ratelimit-exact-valkey"], rounds=1, duration=1)
