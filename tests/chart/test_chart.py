"""deploy/helm/litefunctions rendered by the real helm and read back: lint, restricted pods, images by digest, what
each NetworkPolicy selects (checked against the labels the operator really gives function pods), the operator's
two replicas and Lease RBAC, the 3-node NATS cluster and LF_STREAM_REPLICAS reaching the containers, and the
schema refusing what cannot be installed."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from lf_controlplane.operator import manifests
from lf_core.contract.specs import BROKER_MAX_PAYLOAD

from tests.chart.conftest import find, parse
from tools.helm import chart

SAMPLE = yaml.safe_load(chart.SAMPLE_VALUES.read_text())
IMAGE_KEYS = (
    "ingestor",
    "dispatcher",
    "operator",
    "runtimePython",
    "runtimeGo",
    "runtimeRust",
    "nats",
    "redis",
    "postgres",
)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
ALLOWED_VOLUMES = {"configMap", "emptyDir", "secret", "persistentVolumeClaim", "projected", "downwardAPI"}
NAMESPACE = "lf-system"


def image_of(key: str) -> str:
    image = SAMPLE["images"][key]
    return f"{SAMPLE['global']['imageRegistry']}/{image['repository']}@{image['digest']}"


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def pod_labels(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    return dict(find(objects, kind, name)["spec"]["template"]["metadata"]["labels"])


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def admits(
    rule: list[dict[str, Any]], labels: Mapping[str, str], namespace_labels: Mapping[str, str], same_ns: bool
) -> bool:
    """Whether one ingress `from` / egress `to` peer list admits a pod with `labels` in a namespace with
    `namespace_labels` (`same_ns`: the policy's own namespace)."""
    for peer in rule:
        ns_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
        if ns_selector is None and not same_ns:
            continue
        if ns_selector is not None and not selects(ns_selector, namespace_labels):
            continue
        if pod_selector is not None and not selects(pod_selector, labels):
            continue
        return True
    return False


def ingress_ports(policy: dict[str, Any], labels: Mapping[str, str], namespace: str) -> set[int]:
    """Ports the policy lets a pod with `labels` in `namespace` reach."""
    ns_labels = {"kubernetes.io/metadata.name": namespace}
    same = namespace == policy["metadata"]["namespace"]
    ports: set[int] = set()
    for rule in policy["spec"].get("ingress", []):
        if "from" not in rule or admits(rule["from"], labels, ns_labels, same):  # no `from`: any source
            ports |= {p["port"] for p in rule["ports"]}
    return ports


# -- lint and schema ------------------------------------------------------------------------------------------------


def test_helm_lint_passes_strict(helm_binary: Path) -> None:
    out = chart.helm(
        "lint", "--strict", str(chart.CHART), "--namespace", NAMESPACE, "--values", str(chart.SAMPLE_VALUES)
    )
    assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("images.nats.digest=sha256:abc", r"images.*nats.*digest"),
        ("images.ingestor.digest=latest", r"images.*ingestor.*digest"),
        ("images.redis.digest=sha256:" + "A" * 64, r"images.*redis.*digest"),  # uppercase hex is not a digest
        ("images.operator.repository=Bad/Repo", r"images.*operator.*repository"),
        ("global.imageRegistry=not a host", r"imageRegistry"),
        ("nats.streamReplicas=6", r"streamReplicas"),
    ],
)
def test_the_schema_refuses_a_malformed_value_naming_it(helm_binary: Path, setting: str, named: str) -> None:
    with pytest.raises(chart.HelmError, match=named):
        chart.template(set_values=[setting])


def test_values_without_digests_are_refused(helm_binary: Path) -> None:
    """The chart's defaults carry no digests: installing without the images' values file fails, naming them."""
    with pytest.raises(chart.HelmError) as refused:
        chart.template(values=())
    message = str(refused.value)
    for key in IMAGE_KEYS:
        assert re.search(rf"images.*{key}.*digest", message), (key, message)


def test_more_stream_replicas_than_servers_is_refused(helm_binary: Path) -> None:
    with pytest.raises(chart.HelmError, match=r"nats.streamReplicas \(5\) cannot exceed nats.replicas \(3\)"):
        chart.template(set_values=["nats.streamReplicas=5"])


# -- pods: restricted, images by digest -------------------------------------------------------------------------


