"""The operator's pure builders as tables: a Function spec in, the child objects and route entries out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
import pytest
from lf_controlplane.operator import manifests
from lf_controlplane.operator.config import OperatorConfig
from lf_controlplane.operator.specs import parse_function, parse_trigger
from lf_core.contract.specs import Scaling

CONFIG = OperatorConfig(nats_url="nats://nats:4222", public_url="http://lf.example", images={"python": "py:1"})
CODE = {"handler.py": "def handle(req):\n    return 'hi'\n"}


def body(name: str = "hello", **spec: Any) -> dict[str, Any]:
    spec.setdefault("source", {"files": CODE})
    return {
        "apiVersion": "litefunctions.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1", "generation": 3},
        "spec": spec,
    }


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


CHILDREN = {
    "inline source, 1 replica": ({}, {"ConfigMap", "Deployment", "NetworkPolicy"}, {"PodDisruptionBudget"}),
    "image, no source": (
        {"source": None, "image": "me/fn:2"},
        {"Deployment", "NetworkPolicy"},
        {"ConfigMap", "PodDisruptionBudget"},
    ),
    "min 2 replicas": (
        {"scaling": {"min": 2}},
        {"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget"},
        set(),
    ),
    "pinned 3 replicas": ({"replicas": 3}, {"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget"}, set()),
}


@pytest.mark.parametrize(("spec", "applied", "deleted"), CHILDREN.values(), ids=CHILDREN.keys())
def test_children_of_a_spec(spec: dict[str, Any], applied: set[str], deleted: set[str]) -> None:
    if spec.get("source", "x") is None:
        spec = {k: v for k, v in spec.items() if k != "source"}
        fn = parse_function({**body(), "spec": spec})
    else:
        fn = parse_function(body(**spec))
    to_apply, to_delete = manifests.children(fn, CONFIG)
    assert {obj["kind"] for obj in to_apply} == applied
    assert {kind for kind, _ in to_delete} == deleted
    for obj in to_apply:
        assert obj["metadata"]["namespace"] == "team-a"
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "litefunctions.io/v1alpha1",
                "kind": "Function",
                "name": "hello",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["labels"]["litefunctions.io/function"] == "hello"


def test_deployment_is_restricted() -> None:
    deployment = manifests.make_deployment(parse_function(body()), CONFIG)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", manifests.CODE_DIR: "source"}
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]


ENV = {
    "defaults": (
        {},
        {
            "LF_CONCURRENCY": "16",
            "LF_MAX_RESPONSE_BYTES": str(6 * 2**20),
            "LF_DRAIN_TIMEOUT": "60",
        },
    ),
    "tuned": (
        {"concurrency": 4, "timeout": "2s", "limits": {"responseBody": "1Mi"}},
        {"LF_CONCURRENCY": "4", "LF_MAX_RESPONSE_BYTES": str(2**20), "LF_DRAIN_TIMEOUT": "2"},
    ),
    "own env, contract wins": (
        {"env": {"GREETING": "hi", "LF_FUNCTION": "evil", "LF_CONCURRENCY": "999"}},
        {"GREETING": "hi", "LF_FUNCTION": "hello", "LF_CONCURRENCY": "16"},
    ),
}


@pytest.mark.parametrize(("spec", "expected"), ENV.values(), ids=ENV.keys())
def test_runtime_env_follows_the_contract(spec: dict[str, Any], expected: dict[str, str]) -> None:
    env = manifests.runtime_env(parse_function(body(**spec)), CONFIG)
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), "server-side apply refuses duplicate env names"
    values = {e["name"]: e["value"] for e in env}
    assert values["LF_NATS_URL"] == "nats://nats:4222"
    assert (values["LF_FUNCTION"], values["LF_NAMESPACE"], values["LF_HANDLER"]) == (
        "hello",
        "team-a",
        "handler.handle",
    )
    assert values["LF_FUNCTION_DIR"] == manifests.CODE_DIR
    assert expected.items() <= values.items()


REPLICAS = {
    "default": ({}, 1),
    "scaling.min": ({"scaling": {"min": 3}}, 3),
    "pinned by spec.replicas": ({"replicas": 7, "scaling": {"min": 2}}, 7),
}


@pytest.mark.parametrize(("spec", "replicas"), REPLICAS.values(), ids=REPLICAS.keys())
def test_replicas(spec: dict[str, Any], replicas: int | None) -> None:
    deployment = manifests.make_deployment(parse_function(body(**spec)), CONFIG)
    assert deployment["spec"].get("replicas") == replicas


def test_keda_would_own_the_count() -> None:
    """`scaling.mode: keda` is refused until KEDA support lands (unsupported_fields); the builder is ready for it."""
    fn = parse_function(body())
    keda = replace(fn, spec=msgspec.structs.replace(fn.spec, scaling=Scaling(mode="keda")))
    assert "replicas" not in manifests.make_deployment(keda, CONFIG)["spec"]


def test_image_default_per_runtime_or_spec_image() -> None:
    assert manifests.image_of(parse_function(body()), CONFIG) == "py:1"
    assert manifests.image_of(parse_function(body(image="me/fn:2")), CONFIG) == "me/fn:2"


def test_a_spec_change_rolls_the_pod_template_and_the_same_spec_does_not() -> None:
    def annotation(**spec: Any) -> str:
        deployment = manifests.make_deployment(parse_function(body(**spec)), CONFIG)
        return str(deployment["spec"]["template"]["metadata"]["annotations"][manifests.REVISION_ANNOTATION])

    assert annotation() == annotation()
    assert annotation() != annotation(source={"files": {"handler.py": "def handle(req): return 'new'\n"}})
    assert annotation() != annotation(concurrency=3)


def test_nested_files_get_valid_configmap_keys_and_their_paths() -> None:
    fn = parse_function(body(source={"files": {"handler.py": "x", "lib/util.py": "y"}}))
    configmap = manifests.make_configmap(fn)
    assert configmap is not None
    items = manifests.source_items({"handler.py": "x", "lib/util.py": "y"})
    assert dict(items)["handler.py"] == "handler.py"
    key = next(k for k, p in items if p == "lib/util.py")
    assert "/" not in key and configmap["data"][key] == "y"


def test_secrets_are_projected_as_files() -> None:
    deployment = manifests.make_deployment(parse_function(body(secrets=["db-password"])), CONFIG)
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    assert volume["projected"]["sources"][0]["secret"]["items"] == [
        {"key": "db-password", "path": "db-password", "mode": 0o400}
    ]


def test_route_and_url() -> None:
    fn = parse_function(body(timeout="2s"))
    route = manifests.make_route(fn)
    assert (route.namespace, route.name, route.timeout_ms, route.revision) == (
        "team-a",
        "hello",
        2000,
        manifests.revision(fn),
    )
    assert manifests.url_of(fn, CONFIG) == "http://lf.example/function/hello.team-a"


TRIGGERS = {
    "http": ({"function": "hello", "http": {"path": "/u/{id}", "methods": ["POST", "GET"]}}, ("GET", "POST")),
    "cron": ({"function": "hello", "cron": {"schedule": "*/5 * * * *"}}, None),
}


@pytest.mark.parametrize(("spec", "methods"), TRIGGERS.values(), ids=TRIGGERS.keys())
def test_trigger_routes(spec: dict[str, Any], methods: tuple[str, ...] | None) -> None:
    tr = parse_trigger({"metadata": {"name": "t", "namespace": "team-a", "uid": "u"}, "spec": spec})
    route = manifests.make_trigger_route(tr)
    if methods is None:
        assert route is None
    else:
        assert route is not None
        assert (route.function, route.path, route.methods) == ("hello", "/u/{id}", methods)


def test_an_image_runs_as_built() -> None:
    fn = parse_function({**body(), "spec": {"image": "me/fn:2"}})
    container = manifests.make_deployment(fn, CONFIG)["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container
    assert "LF_FUNCTION_DIR" not in {e["name"] for e in container["env"]}
    inline = manifests.make_deployment(parse_function(body()), CONFIG)["spec"]["template"]["spec"]["containers"][0]
    assert inline["command"] == ["python", "-m", "lf_runtime"]


def test_runtime_pods_serve_metrics_for_prometheus() -> None:
    deployment = manifests.make_deployment(parse_function(body()), CONFIG)
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["LF_METRICS_PORT"], env["LF_METRICS_HOST"]) == ("9091", "0.0.0.0")  # not the runtime's loopback
    assert container["ports"] == [
        {"name": "health", "containerPort": 8081, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9091, "protocol": "TCP"},
    ]
    annotations = template["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9091",
        "prometheus.io/path": "/metrics",
    }
    own = manifests.make_deployment(parse_function(body(env={"LF_METRICS_PORT": "1", "LF_METRICS_HOST": "x"})), CONFIG)
    own_env = [e for e in own["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"].startswith("LF_METRICS")]
    assert own_env == [{"name": "LF_METRICS_PORT", "value": "9091"}, {"name": "LF_METRICS_HOST", "value": "0.0.0.0"}]


def test_metrics_port_zero_leaves_pods_unscraped() -> None:
    config = OperatorConfig(images={"python": "py:1"}, runtime_metrics_port=0)
    deployment = manifests.make_deployment(parse_function(body()), config)
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert [port["name"] for port in container["ports"]] == ["health"], "the readiness port stays"
    assert not {e["name"] for e in container["env"]} & {"LF_METRICS_PORT", "LF_METRICS_HOST"}
    assert set(template["metadata"]["annotations"]) == {manifests.REVISION_ANNOTATION}
    policy = manifests.make_network_policy(parse_function(body()), config)
    assert "ingress" not in policy["spec"]


SCRAPE_RULES = {
    "default: pods of namespace monitoring": (
        {},
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    ),
    "any namespace": ({"LF_METRICS_SCRAPERS": "*"}, [{"namespaceSelector": {}}]),
    "labelled namespaces and pods": (
        {"LF_METRICS_SCRAPERS": "team=obs, tier=infra", "LF_METRICS_SCRAPER_PODS": "app.kubernetes.io/name=prometheus"},
        [
            {
                "namespaceSelector": {"matchLabels": {"team": "obs", "tier": "infra"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
    ),
    "nobody": ({"LF_METRICS_SCRAPERS": ""}, None),
}


@pytest.mark.parametrize(("env", "peers"), SCRAPE_RULES.values(), ids=SCRAPE_RULES.keys())
def test_network_policy_admits_only_the_scrapers_to_the_metrics_port(
    env: dict[str, str], peers: list[dict[str, Any]] | None
) -> None:
    config = OperatorConfig.from_env(env)
    policy = manifests.make_network_policy(parse_function(body()), config)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"litefunctions.io/function": "hello"}}
    assert spec["policyTypes"] == ["Ingress"]
    if peers is None:
        assert "ingress" not in spec
    else:
        assert spec["ingress"] == [{"from": peers, "ports": [{"protocol": "TCP", "port": 9091}]}]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LF_METRICS_SCRAPERS": "monitoring"}, "LF_METRICS_SCRAPERS: 'monitoring' is not label=value"),
        ({"LF_METRICS_SCRAPER_PODS": "a=b=c"}, "LF_METRICS_SCRAPER_PODS: 'a=b=c' is not label=value"),
        ({"LF_RUNTIME_METRICS_PORT": "70000"}, "LF_RUNTIME_METRICS_PORT='70000' is not a port"),
        ({"LF_OPERATOR_METRICS_PORT": "x"}, "LF_OPERATOR_METRICS_PORT='x' is not a port"),
        ({"LF_RUNTIME_HEALTH_PORT": "0"}, "LF_RUNTIME_HEALTH_PORT=0: function pods need a readiness port"),
        ({"LF_RUNTIME_HEALTH_PORT": "9091"}, "LF_RUNTIME_HEALTH_PORT=9091 is also LF_RUNTIME_METRICS_PORT"),
    ],
)
def test_malformed_metrics_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OperatorConfig.from_env(env)


def test_metrics_settings_from_the_environment() -> None:
    config = OperatorConfig.from_env(
        {"LF_RUNTIME_METRICS_PORT": "9300", "LF_OPERATOR_METRICS_PORT": "8081", "LF_OPERATOR_METRICS_HOST": "127.0.0.1"}
    )
    assert (config.runtime_metrics_port, config.metrics_port, config.metrics_host) == (9300, 8081, "127.0.0.1")
    assert OperatorConfig.from_env({}).metrics_port == 0  # off unless asked for


@pytest.mark.parametrize("spec", [{"source": {"files": CODE}}, {"image": "me/fn:2"}], ids=["inline", "image"])
def test_readiness_probe_asks_the_runtimes_readyz(spec: dict[str, Any]) -> None:
    fn = parse_function({**body(), "spec": spec})
    container = manifests.make_deployment(fn, CONFIG)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["LF_HEALTH_PORT"], env["LF_HEALTH_HOST"]) == ("8081", "0.0.0.0")  # the kubelet comes from the node
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/readyz", "port": "health", "scheme": "HTTP"},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 2,
    }
    assert "livenessProbe" not in container and "startupProbe" not in container


def test_health_port_from_the_environment_and_not_overridable_by_the_function() -> None:
    config = OperatorConfig.from_env({"LF_RUNTIME_HEALTH_PORT": "8500"})
    assert config.runtime_health_port == 8500
    fn = parse_function(body(env={"LF_HEALTH_PORT": "1", "LF_HEALTH_HOST": "127.0.0.1"}))
    container = manifests.make_deployment(fn, config)["spec"]["template"]["spec"]["containers"][0]
    health = [e for e in container["env"] if e["name"].startswith("LF_HEALTH")]
    assert health == [{"name": "LF_HEALTH_PORT", "value": "8500"}, {"name": "LF_HEALTH_HOST", "value": "0.0.0.0"}]
    assert container["ports"][0] == {"name": "health", "containerPort": 8500, "protocol": "TCP"}


def test_network_policy_has_no_rule_for_the_probe_port() -> None:
    """The kubelet's probes come from the pod's own node, which NetworkPolicy always admits (manifests docs)."""
    for env in ({}, {"LF_METRICS_SCRAPERS": ""}):
        spec = manifests.make_network_policy(parse_function(body()), OperatorConfig.from_env(env))["spec"]
        ports = [port["port"] for rule in spec.get("ingress", []) for port in rule["ports"]]
        assert 8081 not in ports and "health" not in ports


def test_spec_async_stays_out_of_the_pod() -> None:
    """spec.async reaches the dispatcher in the route entry; a replica creates no stream and pulls no async call."""
    spec = {"concurrency": 8, "async": {"retries": 4, "backoff": "500ms", "maxConcurrency": 20}}
    env = manifests.runtime_env(parse_function(body(**spec)), replace(CONFIG, stream_replicas=3))
    assert not [e["name"] for e in env if e["name"].startswith(("LF_ASYNC_", "LF_TIMEOUT", "LF_STREAM_REPLICAS"))]
