"""Functions through a real kube-apiserver: `lf deploy --dry-run -o yaml | kubectl apply -f -`, the children the
operator applies, the route it writes and the ingestor serves, status, updates, scale, delete, invalid specs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_controlplane.operator import manifests

from tests.harness.ingestor import Ingestor
from tests.harness.routes import route_entry
from tests.harness.waiting import wait_for
from tests.operator.conftest import (
    PUBLIC_URL,
    REPO,
    Kubectl,
    OperatorProcess,
    start_runtime,
)

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

EXAMPLES = REPO / "examples"


def lf_dry_run(folder: Path, namespace: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lf_controlplane", "deploy", "--dry-run", "-o", "yaml", "-n", namespace, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def reconciled(kubectl: Kubectl, name: str, namespace: str, generation: int = 1) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = kubectl.get("function", name, namespace)
        if obj and (obj.get("status") or {}).get("observedGeneration", 0) >= generation:
            return obj
        return None

    found: dict[str, Any] = wait_for(done, 60, f"the operator to reconcile {name} (generation {generation})")
    return found


def mark_deployment_ready(kubectl: Kubectl, name: str, namespace: str) -> None:
    """Stand in for the Deployment controller: all replicas updated, ready, available."""
    deployment = kubectl.get("deployment", name, namespace)
    assert deployment is not None
    replicas = deployment["spec"].get("replicas", 1)
    status = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    kubectl("patch", "deployment", name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))  # fmt: skip


def test_kubectl_apply_of_lf_deploy_dry_run_yields_children_and_a_served_route(
    kubectl: Kubectl,
    operator: OperatorProcess,
    ingestor: Ingestor,
    nats_server: NatsServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "hello", namespace))
    fn = reconciled(kubectl, "hello", namespace)
    uid = fn["metadata"]["uid"]

    # children, each owned by the Function
    deployment = kubectl.get("deployment", "hello", namespace)
    configmap = kubectl.get("configmap", "hello-source", namespace)
    policy = kubectl.get("networkpolicy", "hello", namespace)
    assert deployment and configmap and policy
    assert kubectl.get("poddisruptionbudget", "hello", namespace) is None  # one replica: no PDB
    for child in (deployment, configmap, policy):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Function", "hello", uid, True)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    assert configmap["data"]["handler.py"] == (EXAMPLES / "hello" / "handler.py").read_text()

    # status: the URL, the selector for the scale subresource, Routed; Deploying until the replicas are ready
    status = fn["status"]
    assert status["url"] == f"{PUBLIC_URL}/function/hello.{namespace}"
    assert status["selector"] == manifests.selector_string("hello")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Valid"] == "True" and conditions["Routed"] == "True"
    assert status["phase"] == "Deploying"

    # the route, served by the ingestor once a replica (started as a kubelet would) subscribes
    entry = wait_for(lambda: route_entry(nats_server.url, f"fn.{namespace}.hello"), 10, "the route entry")
    assert entry["revision"] == status["revision"]
    # the readiness probe: the kubelet asks the runtime's /readyz on the container port named "health"
    probe = container["readinessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (probe["path"], probe["port"]) == ("/readyz", "health")
    assert (str(ports["health"]), env["LF_HEALTH_HOST"]) == (env["LF_HEALTH_PORT"], "0.0.0.0")
    runtime = start_runtime(kubectl, "hello", namespace, tmp_path)
    try:
        ready = f"http://127.0.0.1:{runtime.env['LF_HEALTH_PORT']}{probe['path']}"
        wait_for(lambda: httpx.get(ready, timeout=5).status_code == 200, 60, f"200 from {ready}")
        url = f"{ingestor.url}/function/hello.{namespace}"
        response = wait_for(lambda: (r := httpx.get(url, timeout=5)).status_code == 200 and r, 60, f"200 from {url}")
        assert response.text == "Hello, world!\n"
    finally:
        runtime.stop()

    # status follows the Deployment; printer columns show it
    mark_deployment_ready(kubectl, "hello", namespace)
    wait_for(lambda: (kubectl.get("function", "hello", namespace) or {})["status"]["phase"] == "Ready", 30, "Ready")
    table = kubectl("get", "functions", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "RUNTIME", "PHASE", "REPLICAS", "READY", "URL", "AGE"]
    assert table[1].split()[:6] == ["hello", "python", "Ready", "1", "1", f"{PUBLIC_URL}/function/hello.{namespace}"]
    assert "hello" in kubectl("get", "lffn", "-n", namespace, "-o", "name").stdout


def test_update_rolls_the_deployment_and_the_route(
    kubectl: Kubectl, operator: OperatorProcess, nats_server: NatsServer, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "hello", namespace))
    before = reconciled(kubectl, "hello", namespace)["status"]["revision"]
    template = (kubectl.get("deployment", "hello", namespace) or {})["spec"]["template"]
    kubectl("patch", "function", "hello", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"env": {"GREETING": "Bonjour"}, "timeout": "5s"}}))  # fmt: skip
    after = reconciled(kubectl, "hello", namespace, generation=2)["status"]["revision"]
    assert after != before
    rolled = (kubectl.get("deployment", "hello", namespace) or {})["spec"]["template"]
    assert rolled["metadata"]["annotations"][manifests.REVISION_ANNOTATION] == after
    assert template["metadata"]["annotations"][manifests.REVISION_ANNOTATION] == before
    env = {e["name"]: e["value"] for e in rolled["spec"]["containers"][0]["env"]}
    assert env["GREETING"] == "Bonjour"
    entry = wait_for(
        lambda: (e := route_entry(nats_server.url, f"fn.{namespace}.hello")) and e["revision"] == after and e,
        10,
        "the new route entry",
    )
    assert entry["timeout_ms"] == 5000


def test_scale_subresource_and_pdb(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "echo", namespace))
    reconciled(kubectl, "echo", namespace)
    kubectl("scale", "function", "echo", "-n", namespace, "--replicas=3")
    wait_for(lambda: (kubectl.get("deployment", "echo", namespace) or {})["spec"]["replicas"] == 3, 30, "3 replicas")
    pdb = wait_for(lambda: kubectl.get("poddisruptionbudget", "echo", namespace), 30, "a PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["metadata"]["ownerReferences"][0]["kind"] == "Function"
    kubectl("scale", "function", "echo", "-n", namespace, "--replicas=1")
    wait_for(lambda: kubectl.get("poddisruptionbudget", "echo", namespace) is None, 30, "the PDB removed")


def test_delete_removes_the_route(
    kubectl: Kubectl, operator: OperatorProcess, nats_server: NatsServer, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "slow", namespace))
    reconciled(kubectl, "slow", namespace)
    key = f"fn.{namespace}.slow"
    wait_for(lambda: route_entry(nats_server.url, key), 10, "the route entry")
    kubectl("delete", "function", "slow", "-n", namespace, "--wait=true", "--timeout=60s")
    assert route_entry(nats_server.url, key) is None
    assert kubectl.get("function", "slow", namespace) is None


SCHEMA_REFUSALS = {
    "bad duration": ({"timeout": "soon"}, "must be a duration"),
    "two sources": ({"source": {"files": {"a.py": ""}, "git": {"url": "https://x"}}}, "exactly one of files"),
    "unknown field": ({"replicaz": 2}, "replicaz"),
    "bad handler": ({"handler": "handle"}, "handler must name"),
    "min over max": ({"scaling": {"min": 5, "max": 2}}, "scaling.min must not exceed"),
    "unknown runtime": ({"runtime": "cobol"}, "Unsupported value"),
    "traffic not 100": (
        {"versions": [{"name": "v1", "image": "i"}], "traffic": [{"version": "v1", "percent": 50}]},
        "add up to 100",
    ),
}


@pytest.mark.parametrize(("spec", "message"), SCHEMA_REFUSALS.values(), ids=SCHEMA_REFUSALS.keys())
def test_invalid_function_is_refused_by_the_schema(
    kubectl: Kubectl, namespace: str, spec: dict[str, Any], message: str
) -> None:
    spec = {"source": {"files": {"handler.py": ""}}} | spec
    manifest = {"apiVersion": "litefunctions.io/v1alpha1", "kind": "Function", "metadata": {"name": "bad"}}
    done = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest | {"spec": spec}), check=False)
    assert done.returncode != 0
    assert message in done.stderr


def test_invalid_function_past_the_schema_gets_a_condition_and_an_event(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    manifest = {
        "apiVersion": "litefunctions.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "nocode", "namespace": namespace},
        "spec": {"runtime": "python"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    status = reconciled(kubectl, "nocode", namespace)["status"]
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert (status["phase"], valid["status"], valid["reason"]) == ("Failed", "False", "InvalidSpec")
    assert "set source" in valid["message"]
    assert kubectl.get("deployment", "nocode", namespace) is None
    events = wait_for(
        lambda: [e for e in kubectl.items("events", namespace) if e.get("reason") == "InvalidSpec"], 30, "an event"
    )
    assert events[0]["type"] == "Warning" and events[0]["involvedObject"]["name"] == "nocode"
    assert operator.alive
    # fixing the spec recovers it
    kubectl("patch", "function", "nocode", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"image": "example/fn:1"}}))  # fmt: skip
    fixed = reconciled(kubectl, "nocode", namespace, generation=2)["status"]
    assert next(c for c in fixed["conditions"] if c["type"] == "Valid")["status"] == "True"
    assert (kubectl.get("deployment", "nocode", namespace) or {})["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] == "example/fn:1"


def test_the_operator_never_lacked_a_permission(operator: OperatorProcess) -> None:
    """It ran as its ServiceAccount under the chart's RBAC (templates/operator/rbac.yaml): nothing it did was
    forbidden. (Last in the session, so it covers every test before it.)"""
    assert operator.alive
    assert "Forbidden" not in operator.logs()