def test_every_pod_meets_the_restricted_pod_security_standard(objects: list[dict[str, Any]]) -> None:
    seen = dict(pod_specs(objects))
    assert set(seen) == {
        "Deployment/lf-operator",
        "Deployment/lf-ingestor",
        "Deployment/lf-dispatcher",
        "StatefulSet/lf-nats",
        "Deployment/lf-redis",
        "StatefulSet/lf-postgres",
    }
    for where, pod in seen.items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] > 0, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(forbidden), (where, forbidden)
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= ALLOWED_VOLUMES, (where, volume)
        for container in containers(pod):
            c = container["securityContext"]
            name = f"{where}:{container['name']}"
            assert c["allowPrivilegeEscalation"] is False, name
            assert c["capabilities"] == {"drop": ["ALL"]}, name
            assert c["runAsNonRoot"] is True, name
            assert c["readOnlyRootFilesystem"] is True, name
            assert not c.get("privileged"), name
            assert c["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert not any("hostPort" in p for p in container.get("ports", [])), name


def test_containers_run_their_images_entrypoints(objects: list[dict[str, Any]]) -> None:
    """tools/images gives every image its entrypoint (python3 -m ..., nats-server, redis-server, the PostgreSQL
    initialiser): the chart overrides none, it passes arguments at most."""
    for where, pod in pod_specs(objects):
        for container in containers(pod):
            assert "command" not in container, where
    nats = find(objects, "StatefulSet", "lf-nats")["spec"]["template"]["spec"]["containers"][0]
    assert nats["args"] == ["--config", "/etc/nats/nats.conf"]


def test_every_image_is_the_values_image_by_digest(objects: list[dict[str, Any]]) -> None:
    expected = {
        "Deployment/lf-operator": image_of("operator"),
        "Deployment/lf-ingestor": image_of("ingestor"),
        "Deployment/lf-dispatcher": image_of("dispatcher"),
        "StatefulSet/lf-nats": image_of("nats"),
        "Deployment/lf-redis": image_of("redis"),
        "StatefulSet/lf-postgres": image_of("postgres"),
    }
    for where, pod in pod_specs(objects):
        for container in containers(pod):
            assert re.fullmatch(r"127\.0\.0\.1:5000/[a-z0-9/-]+@sha256:[a-f0-9]{64}", container["image"])
            assert container["image"] == expected[where], where
    operator = find(objects, "Deployment", "lf-operator")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(operator)["LF_RUNTIME_IMAGE_PYTHON"] == image_of("runtimePython")
    bases = find(objects, "ConfigMap", "lf-runtime-images")["data"]
    assert bases == {"python": image_of("runtimePython"), "go": image_of("runtimeGo"), "rust": image_of("runtimeRust")}


def test_without_a_registry_the_repository_is_the_reference(helm_binary: Path) -> None:
    objects = parse(chart.template(set_values=["global.imageRegistry="]))
    ingestor = find(objects, "Deployment", "lf-ingestor")["spec"]["template"]["spec"]["containers"][0]
    assert ingestor["image"] == "litefunctions/ingestor@" + SAMPLE["images"]["ingestor"]["digest"]


# -- the operator ---------------------------------------------------------------------------------------------------


def test_operator_runs_two_replicas_electing_a_leader_on_a_lease(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", "lf-operator")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["LF_LEADER_ELECTION"] == "true"
    assert env["LF_LEADER_ELECTION_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["LF_LEADER_ELECTION_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["LF_LEADER_ELECTION_LEASE"] == "lf-operator"
    assert env["LF_NATS_URL"] == "nats://lf-nats.lf-system.svc:4222"
    assert env["LF_OPERATOR_LIVENESS"] == "http://0.0.0.0:8080/healthz"
    probe = container["livenessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", "health")
    assert {"name": "health", "containerPort": 8080} in container["ports"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "lf-operator"
    role = find(objects, "Role", "lf-operator-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    granted = {
        (verb, name)
        for rule in role["rules"]
        if rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }
    assert granted == {("create", "*"), ("get", "lf-operator"), ("update", "lf-operator")}
    binding = find(objects, "RoleBinding", "lf-operator-leader-election")
    assert binding["roleRef"]["name"] == "lf-operator-leader-election"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lf-operator", "namespace": NAMESPACE}]
    cluster_binding = find(objects, "ClusterRoleBinding", "lf-operator-lf-system")
    assert cluster_binding["subjects"] == binding["subjects"]


def test_the_namespace_replica_cap_comes_from_values(objects: list[dict[str, Any]], helm_binary: Path) -> None:
    """Issue 14, item 11: LF_NAMESPACE_MAX_REPLICAS, 50 unless operator.namespaceMaxReplicas says otherwise."""

    def cap(rendered: list[dict[str, Any]]) -> Any:
        return env_of(find(rendered, "Deployment", "lf-operator")["spec"]["template"]["spec"]["containers"][0])[
            "LF_NAMESPACE_MAX_REPLICAS"
        ]

    assert cap(objects) == "50"
    assert cap(parse(chart.template(set_values=["operator.namespaceMaxReplicas=0"]))) == "0"
    with pytest.raises(chart.HelmError, match="namespaceMaxReplicas"):
        chart.template(set_values=["operator.namespaceMaxReplicas=-1"])


# -- NATS and the stream replicas ---------------------------------------------------------------------------------


def test_nats_is_a_three_node_jetstream_cluster(objects: list[dict[str, Any]]) -> None:
    statefulset = find(objects, "StatefulSet", "lf-nats")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["serviceName"] == "lf-nats-headless"
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    headless = find(objects, "Service", "lf-nats-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    config = find(objects, "ConfigMap", "lf-nats")["data"]["nats.conf"]
    routes = re.findall(r"nats://(lf-nats-\d)\.lf-nats-headless\.lf-system\.svc\.cluster\.local:6222", config)
    assert routes == ["lf-nats-0", "lf-nats-1", "lf-nats-2"]
    assert "jetstream {" in config and "store_dir: /data" in config
    # a function's body (capped at BROKER_MAX_PAYLOAD less the envelope margin) fits in one message, as in lf dev
    assert f"\nmax_payload: {BROKER_MAX_PAYLOAD}\n" in f"\n{config}"
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default unless values name one


def test_storage_classes_come_from_values(helm_binary: Path) -> None:
    objects = parse(
        chart.template(set_values=["nats.storage.storageClass=local-path", "postgres.storage.storageClass=fast"])
    )
    nats = find(objects, "StatefulSet", "lf-nats")["spec"]["volumeClaimTemplates"][0]["spec"]
    postgres = find(objects, "StatefulSet", "lf-postgres")["spec"]["volumeClaimTemplates"][0]["spec"]
    assert (nats["storageClassName"], postgres["storageClassName"]) == ("local-path", "fast")


def test_stream_replicas_reach_every_container_that_creates_streams(helm_binary: Path) -> None:
    for replicas in (3, 1):
        objects = parse(chart.template(set_values=[f"nats.streamReplicas={replicas}"]))
        for name in ("lf-ingestor", "lf-operator"):
            container = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
            assert env_of(container)["LF_STREAM_REPLICAS"] == str(replicas), name


# -- the ingestor -----------------------------------------------------------------------------------------------------


def test_ingestor_has_a_service_a_pdb_and_a_cpu_hpa(objects: list[dict[str, Any]]) -> None:
    labels = pod_labels(objects, "Deployment", "lf-ingestor")
    deployment = find(objects, "Deployment", "lf-ingestor")
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    service = find(objects, "Service", "lf-ingestor")
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    pdb = find(objects, "PodDisruptionBudget", "lf-ingestor")
    assert pdb["spec"]["minAvailable"] == 1 and selects(pdb["spec"]["selector"], labels)
    hpa = find(objects, "HorizontalPodAutoscaler", "lf-ingestor")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lf-ingestor"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"]  # utilisation is relative to the request
    assert env_of(container)["LF_VALKEY_URL"] == "redis://lf-redis.lf-system.svc:6379/0"


def test_the_ingestors_metrics_are_scraped_on_the_admin_port_not_the_public_one(objects: list[dict[str, Any]]) -> None:
    """Issue 14, item 8: /metrics (every tenant's functions) is on LF_ADMIN_PORT, a container port the Service does
    not carry; the scrape annotations name it, and the NetworkPolicy admits to it only the scrapers' namespaces."""
    deployment = find(objects, "Deployment", "lf-ingestor")
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    env = env_of(container)
    assert (env["LF_ADMIN_HOST"], env["LF_ADMIN_PORT"]) == ("0.0.0.0", "9090")
    assert {"name": "metrics", "containerPort": 9090} in container["ports"]
    annotations = template["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("9090", "/metrics")
    service = find(objects, "Service", "lf-ingestor")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    policy = find(objects, "NetworkPolicy", "lf-ingestor")
    assert selects(policy["spec"]["podSelector"], template["metadata"]["labels"])
    assert ingress_ports(policy, {"app": "stranger"}, "default") == {8080}  # callers (and the kubelet's probes)
    assert ingress_ports(policy, {"app": "stranger"}, NAMESPACE) == {8080}
    assert ingress_ports(policy, {"app": "prometheus"}, "monitoring") == {8080, 9090}


def test_the_admin_port_cannot_be_the_public_one(helm_binary: Path) -> None:
    with pytest.raises(chart.HelmError, match=r"ingestor.*metrics.*port"):
        chart.template(set_values=["ingestor.metrics.port=8080"])


def test_without_autoscaling_the_deployment_keeps_its_replicas(helm_binary: Path) -> None:
    objects = parse(chart.template(set_values=["ingestor.autoscaling.enabled=false", "ingestor.replicas=3"]))
    assert find(objects, "Deployment", "lf-ingestor")["spec"]["replicas"] == 3
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


# -- NetworkPolicies --------------------------------------------------------------------------------------------------


def test_network_policies_select_what_they_should(objects: list[dict[str, Any]]) -> None:
    ingestor = pod_labels(objects, "Deployment", "lf-ingestor")
    operator = pod_labels(objects, "Deployment", "lf-operator")
    nats = pod_labels(objects, "StatefulSet", "lf-nats")
    redis = pod_labels(objects, "Deployment", "lf-redis")
    postgres = pod_labels(objects, "StatefulSet", "lf-postgres")
    function = manifests.labels("hello")  # the labels the operator gives a function's pods

    policy = find(objects, "NetworkPolicy", "lf-redis")
    assert selects(policy["spec"]["podSelector"], redis) and not selects(policy["spec"]["podSelector"], nats)
    assert ingress_ports(policy, ingestor, NAMESPACE) == {6379}
    assert ingress_ports(policy, operator, NAMESPACE) == {6379}
    for other in (function, nats, postgres):
        assert ingress_ports(policy, other, NAMESPACE) == set(), other
    assert ingress_ports(policy, function, "default") == set()

    policy = find(objects, "NetworkPolicy", "lf-postgres")
    assert selects(policy["spec"]["podSelector"], postgres)
    assert ingress_ports(policy, ingestor, NAMESPACE) == {5432}
    assert ingress_ports(policy, operator, NAMESPACE) == {5432}
    for other in (function, nats, redis):
        assert ingress_ports(policy, other, NAMESPACE) == set(), other
    assert ingress_ports(policy, function, "default") == set()

    policy = find(objects, "NetworkPolicy", "lf-nats")
    assert selects(policy["spec"]["podSelector"], nats) and not selects(policy["spec"]["podSelector"], redis)
    assert 4222 in ingress_ports(policy, ingestor, NAMESPACE)
    assert 4222 in ingress_ports(policy, operator, NAMESPACE)
    assert ingress_ports(policy, function, "default") == {4222}  # functions: the client port only
    assert ingress_ports(policy, nats, NAMESPACE) >= {4222, 6222}  # cluster routes between the servers
    assert ingress_ports(policy, {"app": "stranger"}, "default") == set()

    egress = find(objects, "NetworkPolicy", "lf-function-egress-lf")
    assert egress["metadata"]["namespace"] == "default"
    assert selects(egress["spec"]["podSelector"], function)
    for platform in (ingestor, operator, nats):
        assert not selects(egress["spec"]["podSelector"], platform)
    assert egress["spec"]["policyTypes"] == ["Egress"]
    rules = egress["spec"]["egress"]
    system = {"kubernetes.io/metadata.name": NAMESPACE}
    kube_system = {"kubernetes.io/metadata.name": "kube-system"}
    reachable = {
        name: {p["port"] for rule in rules if admits(rule["to"], labels, ns, same_ns=False) for p in rule["ports"]}
        for name, labels, ns in [
            ("nats", nats, system),
            ("redis", redis, system),
            ("postgres", postgres, system),
            ("ingestor", ingestor, system),
            ("dns", {"k8s-app": "kube-dns"}, kube_system),
        ]
    }
    assert reachable == {"nats": {4222}, "redis": set(), "postgres": set(), "ingestor": set(), "dns": {53}}


def test_dns_on_the_node_is_reached_by_ip_block(helm_binary: Path) -> None:
    """A DNS server on the node's address (tools/k8s's node) is named by an ipBlock, and is then all the function
    pods reach besides NATS."""
    rendered = chart.helm(
        "template", "lf", str(chart.CHART), "--namespace", NAMESPACE, "--values", str(chart.SAMPLE_VALUES),
        "--set-json", 'functions.dns.peers=[{"ipBlock":{"cidr":"10.1.2.3/32"}}]',
    )  # fmt: skip
    egress = find(parse(rendered), "NetworkPolicy", "lf-function-egress-lf")["spec"]["egress"]
    assert egress[1] == {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    assert len(egress) == 2


def test_function_namespaces_each_get_the_egress_policy(helm_binary: Path) -> None:
    objects = parse(chart.template(set_values=["functions.namespaces={default,team-a}"]))
    policies = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "lf-function-egress-lf"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["default", "team-a"]


# -- PostgreSQL -------------------------------------------------------------------------------------------------------


def test_postgres_password_from_values_or_generated(helm_binary: Path) -> None:
    given = find(parse(chart.template(set_values=["postgres.password=s3cret"])), "Secret", "lf-postgres")
    assert base64.b64decode(given["data"]["password"]) == b"s3cret"
    generated = base64.b64decode(find(parse(chart.template()), "Secret", "lf-postgres")["data"]["password"])
    assert re.fullmatch(rb"[A-Za-z0-9]{32}", generated)
    objects = parse(chart.template(set_values=["postgres.existingSecret=mine"]))
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "lf-postgres"]
    volumes = find(objects, "StatefulSet", "lf-postgres")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "password"} | {"secret": {"secretName": "mine", "items": [{"key": "password", "path": "password"}],
            "defaultMode": 0o440}} in volumes  # fmt: skip
