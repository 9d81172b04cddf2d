"""The README's locust command works against `lf dev examples/`: a short headless run, every answer checked."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, LfDev

pytestmark = pytest.mark.e2e


def test_locust_headless_run_has_no_failures(lf_dev: LfDev, tmp_path: Path) -> None:
    prefix = tmp_path / "lf"
    subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(REPO / "bench" / "locustfile.py"), "--host", lf_dev.base_url,
            "--headless", "-u", "10", "-r", "10", "-t", "4s", "--csv", str(prefix), "--only-summary",
            "--exit-code-on-error", "1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with (tmp_path / "lf_stats.csv").open() as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    assert int(rows["Aggregated"]["Request Count"]) > 20
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert {"hello", "echo /orders"} <= rows.keys()
