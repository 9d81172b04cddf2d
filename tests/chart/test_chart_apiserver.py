"""The rendered chart against a real kube-apiserver (tools/k8s: etcd + kube-apiserver from the Go module proxy):
every object passes a server-side dry run (schema, defaulting, validation, admission), and the PodSecurity
admission plugin finds nothing in it that would violate `restricted` in a namespace that enforces it."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.conftest import parse
from tests.harness.waiting import wait_for
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


def helm_dry_run(cluster: Cluster, namespace: str, *settings: str) -> str:
    args = ["install", "lf", str(chart.CHART), "--namespace", namespace, "--dry-run=server",
            f"--kubeconfig={cluster.kubeconfig}", "--values", str(chart.SAMPLE_VALUES)]  # fmt: skip
    for item in settings:
        args += ["--set", item]
    return chart.helm(*args)


def test_helm_install_checks_the_namespaces_enforce_restricted(cluster: Cluster, helm_binary: Path) -> None:
    """`helm install` (server dry run: the chart's lookups see the cluster) refuses a namespace that does not
    enforce `restricted`, naming it and the fix, and goes through once it does."""
    kubectl = str(build.kubectl_path())
    cluster.kubectl("create", "namespace", "lax", kubectl=kubectl)
    with pytest.raises(chart.HelmError, match=r"namespace lax is not labelled pod-security.kubernetes.io/enforce"):
        helm_dry_run(cluster, "lax", "functions.namespaces={lax}")
    with pytest.raises(chart.HelmError, match=r"namespace default is not labelled"):
        helm_dry_run(cluster, NAMESPACE)  # functions.namespaces: [default], unlabelled here
    assert "kind: StatefulSet" in helm_dry_run(cluster, NAMESPACE, "podSecurity.requireRestrictedNamespaces=false")
    cluster.kubectl("label", "namespace", "lax", *RESTRICTED, kubectl=kubectl)
    out = helm_dry_run(cluster, NAMESPACE, "functions.namespaces={lax}")
    assert "STATUS: pending-install" in out or "kind: Deployment" in out, out[:2000]


def test_install_then_upgrade_keeps_the_generated_postgres_password(cluster: Cluster, helm_binary: Path) -> None:
    """A real `helm install` and `helm upgrade` against the API server (no kubelet here: no pods run): the objects
    are created, and the generated password survives the upgrade (the chart looks its Secret up)."""
    kubectl = str(build.kubectl_path())
    cluster.kubectl("create", "namespace", "fns", kubectl=kubectl)
    cluster.kubectl("label", "namespace", "fns", *RESTRICTED, kubectl=kubectl)
    common = ["--namespace", NAMESPACE, f"--kubeconfig={cluster.kubeconfig}", "--values", str(chart.SAMPLE_VALUES),
              "--set", "functions.namespaces={fns}"]  # fmt: skip
    chart.helm("install", "lf", str(chart.CHART), *common)

    def password() -> str:
        out = cluster.kubectl("get", "secret", "lf-postgres", "-n", NAMESPACE, "-o", "json", kubectl=kubectl)
        return base64.b64decode(json.loads(out)["data"]["password"]).decode()

    first = password()
    assert len(first) == 32
    chart.helm("upgrade", "lf", str(chart.CHART), *common, "--set", "ingestor.autoscaling.maxReplicas=8")
    assert password() == first
    hpa = json.loads(cluster.kubectl("get", "hpa", "lf-ingestor", "-n", NAMESPACE, "-o", "json", kubectl=kubectl))
    assert hpa["spec"]["maxReplicas"] == 8
    policy = cluster.kubectl(
        "get", "networkpolicy", "lf-function-egress-lf", "-n", "fns", "-o", "name", kubectl=kubectl
    )
    assert policy.strip() == "networkpolicy.networking.k8s.io/lf-function-egress-lf"
    chart.helm("uninstall", "lf", "--namespace", NAMESPACE, f"--kubeconfig={cluster.kubeconfig}")
    assert password() == first  # kept on uninstall (helm.sh/resource-policy: keep), as the volume's data is


def test_the_callback_keys_the_operator_writes_survive_upgrade_and_uninstall(
    cluster: Cluster, helm_binary: Path
) -> None:
    """The chart creates lf-callback-keys empty and never writes its data: keys the operator (as its ServiceAccount,
    under the installed RBAC and admission policy) put there survive `helm upgrade`, and `helm uninstall` keeps
    them. The operator can write that Secret and its copy in a function namespace, and no other."""
    kubectl = str(build.kubectl_path())
    namespace, functions_ns = "lf-keys", "fns-keys"
    for ns in (namespace, functions_ns):
        cluster.kubectl("create", "namespace", ns, kubectl=kubectl)
        cluster.kubectl("label", "namespace", ns, *RESTRICTED, kubectl=kubectl)
    common = ["--namespace", namespace, f"--kubeconfig={cluster.kubeconfig}", "--values", str(chart.SAMPLE_VALUES),
              "--set", f"functions.namespaces={{{functions_ns}}}"]  # fmt: skip
    chart.helm("install", "lf", str(chart.CHART), *common)
    operator = cluster.user_kubeconfig(
        f"system:serviceaccount:{namespace}:lf-operator", groups=("system:serviceaccounts", "system:authenticated")
    )

    def as_operator(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kubectl, f"--kubeconfig={operator}", *args], input=input, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    def refused(name: str) -> bool:  # the admission policy works a moment after helm created it
        probe = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": functions_ns}}
        done = as_operator("create", "--dry-run=server", "-f", "-", input=json.dumps(probe))
        return done.returncode != 0 and f"lf-operator-secrets-{namespace}" in done.stderr

    wait_for(lambda: refused("anything-else"), 30, "the admission policy to be in force")
    keys = base64.b64encode(b'{"keys": []}\n').decode()
    secret = json.loads(as_operator("get", "secret", "lf-callback-keys", "-n", namespace, "-o", "json").stdout)
    secret["data"] = {f"{functions_ns}.json": keys}
    done = as_operator("replace", "-f", "-", input=json.dumps(secret))
    assert done.returncode == 0, done.stderr
    copy = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lf-callback-key", "namespace": functions_ns},
            "data": {f"{functions_ns}.json": keys}}  # fmt: skip
    done = as_operator("create", "-f", "-", input=json.dumps(copy))
    assert done.returncode == 0, done.stderr
    copy["metadata"]["name"] = "anything-else"
    done = as_operator("create", "-f", "-", input=json.dumps(copy))
    assert done.returncode != 0 and f"lf-operator-secrets-{namespace}" in done.stderr, done.stderr

    def data() -> dict[str, str]:
        out = cluster.kubectl("get", "secret", "lf-callback-keys", "-n", namespace, "-o", "json", kubectl=kubectl)
        return dict(json.loads(out).get("data") or {})

    chart.helm("upgrade", "lf", str(chart.CHART), *common, "--set", "dispatcher.replicas=3")
    assert data() == {f"{functions_ns}.json": keys}
    chart.helm("uninstall", "lf", "--namespace", namespace, f"--kubeconfig={cluster.kubeconfig}")
    assert data() == {f"{functions_ns}.json": keys}
