"""A real single node: pods of a locally built image run and serve on their pod IPs, Services resolve and answer,
NetworkPolicies are enforced, the metrics API reports pods, images are pulled from a registry with credentials,
hostPath volumes bind, and teardown gives the machine back."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from typing import Any

import pytest
from lf_controlplane.images.layout import Layout
from lf_controlplane.images.registry import Credentials, push

from tests.cluster.pods import exec_probe, get, probe_container, probe_pod, wait_ready
from tests.harness.waiting import wait_for
from tools.k8s.node import Node
from tools.registry.zot import Zot

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_node_is_ready_on_the_machines_address(node: Node) -> None:
    info = json.loads(node.kubectl("get", "node", node.name, "-o", "json"))
    ready = [c for c in info["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", info["status"]["conditions"]
    addresses = {a["type"]: a["address"] for a in info["status"]["addresses"]}
    assert addresses["InternalIP"] == node.node_ip
    versions = info["status"]["nodeInfo"]
    assert versions["kubeletVersion"] == "v1.37.2", versions
    assert versions["containerRuntimeVersion"].startswith("containerd://2."), versions


def deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [probe_container(image)]},
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def test_deployment_pods_answer_on_their_pod_ips(node: Node, namespace: str) -> None:
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment("web", node.probe.ref, 2)))
    node.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=120s", timeout=130)
    pods = json.loads(node.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json"))["items"]
    assert len(pods) == 2
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(node.pod_cidr), ip
        assert http_get(f"http://{ip}:8080/") == f"lf-probe {pod['metadata']['name']}\n"


def test_service_name_resolves_in_a_pod_and_its_cluster_ip_answers(node: Node, namespace: str) -> None:
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment("web", node.probe.ref, 1)))
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(service("web")))
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(probe_pod("client", node.probe.ref, {})))
    node.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=120s", timeout=130)
    wait_ready(node, namespace, "client")
    cluster_ip = get(node, "service", "web", namespace)["spec"]["clusterIP"]

    code, out = exec_probe(node, namespace, "client", "resolve", f"web.{namespace}.svc.cluster.local")
    assert (code, out.split()) == (0, [cluster_ip]), out
    code, out = exec_probe(node, namespace, "client", "resolve", "web")  # the pod's search path
    assert (code, out.split()) == (0, [cluster_ip]), out
    code, out = exec_probe(node, namespace, "client", "get", f"http://web.{namespace}/")
    assert code == 0 and out.startswith("lf-probe web-"), out
    # the apiserver through the `kubernetes` Service (kube-proxy to the node address)
    code, out = exec_probe(node, namespace, "client", "dial", "kubernetes.default.svc:443")
    assert code == 0, out
    code, out = exec_probe(node, namespace, "client", "resolve", "no-such-service")
    assert code == 1, out


def policy(name: str, selector: dict[str, str], ingress: list[dict[str, Any]] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"]}
    if ingress is not None:
        spec["ingress"] = ingress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def test_network_policy_denies_and_allows_again(node: Node, namespace: str) -> None:
    node.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    probe_pod("server", node.probe.ref, {"app": "server"}),
                    probe_pod("client", node.probe.ref, {"role": "client"}),
                    probe_pod("other", node.probe.ref, {"role": "other"}),
                ],
            }
        ),
    )
    wait_ready(node, namespace, "server", "client", "other")
    server_ip = get(node, "pod", "server", namespace)["status"]["podIP"]
    url = f"http://{server_ip}:8080/"

    def answers(pod: str) -> bool:
        return exec_probe(node, namespace, pod, "get", url, "2")[0] == 0

    def refused(pod: str) -> bool:
        return exec_probe(node, namespace, pod, "get", url, "2")[0] == 1

    assert answers("client") and answers("other")
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(policy("deny", {"app": "server"}, None)))
    wait_for(lambda: refused("client"), timeout=60, what="the deny-all ingress policy to block the client")
    assert refused("other")
    allow = [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": 8080}]}]
    node.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(policy("allow-client", {"app": "server"}, allow))
    )
    wait_for(lambda: answers("client"), timeout=60, what="the allow policy to let the client in again")
    assert refused("other"), "a pod the allow policy does not select is still denied"
    node.kubectl("delete", "networkpolicy", "deny", "allow-client", "-n", namespace)
    wait_for(lambda: answers("other"), timeout=60, what="deleting the policies to open the server again")


def test_metrics_api_reports_a_pods_cpu_and_memory(node: Node, namespace: str) -> None:
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(probe_pod("busy", node.probe.ref, {})))
    wait_ready(node, namespace, "busy")
    ip = get(node, "pod", "busy", namespace)["status"]["podIP"]

    def usage() -> dict[str, str] | None:
        http_get(f"http://{ip}:8080/burn?ms=300")
        raw = node.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/busy", check=False
        )
        if not raw:
            return None
        containers = json.loads(raw).get("containers", [])
        found = containers[0]["usage"] if containers else None
        return found if found and found["cpu"] not in ("0", "0n") else None

    found = wait_for(usage, timeout=120, interval=2, what="metrics-server to report the busy pod's CPU")
    assert found["cpu"].endswith("n") and int(found["cpu"][:-1]) > 0, found
    assert _bytes(found["memory"]) > 0, found  # a quantity: "2Mi" when the usage is a whole MiB, else "…Ki"
    top = node.kubectl("top", "pod", "busy", "-n", namespace, "--no-headers")
    assert top.split()[0] == "busy", top
    node.measured_rss = node.rss_kib()


def test_an_hpa_on_cpu_scales_a_busy_deployment(node: Node, namespace: str) -> None:
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment("hot", node.probe.ref, 1)))
    node.kubectl("rollout", "status", "deployment/hot", "-n", namespace, "--timeout=120s", timeout=130)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "hot"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hot"},
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hpa))
    pods = json.loads(node.kubectl("get", "pods", "-n", namespace, "-l", "app=hot", "-o", "json"))["items"]
    ip = pods[0]["status"]["podIP"]

    def scaled_up() -> dict[str, Any] | None:
        http_get(f"http://{ip}:8080/burn?ms=1000")  # ~1 CPU for a second against a 10m request
        status = get(node, "hpa", "hot", namespace).get("status", {})
        return status if status.get("desiredReplicas", 0) >= 2 else None

    status = wait_for(scaled_up, timeout=150, interval=1, what="the HPA to read CPU from the metrics API and scale up")
    current = status["currentMetrics"][0]["resource"]["current"]
    assert current["averageUtilization"] > 50, status


def test_pods_pull_from_the_registry_with_its_credentials(node: Node, namespace: str, zot: Zot) -> None:
    user, password = zot.credentials
    tag = node.probe.ref.rsplit(":", 1)[1]
    target = f"{zot.address}/lf/lf-probe:{tag}"
    push(Layout.open(node.probe.layout), node.probe.ref, target, Credentials(user, password), insecure=True)
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(probe_pod("pulled", target, {}, pull="Always")))
    wait_ready(node, namespace, "pulled")
    status = get(node, "pod", "pulled", namespace)["status"]["containerStatuses"][0]
    assert status["image"] == target and status["ready"], status


def test_hostpath_volumes_bind_to_claims(node: Node, namespace: str) -> None:
    (name,) = node.create_volumes(1, "1Gi")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {
            "storageClassName": "lf-local",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    pod = probe_pod("writer", node.probe.ref, {})
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    node.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [claim, pod]}),
    )
    wait_ready(node, namespace, "writer")
    assert get(node, "pvc", "data", namespace)["spec"]["volumeName"] == name
    code, out = exec_probe(node, namespace, "writer", "write", "/data/hello.txt", "kept")
    assert code == 0, out
    assert (node.work_dir / "volumes" / name / "hello.txt").read_text() == "kept"


@pytest.mark.node_teardown
def test_teardown_leaves_the_machine_as_it_was(node: Node) -> None:
    node.measured_rss = node.measured_rss or node.rss_kib()
    seconds = node.stop()
    assert node.leftovers() == []
    assert seconds < 120


def _bytes(quantity: str) -> int:
    """A memory quantity as metrics-server writes it (plain bytes, or a binary suffix) in bytes."""
    for suffix, factor in (("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)):
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)
