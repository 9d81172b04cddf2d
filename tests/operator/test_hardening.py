"""Issue 14 through a real kube-apiserver: the operator never takes over or deletes an object it does not own
(item 7), refuses fields nothing serves (item 12), body limits past the broker's payload (item 5) and timeouts past
the u32 budget (item 10), and keeps a namespace's Functions within LF_NAMESPACE_MAX_REPLICAS (item 11).

Each test deletes its Functions at the end (the session's apiserver is shared with the leader-election tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from lf_controlplane.operator.config import NAMESPACE_MAX_REPLICAS

from tests.harness.waiting import wait_for
from tests.operator.conftest import Kubectl, OperatorProcess

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

CODE = {"handler.py": "def handle(req):\n    return 'hi'\n"}


def function(name: str, namespace: str, **spec: Any) -> str:
    spec = {"source": {"files": CODE}} | spec
    manifest = {
        "apiVersion": "litefunctions.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {key: value for key, value in spec.items() if value is not None},
    }
    return json.dumps(manifest)


def condition(kubectl: Kubectl, name: str, namespace: str, type_: str, generation: int = 1) -> dict[str, Any]:
    """The Function's condition `type_` once the operator has reconciled `generation`."""

    def done() -> dict[str, Any] | None:
        obj = kubectl.get("function", name, namespace) or {}
        status = obj.get("status") or {}
        if status.get("observedGeneration", 0) < generation:
            return None
        return next((c for c in status.get("conditions", []) if c["type"] == type_), None)

    found: dict[str, Any] = wait_for(done, 60, f"the operator to reconcile {name} (generation {generation})")
    return found


@pytest.fixture
def functions(kubectl: Kubectl, namespace: str) -> Iterator[list[str]]:
    """Names of the Functions a test makes in `namespace`, deleted (and waited for) when it ends."""
    names: list[str] = []
    yield names
    for name in names:
        kubectl("delete", "function", name, "-n", namespace, "--ignore-not-found", "--wait=true", "--timeout=60s")


def snapshot(kubectl: Kubectl, objects: list[tuple[str, str]], namespace: str) -> dict[str, dict[str, Any] | None]:
    return {f"{kind}/{name}": kubectl.get(kind, name, namespace) for kind, name in objects}


FOREIGN_POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "spec": {
        "podSelector": {"matchLabels": {"app": "db"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "api"}}}], "ports": [{"port": 5432}]}],
    },
}
FOREIGN_PDB = {
    "apiVersion": "policy/v1",
    "kind": "PodDisruptionBudget",
    "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}},
}
FOREIGN_CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"db.conf": "max_connections = 100\n"}}


def create_foreign(kubectl: Kubectl, namespace: str, name: str, obj: dict[str, Any]) -> None:
    kubectl("create", "-f", "-", input=json.dumps({**obj, "metadata": {"name": name, "namespace": namespace}}))


def test_a_function_named_like_others_objects_takes_over_nothing_and_its_delete_leaves_them(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, functions: list[str]
) -> None:
    """Item 7: a NetworkPolicy, a PDB and a ConfigMap `db-source` of someone else, then a Function `db` (2 replicas:
    it would have all four children). Nothing is applied, the objects stay byte for byte, the Function says why."""
    create_foreign(kubectl, namespace, "db", FOREIGN_POLICY)
    create_foreign(kubectl, namespace, "db", FOREIGN_PDB)
    create_foreign(kubectl, namespace, "db-source", FOREIGN_CONFIGMAP)
    theirs = [("networkpolicy", "db"), ("poddisruptionbudget", "db"), ("configmap", "db-source")]
    before = snapshot(kubectl, theirs, namespace)

    functions.append("db")
    kubectl("apply", "-f", "-", input=function("db", namespace, scaling={"min": 2}))
    valid = condition(kubectl, "db", namespace, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "OwnershipConflict")
    for kind in ("NetworkPolicy", "PodDisruptionBudget"):
        assert f"{kind} {namespace}/db" in valid["message"]
    assert f"ConfigMap {namespace}/db-source" in valid["message"]
    status = (kubectl.get("function", "db", namespace) or {})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["status"]) == ("Failed", "False")
    assert kubectl.get("deployment", "db", namespace) is None  # nothing of ours was applied either
    assert snapshot(kubectl, theirs, namespace) == before

    kubectl("delete", "function", "db", "-n", namespace, "--wait=true", "--timeout=60s")
    assert snapshot(kubectl, theirs, namespace) == before


