"""The chart's dispatcher (issue 15), rendered by the real helm: its Deployment (replicas, LF_* settings, the callback
keys mounted read-only, the admin port scraped and probed), its NetworkPolicy (the scrapers in; NATS, redis-server,
DNS and the callback CIDRs out, not the cluster's private ranges), the Secret lf-callback-keys, and exactly the
operator RBAC and admission policy the callback keys need."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from lf_controlplane.operator import callbackkeys as ck

from tests.chart.conftest import find, parse
from tests.chart.test_chart import NAMESPACE, admits, env_of, image_of, ingress_ports, pod_labels, selects
from tools.helm import chart

KEYS_DIR = "/var/run/lf/callback-keys"


def dispatcher_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(find(objects, "Deployment", "lf-dispatcher")["spec"]["template"]["spec"]["containers"][0])


def test_the_dispatcher_runs_two_replicas_of_its_image_with_its_settings(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", "lf-dispatcher")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert pod["terminationGracePeriodSeconds"] == 40  # above LF_DRAIN_TIMEOUT's 30 s
    container = dispatcher_container(objects)
    assert container["image"] == image_of("dispatcher") and "command" not in container
    env = env_of(container)
    assert env == {
        "LF_NATS_URL": "nats://lf-nats.lf-system.svc:4222",
        "LF_STREAM_REPLICAS": "3",
        "LF_ADMIN_HOST": "0.0.0.0",
        "LF_ADMIN_PORT": "9090",
        "LF_DRAIN_TIMEOUT": "30s",
        "LF_CALLBACK_KEYS_DIR": KEYS_DIR,
        "LF_VALKEY_URL": "redis://lf-redis.lf-system.svc:6379/0",
        "LF_LOG_LEVEL": "info",
    }
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090}]
    probe = container["livenessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", "metrics")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }


def test_the_callback_keys_are_the_operators_secret_mounted_read_only(objects: list[dict[str, Any]]) -> None:
    container = dispatcher_container(objects)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == KEYS_DIR)
    assert mount["readOnly"] is True
    volumes = find(objects, "Deployment", "lf-dispatcher")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    assert volume["secret"] == {"secretName": ck.KEYS_SECRET, "defaultMode": 0o440}  # root:65532 (fsGroup)
    secret = find(objects, "Secret", ck.KEYS_SECRET)
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert "data" not in secret and "stringData" not in secret  # the operator's: an upgrade keeps the keys
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    operator = find(objects, "Deployment", "lf-operator")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(operator)["LF_CALLBACK_KEYS_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_replicas_resources_settings_and_the_admin_port_come_from_values(helm_binary: Path) -> None:
    objects = parse(
        chart.template(
            set_values=[
                "dispatcher.replicas=3",
                "dispatcher.resources.limits.memory=1Gi",
                "dispatcher.env.LF_DISPATCHER_MAX_INFLIGHT=5000",
                "dispatcher.metrics.port=9100",
                "redis.enabled=false",
            ]
        )
    )
    assert find(objects, "Deployment", "lf-dispatcher")["spec"]["replicas"] == 3
    container = dispatcher_container(objects)
    assert container["resources"]["limits"]["memory"] == "1Gi"
    env = env_of(container)
    assert (env["LF_DISPATCHER_MAX_INFLIGHT"], env["LF_ADMIN_PORT"]) == ("5000", "9100")
    assert "LF_VALKEY_URL" not in env
    policy = find(objects, "NetworkPolicy", "lf-dispatcher")
    assert ingress_ports(policy, {"app": "prometheus"}, "monitoring") == {9100}
    assert all(p.get("port") != 6379 for rule in policy["spec"]["egress"] for p in rule.get("ports", []))


def _egress_blocks(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer]


def _allowed(blocks: list[dict[str, Any]], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for block in blocks:
        cidr = ipaddress.ip_network(block["cidr"])
        if ip.version == cidr.version and ip in cidr:
            if not any(ip in ipaddress.ip_network(e) for e in block.get("except", []) if ip.version == cidr.version):
                return True
    return False


def test_the_dispatchers_network_policy(objects: list[dict[str, Any]]) -> None:
    """In: only the scrapers, to the admin port. Out: NATS, redis-server, DNS, and callback addresses outside the
    private ranges where a cluster's pods, Services, nodes and the cloud's metadata service live."""
    labels = pod_labels(objects, "Deployment", "lf-dispatcher")
    policy = find(objects, "NetworkPolicy", "lf-dispatcher")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert selects(policy["spec"]["podSelector"], labels)
    assert not selects(policy["spec"]["podSelector"], pod_labels(objects, "Deployment", "lf-ingestor"))
    assert ingress_ports(policy, {"app": "prometheus"}, "monitoring") == {9090}
    assert ingress_ports(policy, pod_labels(objects, "Deployment", "lf-ingestor"), NAMESPACE) == set()
    assert ingress_ports(policy, {"app": "stranger"}, "default") == set()

    rules = [r for r in policy["spec"]["egress"] if not any("ipBlock" in p for p in r["to"])]
    system = {"kubernetes.io/metadata.name": NAMESPACE}
    kube_system = {"kubernetes.io/metadata.name": "kube-system"}
    reachable = {
        name: {p["port"] for rule in rules if admits(rule["to"], peer, ns, ns == system) for p in rule["ports"]}
        for name, peer, ns in [
            ("nats", pod_labels(objects, "StatefulSet", "lf-nats"), system),
            ("redis", pod_labels(objects, "Deployment", "lf-redis"), system),
            ("postgres", pod_labels(objects, "StatefulSet", "lf-postgres"), system),
            ("ingestor", pod_labels(objects, "Deployment", "lf-ingestor"), system),
            ("dns", {"k8s-app": "kube-dns"}, kube_system),
        ]
    }
    assert reachable == {"nats": {4222}, "redis": {6379}, "postgres": set(), "ingestor": set(), "dns": {53}}
    blocks = _egress_blocks(policy)
    for outside in ("1.1.1.1", "203.0.113.7", "2606:4700::1111"):
        assert _allowed(blocks, outside), outside
    for inside in ("10.96.0.1", "10.244.1.5", "172.20.0.3", "192.168.1.1", "169.254.169.254", "127.0.0.1",
                   "100.64.0.1", "fd00::1", "fe80::1", "::1"):  # fmt: skip
        assert not _allowed(blocks, inside), inside
    callback_rule = next(r for r in policy["spec"]["egress"] if any("ipBlock" in p for p in r["to"]))
    assert "ports" not in callback_rule  # any port, unless dispatcher.callbacks.ports says

    # redis-server admits the dispatcher (the cron leader lease); PostgreSQL does not.
    redis = find(objects, "NetworkPolicy", "lf-redis")
    assert ingress_ports(redis, labels, NAMESPACE) == {6379}
    assert ingress_ports(find(objects, "NetworkPolicy", "lf-postgres"), labels, NAMESPACE) == set()


def test_callback_cidrs_and_ports_are_values(helm_binary: Path) -> None:
    rendered = chart.helm(
        "template", "lf", str(chart.CHART), "--namespace", NAMESPACE, "--values", str(chart.SAMPLE_VALUES),
        "--set-json", 'dispatcher.callbacks.egress=[{"cidr":"203.0.113.0/24"},{"cidr":"10.20.0.0/16"}]',
        "--set-json", "dispatcher.callbacks.ports=[443]",
    )  # fmt: skip
    policy = find(parse(rendered), "NetworkPolicy", "lf-dispatcher")
    assert _egress_blocks(policy) == [{"cidr": "203.0.113.0/24"}, {"cidr": "10.20.0.0/16"}]
    rule = next(r for r in policy["spec"]["egress"] if any("ipBlock" in p for p in r["to"]))
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    none = chart.helm(
        "template", "lf", str(chart.CHART), "--namespace", NAMESPACE, "--values", str(chart.SAMPLE_VALUES),
        "--set-json", "dispatcher.callbacks.egress=[]",
    )  # fmt: skip
    assert _egress_blocks(find(parse(none), "NetworkPolicy", "lf-dispatcher")) == []  # no callbacks leave


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        (
            'dispatcher.callbacks.egress=[{"cdr":"0.0.0.0/0"}]',
            "at '/dispatcher/callbacks/egress/0': missing property 'cidr'",
        ),
        ("dispatcher.replicas=0", "at '/dispatcher/replicas': minimum"),
        ('dispatcher.drainTimeout="soon"', "at '/dispatcher/drainTimeout': 'soon' does not match"),
        ("images.dispatcher=null", "at '/images': missing property 'dispatcher'"),
    ],
)
def test_the_schema_refuses_bad_dispatcher_values(helm_binary: Path, setting: str, error: str) -> None:
    args = ["template", "lf", str(chart.CHART), "--namespace", NAMESPACE, "--values", str(chart.SAMPLE_VALUES)]
    with pytest.raises(chart.HelmError) as refused:
        chart.helm(*args, "--set-json", setting)
    assert error in str(refused.value).partition("schema")[2]


def _grants(rules: list[dict[str, Any]], resource: str) -> set[tuple[str, str]]:
    return {
        (verb, name)
        for rule in rules
        if resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }


def test_the_operator_gets_exactly_what_the_callback_keys_need(helm_binary: Path) -> None:
    objects = parse(chart.template(set_values=["functions.namespaces={default,team-a}"]))
    cluster_role = find(objects, "ClusterRole", "lf-operator-lf-system")
    assert _grants(cluster_role["rules"], "secrets") == {("list", ck.PUBLISHED_SECRET), ("watch", ck.PUBLISHED_SECRET)}
    own = find(objects, "Role", "lf-operator-callback-keys")
    assert own["metadata"]["namespace"] == NAMESPACE
    assert _grants(own["rules"], "secrets") == {("get", ck.KEYS_SECRET), ("update", ck.KEYS_SECRET), ("create", "*")}
    per_namespace = [
        o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "lf-operator-callback-key-lf"
    ]
    assert sorted(r["metadata"]["namespace"] for r in per_namespace) == ["default", "team-a"]
    for role in per_namespace:
        assert _grants(role["rules"], "secrets") == {
            ("get", ck.PUBLISHED_SECRET), ("update", ck.PUBLISHED_SECRET), ("create", "*")
        }  # fmt: skip
    bindings = [
        o
        for o in objects
        if o["kind"] == "RoleBinding" and o["metadata"]["name"].startswith("lf-operator-callback-key")
    ]
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lf-operator", "namespace": NAMESPACE}]
    # No other rule of any role names Secrets.
    for obj in objects:
        if obj["kind"] in ("Role", "ClusterRole") and obj not in (cluster_role, own, *per_namespace):
            assert not _grants(obj["rules"], "secrets"), obj["metadata"]["name"]
    policy = find(objects, "ValidatingAdmissionPolicy", "lf-operator-secrets-lf-system")
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username == "system:serviceaccount:lf-system:lf-operator"'
    )
    assert policy["spec"]["failurePolicy"] == "Fail"
    binding = find(objects, "ValidatingAdmissionPolicyBinding", "lf-operator-secrets-lf-system")
    assert binding["spec"] == {"policyName": "lf-operator-secrets-lf-system", "validationActions": ["Deny"]}
