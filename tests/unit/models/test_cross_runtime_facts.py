"""The Python side of native/vectors/facts.json: the constants the ingestor and every runtime must agree on. The Go
and Rust runtimes' tests read the same file (runtimes/go, runtimes/rust), so a change made in one place only fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lf_core.contract.histograms import DURATION_BUCKETS
from lf_core.contract.protocol import RUNTIME_MARGIN_FRACTION, RUNTIME_MARGIN_MAX_MS, ErrorKind
from lf_runtime.metrics import OUTCOMES

FACTS = Path(__file__).resolve().parents[3] / "native" / "vectors" / "facts.json"


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    return json.loads(FACTS.read_text())  # type: ignore[no-any-return]


def test_error_kinds(facts: dict[str, Any]) -> None:
    assert {kind.name.lower(): int(kind) for kind in ErrorKind} == facts["error_kinds"]


def test_runtime_margin(facts: dict[str, Any]) -> None:
    assert facts["runtime_margin"] == {"fraction": RUNTIME_MARGIN_FRACTION, "max_ms": RUNTIME_MARGIN_MAX_MS}


def test_duration_buckets(facts: dict[str, Any]) -> None:
    assert list(DURATION_BUCKETS) == facts["duration_buckets_s"]


def test_runtime_call_outcomes(facts: dict[str, Any]) -> None:
    assert list(OUTCOMES) == facts["runtime_call_outcomes"]
