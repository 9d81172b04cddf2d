"""Cluster-mode metrics through a real kube-apiserver: the Deployment the operator writes makes its replicas
scrapeable (env, named port, prometheus.io annotations, a NetworkPolicy rule for the scrapers), a replica started
from it serves /metrics, and the operator's own /metrics follows a Function's desired replicas through the scale
subresource and its deletion."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.waiting import wait_for
from tests.operator.conftest import REPO, Kubectl, OperatorProcess, start_runtime
from tests.operator.test_functions import lf_dry_run, reconciled

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

EXAMPLES = REPO / "examples"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=5).raise_for_status().text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def desired(operator: OperatorProcess, namespace: str, name: str) -> float | None:
    key = ("litefunctions_replicas_desired", frozenset({("namespace", namespace), ("function", name)}))
    return scrape(operator.metrics_url).get(key)


def test_function_pods_are_scrapeable(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "echo", namespace))
    reconciled(kubectl, "echo", namespace)
    deployment = kubectl.get("deployment", "echo", namespace)
    assert deployment is not None
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["LF_METRICS_PORT"], env["LF_METRICS_HOST"]) == ("9091", "0.0.0.0")
    assert {"name": "metrics", "containerPort": 9091, "protocol": "TCP"} in container["ports"]  # beside "health"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9091"
    assert annotations["prometheus.io/path"] == "/metrics"

    # only the scrapers (default: pods of namespace `monitoring`) reach the pods, and only that port
    policy = kubectl.get("networkpolicy", "echo", namespace)
    assert policy is not None
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": 9091, "protocol": "TCP"}],
        }
    ]

    # a replica started as a kubelet would (its port moved to loopback) serves its metrics
    runtime = start_runtime(kubectl, "echo", namespace, tmp_path)
    try:
        assert runtime.metrics_url is not None
        url = runtime.metrics_url

        def served() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            assert runtime.process.poll() is None, runtime.logs()
            try:
                return scrape(url)
            except httpx.TransportError:
                return None

        metrics = wait_for(served, 60, f"the replica's {url}")
        key = ("litefunctions_runtime_cold_starts_total", frozenset({("namespace", namespace), ("function", "echo")}))
        assert metrics[key] == 0
    finally:
        runtime.stop()


def test_operator_metrics_follow_replicas_desired_through_scale_and_delete(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "echo", namespace))
    reconciled(kubectl, "echo", namespace)
    assert wait_for(lambda: desired(operator, namespace, "echo") == 1, 30, "replicas_desired 1")

    kubectl("scale", "function", "echo", "-n", namespace, "--replicas=3")
    wait_for(lambda: desired(operator, namespace, "echo") == 3, 30, "replicas_desired 3 after the scale")
    assert (kubectl.get("deployment", "echo", namespace) or {})["spec"]["replicas"] == 3  # what it asked for

    kubectl("scale", "function", "echo", "-n", namespace, "--replicas=0")
    wait_for(lambda: desired(operator, namespace, "echo") == 0, 30, "replicas_desired 0")

    metrics = scrape(operator.metrics_url)
    ok = metrics[("litefunctions_operator_reconciles_total", frozenset({("kind", "Function"), ("outcome", "ok")}))]
    assert ok >= 3  # create + two scales, at least (the session's other Functions too)
    assert metrics[("litefunctions_operator_reconcile_duration_seconds_count", frozenset({("kind", "Function")}))] >= ok
    phases = {dict(labels)["phase"]: v for (name, labels), v in metrics.items() if name == "litefunctions_functions"}
    assert set(phases) == {"Pending", "Deploying", "Ready", "Idle", "Failed"}
    assert phases["Deploying"] >= 1  # this one (no Deployment controller here to make it current, hence Idle)

    kubectl("delete", "function", "echo", "-n", namespace)
    wait_for(lambda: desired(operator, namespace, "echo") is None, 30, "the series gone with the Function")
