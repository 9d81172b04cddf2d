"""The rendered chart against a real kube-apiserver (tools/k8s: etcd + kube-apiserver from the Go module proxy):
every object passes a server-side dry run (schema, defaulting, validation, admission), and the PodSecurity
admission plugin finds nothing in it that would violate `restricted` in a namespace that enforces it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.conftest import parse
from tools.helm import chart
from tools.k8s import build
from tools.k8s.cluster import Cluster

pytestmark = [pytest.mark.operator, pytest.mark.timeout(600)]

NAMESPACE = "lf-system"
RESTRICTED = [f"pod-security.kubernetes.io/{mode}=restricted" for mode in ("enforce", "warn", "audit")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(build.ensure(), tmp_path_factory.mktemp("k8s")).start()
    try:
        started.install_crds(kubectl=str(build.kubectl_path()))  # the chart's crds/, as helm installs them
        started.kubectl("create", "namespace", NAMESPACE, kubectl=str(build.kubectl_path()))
        started.kubectl("label", "namespace", NAMESPACE, *RESTRICTED, kubectl=str(build.kubectl_path()))
        yield started
    finally:
        started.stop()


def dry_run(cluster: Cluster, manifests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(build.kubectl_path()), f"--kubeconfig={cluster.kubeconfig}", "apply", "--dry-run=server",
         "--server-side", "--field-manager=helm", "-f", "-"],
        input=manifests, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_every_rendered_object_passes_a_server_side_dry_run(cluster: Cluster, helm_binary: Path) -> None:
    rendered = chart.template(namespace=NAMESPACE)
    objects = parse(rendered)
    done = dry_run(cluster, rendered)
    assert done.returncode == 0, done.stderr
    applied = [line for line in done.stdout.splitlines() if line.endswith("serverside-applied (server dry run)")]
    assert len(applied) == len(objects), done.stdout
    assert "PodSecurity" not in done.stderr, done.stderr  # `warn=restricted` would print each violation


def test_the_pod_security_check_above_can_fail(cluster: Cluster) -> None:
    """The same dry run reports a pod that breaks `restricted` (so its silence above means something)."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {
                "metadata": {"labels": {"app": "bad"}},
                "spec": {"containers": [{"name": "c", "image": "x@sha256:" + "0" * 64}]},
            },
        },
    }
    done = dry_run(cluster, json.dumps(bad))
    assert "would violate PodSecurity" in done.stderr, done.stderr


def test_every_variant_of_the_values_passes_too(cluster: Cluster, helm_binary: Path) -> None:
    """Without autoscaling, without redis-server and PostgreSQL, with storage classes named."""
    for settings in (
        ["ingestor.autoscaling.enabled=false", "nats.storage.storageClass=local-path"],
        ["redis.enabled=false", "postgres.enabled=false", "networkPolicies.enabled=false"],
        ["postgres.existingSecret=mine", "postgres.storage.storageClass=local-path"],
    ):
        done = dry_run(cluster, chart.template(namespace=NAMESPACE, set_values=settings))
        assert done.returncode == 0, (settings, done.stderr)
        assert "PodSecurity" not in done.stderr, (settings, done.stderr)
