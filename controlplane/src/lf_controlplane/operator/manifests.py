"""Pure builders of a Function's child objects and route entries: data in, plain dicts out (no API, no kopf).

Every child carries an ownerReference to its Function (controller, blockOwnerDeletion), the same labels, and a
deterministic name, so a server-side apply of the same spec is a no-op and the garbage collector removes the
children with their Function.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import msgspec
from lf_core.contract.routes import FunctionRoute, HttpTriggerRoute, route_of

from lf_controlplane.operator.config import OperatorConfig
from lf_controlplane.operator.specs import API_VERSION, FunctionObject, Owner, TriggerObject
from lf_controlplane.urls import function_url

MANAGED_BY = "lf-operator"
FUNCTION_LABEL = "litefunctions.io/function"
REVISION_ANNOTATION = "litefunctions.io/revision"
METRICS_PATH = "/metrics"
READY_PATH = "/readyz"

CODE_DIR = "/var/lib/lf/function"
SECRETS_DIR = "/var/run/lf/secrets"
RUN_AS = 65532  # the "nonroot" user of distroless images
DRAIN_GRACE_S = 5
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "function",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        FUNCTION_LABEL: name,
    }


def selector(name: str) -> dict[str, str]:
    return {FUNCTION_LABEL: name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(name).items())


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(fn: FunctionObject, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": fn.namespace,
        "labels": labels(fn.name),
        "ownerReferences": [owner_reference(fn.owner)],
    }


def revision(fn: FunctionObject) -> str:
    """A hash of everything the replicas run (spec, code): changes roll the Deployment."""
    digest = hashlib.sha256(msgspec.json.encode(fn.spec, order="sorted")).hexdigest()
    return digest[:16]


def configmap_name(name: str) -> str:
    return f"{name}-source"


def source_items(files: dict[str, str]) -> list[tuple[str, str]]:
    """(ConfigMap key, relative path) per file: the path itself when it is a valid key, else a hash of it."""
    items = []
    for path in sorted(files):
        key = path if _CONFIGMAP_KEY.fullmatch(path) else "f-" + hashlib.sha256(path.encode()).hexdigest()[:16]
        items.append((key, path))
    return items


def make_configmap(fn: FunctionObject) -> dict[str, Any] | None:
    """The inline source as a ConfigMap (None when the function runs an image)."""
    if fn.spec.source is None or fn.spec.source.files is None:
        return None
    files = fn.spec.source.files
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(fn, configmap_name(fn.name)),
        "data": {key: files[path] for key, path in source_items(files)},
    }


def image_of(fn: FunctionObject, config: OperatorConfig) -> str:
    return fn.spec.image or config.images.get(fn.spec.runtime, "")


def runtime_env(fn: FunctionObject, config: OperatorConfig) -> list[dict[str, str]]:
    """The runtime contract (LF_*, docs/operations.md) after the function's own env, which cannot override it."""
    function = fn.function
    contract = {
        "LF_NATS_URL": config.pod_nats_url,
        "LF_FUNCTION": function.name,
        "LF_NAMESPACE": function.namespace,
        "LF_HANDLER": function.handler,
        "LF_CONCURRENCY": str(function.concurrency),
        "LF_MAX_RESPONSE_BYTES": str(function.max_response_bytes),
        "LF_DRAIN_TIMEOUT": str(math.ceil(function.timeout_s)),
        "LF_SECRETS_DIR": SECRETS_DIR,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",  # noqa: S108 (the writable emptyDir)
    }
    # On the pod's address (the runtime's default is loopback): the kubelet's readinessProbe asks /readyz there.
    contract["LF_HEALTH_PORT"] = str(config.runtime_health_port)
    contract["LF_HEALTH_HOST"] = "0.0.0.0"
    if config.runtime_metrics_port:  # on the pod's address, for Prometheus (the runtime's default is loopback)
        contract["LF_METRICS_PORT"] = str(config.runtime_metrics_port)
        contract["LF_METRICS_HOST"] = "0.0.0.0"
    if inline(fn):  # an image carries its code where its own LF_FUNCTION_DIR says (lf deploy: /function)
        contract["LF_FUNCTION_DIR"] = CODE_DIR
    own = [{"name": k, "value": v} for k, v in sorted(function.env.items()) if k not in contract]
    return own + [{"name": k, "value": v} for k, v in contract.items()]


def inline(fn: FunctionObject) -> bool:
    return fn.spec.source is not None and fn.spec.source.files is not None