def test_children_a_spec_does_not_need_are_deleted_only_when_they_are_the_functions(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, functions: list[str]
) -> None:
    """Item 7: a Function from an image with one replica needs no ConfigMap `NAME-source` and no PDB `NAME`; the
    operator deleted whatever had those names. Someone else's are left; its own (after scaling down) go."""
    create_foreign(kubectl, namespace, "img-source", FOREIGN_CONFIGMAP)
    create_foreign(kubectl, namespace, "img", FOREIGN_PDB)
    theirs = [("configmap", "img-source"), ("poddisruptionbudget", "img")]
    before = snapshot(kubectl, theirs, namespace)

    functions.append("img")
    kubectl("apply", "-f", "-", input=function("img", namespace, source=None, image="example/fn:1"))
    valid = condition(kubectl, "img", namespace, "Valid")
    assert valid["status"] == "True", valid  # nothing it needs is taken: it runs
    assert kubectl.get("deployment", "img", namespace) is not None
    assert snapshot(kubectl, theirs, namespace) == before

    # its own PDB (2 replicas) is deleted when it scales back to one
    functions.append("own")
    kubectl("apply", "-f", "-", input=function("own", namespace, replicas=2))
    condition(kubectl, "own", namespace, "Valid")
    assert kubectl.get("poddisruptionbudget", "own", namespace) is not None
    kubectl("patch", "function", "own", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"replicas": 1}}))
    condition(kubectl, "own", namespace, "Valid", generation=2)
    wait_for(lambda: kubectl.get("poddisruptionbudget", "own", namespace) is None, 30, "its own PDB deleted")

    kubectl("delete", "function", "img", "-n", namespace, "--wait=true", "--timeout=60s")
    assert snapshot(kubectl, theirs, namespace) == before


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "item 12: scaling.max": ({"scaling": {"max": 5}}, "spec.scaling.max: not served yet"),
    "item 5: requestBody over the broker's payload": (
        {"limits": {"requestBody": "1Gi"}},
        "spec.limits.requestBody: '1Gi' is over the cap of 7340032 bytes",
    ),
    "item 10: timeout past the u32 budget": ({"timeout": "1200h"}, "spec.timeout: '1200h' is over the platform's"),
}


def test_fields_nothing_serves_and_limits_past_the_platforms_are_refused(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, functions: list[str]
) -> None:
    """Items 12, 5, 10: the schema accepts these (a quantity or a duration is a string to it); the operator marks
    the Function Valid=False naming the field and creates nothing."""
    for index, (spec, _message) in enumerate(REFUSED.values()):
        name = f"refused-{index}"
        functions.append(name)
        kubectl("apply", "-f", "-", input=function(name, namespace, **spec))
    for index, (_spec, message) in enumerate(REFUSED.values()):
        name = f"refused-{index}"
        valid = condition(kubectl, name, namespace, "Valid")
        assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
        assert message in valid["message"]
        assert kubectl.get("deployment", name, namespace) is None


def test_a_namespaces_functions_stay_within_its_replica_cap(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, functions: list[str]
) -> None:
    """Item 11: LF_NAMESPACE_MAX_REPLICAS (the default, 50, in this operator). A Function that would take the
    namespace over it gets Valid=False naming the cap and the sum, and no Deployment; one that fits runs; a scale
    past the cap leaves the Deployment where it was."""
    cap = NAMESPACE_MAX_REPLICAS
    functions.extend(["big", "small"])
    kubectl("apply", "-f", "-", input=function("big", namespace, replicas=cap - 20))
    assert condition(kubectl, "big", namespace, "Valid")["status"] == "True"
    kubectl("apply", "-f", "-", input=function("small", namespace, replicas=21))
    valid = condition(kubectl, "small", namespace, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "ReplicaCapExceeded")
    assert f"at most {cap} replicas" in valid["message"] and "LF_NAMESPACE_MAX_REPLICAS" in valid["message"]
    assert f"other Functions ask for {cap - 20}, this one for 21 ({cap + 1} in all)" in valid["message"]
    assert kubectl.get("deployment", "small", namespace) is None

    # what fits runs
    kubectl("scale", "function", "small", "-n", namespace, "--replicas=20")
    assert condition(kubectl, "small", namespace, "Valid", generation=2)["status"] == "True"
    assert (kubectl.get("deployment", "small", namespace) or {})["spec"]["replicas"] == 20
    # a scale past the cap leaves the Deployment as it was
    kubectl("scale", "function", "small", "-n", namespace, "--replicas=25")
    assert condition(kubectl, "small", namespace, "Valid", generation=3)["reason"] == "ReplicaCapExceeded"
    assert (kubectl.get("deployment", "small", namespace) or {})["spec"]["replicas"] == 20
