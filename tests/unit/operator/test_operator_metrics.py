"""The operator's own metrics: what the handlers record, as Prometheus text (a real endpoint on port 0)."""

from __future__ import annotations

import asyncio

import httpx
import kopf
import pytest
from lf_controlplane.operator.metrics import OperatorMetrics, mark_invalid
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.promtool import promtool_check


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_replicas_desired_follows_the_function_and_goes_with_it() -> None:
    metrics = OperatorMetrics(process=False)
    key = ("litefunctions_replicas_desired", (("function", "hello"), ("namespace", "team-a")))
    metrics.set_desired("team-a", "hello", 1)
    assert samples(metrics)[key] == 1
    metrics.set_desired("team-a", "hello", 3)
    assert samples(metrics)[key] == 3
    metrics.forget("team-a", "hello")
    assert key not in samples(metrics)
    metrics.forget("team-a", "hello")  # twice: no error
    metrics.set_desired("team-a", "hello", None)  # KEDA's, not applied yet: no series
    assert key not in samples(metrics)


def test_promtool_accepts_the_operators_metrics() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.set_desired("team-a", "hello", 2)
    metrics.set_phase("team-a", "hello", "Ready")
    promtool_check(generate_latest(metrics.registry).decode())


def test_functions_by_phase_every_phase_reported() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.set_phase("a", "f", "Deploying")
    metrics.set_phase("a", "g", "Deploying")
    metrics.set_phase("a", "f", "Ready")
    phases = {dict(k[1])["phase"]: v for k, v in samples(metrics).items() if k[0] == "litefunctions_functions"}
    assert phases == {"Pending": 0, "Deploying": 1, "Ready": 1, "Idle": 0, "Failed": 0}
    metrics.forget("a", "g")
    assert samples(metrics)[("litefunctions_functions", (("phase", "Deploying"),))] == 0


def test_handler_runs_by_kind_and_outcome() -> None:
    metrics = OperatorMetrics(process=False)

    @metrics.measured("Function")
    async def handler(what: str) -> None:
        if what == "invalid":
            mark_invalid()
        elif what == "retry":
            raise kopf.TemporaryError("later", delay=1)
        elif what == "failed":
            raise kopf.PermanentError("never")
        elif what == "error":
            raise RuntimeError("boom")

    for what in ("ok", "ok", "invalid", "retry", "failed", "error"):
        try:
            asyncio.run(handler(what))
        except (kopf.TemporaryError, kopf.PermanentError, RuntimeError):
            pass
    got = samples(metrics)
    runs = {
        dict(k[1])["outcome"]: v
        for k, v in got.items()
        if k[0] == "litefunctions_operator_reconciles_total" and dict(k[1])["kind"] == "Function"
    }
    assert runs == {"ok": 2, "invalid": 1, "retry": 1, "failed": 1, "error": 1}
    assert got[("litefunctions_operator_reconcile_duration_seconds_count", (("kind", "Function"),))] == 6
    assert got[("litefunctions_operator_reconciles_total", (("kind", "Trigger"), ("outcome", "ok")))] == 0
    assert handler.__name__ == "handler"  # kopf's handler id comes from the name
    with pytest.raises(ValueError, match="kind"):
        metrics.measured("Pod")


def test_served_over_http_and_closed() -> None:
    metrics = OperatorMetrics()
    port = metrics.serve("127.0.0.1", 0)
    try:
        metrics.set_desired("ns", "fn", 2)
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert 'litefunctions_replicas_desired{function="fn",namespace="ns"} 2.0' in response.text
        assert "process_cpu_seconds_total" in response.text
    finally:
        metrics.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