def _volumes(fn: FunctionObject) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    if inline(fn):
        assert fn.spec.source is not None and fn.spec.source.files is not None
        items = [{"key": key, "path": path} for key, path in source_items(fn.spec.source.files)]
        volumes.append({"name": "source", "configMap": {"name": configmap_name(fn.name), "items": items}})
        mounts.append({"name": "source", "mountPath": CODE_DIR, "readOnly": True})
    if fn.function.secrets:
        # Secret NAME with a key NAME (`kubectl create secret generic NAME --from-file=.secrets/NAME`) becomes
        # the file LF_SECRETS_DIR/NAME, as in lf dev.
        sources = [
            {"secret": {"name": secret, "items": [{"key": secret, "path": secret, "mode": 0o400}]}}
            for secret in fn.function.secrets
        ]
        volumes.append({"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o400}})
        mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
    return volumes, mounts


def _resources(fn: FunctionObject) -> dict[str, Any]:
    default: dict[str, Any] = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    own = fn.spec.resources
    if own is None:
        return default
    return {
        "requests": {k: str(v) for k, v in (own.requests or default["requests"]).items()},
        "limits": {k: str(v) for k, v in (own.limits or default["limits"]).items()},
    }


def desired_replicas(fn: FunctionObject) -> int | None:
    """spec.replicas pins the count; KEDA owns it when `scaling.mode: keda` (None: leave it out of the apply);
    otherwise scaling.min, at least 1 until scale-from-zero exists."""
    if fn.spec.replicas is not None:
        return fn.spec.replicas
    if fn.spec.scaling.mode == "keda":
        return None
    return fn.function.replicas


def make_deployment(fn: FunctionObject, config: OperatorConfig) -> dict[str, Any]:
    """The Deployment running the function's runtime under the restricted Pod Security Standard."""
    volumes, mounts = _volumes(fn)
    container: dict[str, Any] = {
        "name": "function",
        "image": image_of(fn, config),
        "env": runtime_env(fn, config),
        "resources": _resources(fn),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if inline(fn):  # the runtime image's command, code from the ConfigMap; an image of a function runs as built
        container["command"] = ["python", "-m", "lf_runtime"]
    annotations = {REVISION_ANNOTATION: revision(fn)}
    container["ports"] = [{"name": "health", "containerPort": config.runtime_health_port, "protocol": "TCP"}]
    container["readinessProbe"] = readiness_probe()
    if config.runtime_metrics_port:
        container["ports"].append({"name": "metrics", "containerPort": config.runtime_metrics_port, "protocol": "TCP"})
        annotations.update(scrape_annotations(config.runtime_metrics_port))
    pod_labels = labels(fn.name)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(fn.name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {"labels": pod_labels, "annotations": annotations},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": math.ceil(fn.function.timeout_s) + DRAIN_GRACE_S,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUN_AS,
                    "runAsGroup": RUN_AS,
                    "fsGroup": RUN_AS,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    replicas = desired_replicas(fn)
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(fn, fn.name), "spec": spec}


def readiness_probe() -> dict[str, Any]:
    """The function container's readinessProbe: the runtime's `/readyz` on the named port `health`, 200 only when
    the replica is connected to NATS, its subscription confirmed by the server and not draining (docs/operations.md,
    "Runtime settings"). A pod is Ready when a call sent to the function would be answered by it, which is what a
    rolling update (maxUnavailable 0) waits for before it stops an old replica.

    Every 2 s, 1 s to answer (the answer is read from memory, nothing is asked of NATS), unready after 2 misses so
    one probe lost to a CPU-starved node does not flap the pod. No startupProbe: it would only hold back a
    livenessProbe, and function pods have none (a replica that loses NATS waits for it, and restarting it would not
    bring the broker back); a slow import (Python loads the handler's module before the listener starts) just
    keeps the pod unready, never restarts it. No livenessProbe either, for the same reason: the runtime exits by itself
    (codes 1, 2, 75) when it cannot go on.
    """
    return {
        "httpGet": {"path": READY_PATH, "port": "health", "scheme": "HTTP"},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 2,
    }


def make_pdb(fn: FunctionObject) -> dict[str, Any] | None:
    """A PodDisruptionBudget (one replica down at a time) when the function keeps at least 2 replicas."""
    floor = fn.spec.replicas if fn.spec.replicas is not None else fn.spec.scaling.min
    if floor < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(fn, fn.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(fn.name)}},
    }


def scrape_annotations(port: int) -> dict[str, str]:
    """The `prometheus.io/*` pod annotations that annotation-based scrape configs select on."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": METRICS_PATH}


def make_network_policy(fn: FunctionObject, config: OperatorConfig) -> dict[str, Any]:
    """No ingress but the scrapers' (config.scrapers) to the metrics port: a runtime only dials out (to NATS, and
    whatever the function calls) and serves nothing else.

    The kubelet's readinessProbe on the `health` port needs no rule: NetworkPolicy lets a pod's own node in
    ("traffic is allowed ... if the traffic source is the pod's local node", NetworkPolicySpec.ingress), and
    kube-router, this project's enforcer, puts `-m addrtype --src-type LOCAL -d <pod IP> -j ACCEPT` first in every
    pod's firewall chain (pkg/controllers/netpol, syncPodFirewallChains; cloudnativelabs/kube-router#1017, closed,
    reported probes blocked on 1.0.1). A rule for the health port would open it to more than the node; the cluster
    tier's Ready pods are what proves it on the real node."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector(fn.name)}, "policyTypes": ["Ingress"]}
    scrapers = config.scrapers
    if config.runtime_metrics_port and scrapers.namespaces is not None:
        namespaces = dict(scrapers.namespaces)
        peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": namespaces} if namespaces else {}}
        if scrapers.pods:
            peer["podSelector"] = {"matchLabels": dict(scrapers.pods)}
        spec["ingress"] = [{"from": [peer], "ports": [{"protocol": "TCP", "port": config.runtime_metrics_port}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(fn, fn.name),
        "spec": spec,
    }


def children(fn: FunctionObject, config: OperatorConfig) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(objects to apply, (kind, name) of optional children to delete because this spec needs none)."""
    apply: list[dict[str, Any]] = []
    delete: list[tuple[str, str]] = []
    configmap = make_configmap(fn)
    if configmap is None:
        delete.append(("ConfigMap", configmap_name(fn.name)))
    else:
        apply.append(configmap)
    apply.append(make_deployment(fn, config))
    pdb = make_pdb(fn)
    if pdb is None:
        delete.append(("PodDisruptionBudget", fn.name))
    else:
        apply.append(pdb)
    apply.append(make_network_policy(fn, config))
    return apply, delete


def replicas_asked(fn: FunctionObject) -> int:
    """The replicas `fn` runs as applied (what counts against its namespace's cap)."""
    desired = desired_replicas(fn)
    return desired if desired is not None else fn.function.replicas


def namespace_replicas(deployments: list[dict[str, Any]], name: str) -> tuple[int, int]:
    """(the replicas the Deployments of the namespace's other Functions ask for, those of `name`'s own), counting
    only Deployments of ours (our labels and a Function owner)."""
    others = own = 0
    for deployment in deployments:
        meta = deployment.get("metadata") or {}
        if not any(ref.get("kind") == "Function" for ref in meta.get("ownerReferences") or []):
            continue
        replicas = (deployment.get("spec") or {}).get("replicas")
        count = 1 if replicas is None else int(replicas)
        if (meta.get("labels") or {}).get(FUNCTION_LABEL) == name:
            own += count
        else:
            others += count
    return others, own


def over_replica_cap(fn: FunctionObject, others: int, cap: int, current: int = 0) -> str | None:
    """Why `fn` may not run as asked: its namespace's Functions would ask for more than `cap` replicas together
    (LF_NAMESPACE_MAX_REPLICAS; 0: no cap). None when it fits, or when it asks for no more than the `current`
    replicas of its Deployment (scaling down, or another change at the same count, is never refused)."""
    asked = replicas_asked(fn)
    if cap <= 0 or others + asked <= cap or asked <= current:
        return None
    return (
        f"namespace {fn.namespace} may run at most {cap} replicas of Functions (LF_NAMESPACE_MAX_REPLICAS); "
        f"its other Functions ask for {others}, this one for {asked} ({others + asked} in all): the Deployment is "
        "left as it is"
    )


def make_route(fn: FunctionObject) -> FunctionRoute:
    return route_of(fn.function, revision(fn))


def url_of(fn: FunctionObject, config: OperatorConfig) -> str:
    return function_url(config.public_url, fn.namespace, fn.name)


def make_trigger_route(tr: TriggerObject) -> HttpTriggerRoute | None:
    """The route entry of an HTTP trigger (None for the other kinds, which are not routes)."""
    http = tr.trigger.http
    if http is None:
        return None
    return HttpTriggerRoute(
        namespace=tr.namespace,
        name=tr.name,
        function=tr.trigger.function,
        path=http.path,
        host=http.host,
        methods=tuple(sorted(set(http.methods))),
    )
