"""The operator's pure parts of issue 14: whose an object is (item 7) and a namespace's replica cap (item 11)."""

from __future__ import annotations

from typing import Any

import pytest
from lf_controlplane.operator import manifests
from lf_controlplane.operator.config import NAMESPACE_MAX_REPLICAS, OperatorConfig
from lf_controlplane.operator.kube import describe, owned_by
from lf_controlplane.operator.specs import parse_function


def body(name: str = "fn", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "litefunctions.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}", "generation": 1},
        "spec": {"source": {"files": {"handler.py": "def handle(req): ...\n"}}, **spec},
    }


def test_owned_by_matches_the_owners_uid_only() -> None:
    fn = parse_function(body())
    child = manifests.make_network_policy(fn, OperatorConfig())
    assert owned_by(child, "uid-fn")
    assert not owned_by(child, "uid-other")  # same name and kind, another Function (or one deleted and re-made)
    assert not owned_by({"metadata": {"name": "fn"}}, "uid-fn")  # someone else's: no ownerReferences at all
    assert not owned_by(child, "")
    assert describe(child) == "NetworkPolicy team-a/fn"


def deployment(function: str, replicas: int | None, *, owned: bool = True) -> dict[str, Any]:
    refs = [{"kind": "Function", "name": function, "uid": f"uid-{function}"}] if owned else []
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"labels": manifests.labels(function), "ownerReferences": refs}, "spec": spec}


def test_the_namespaces_replicas_are_its_functions_deployments() -> None:
    deployments = [deployment("a", 3), deployment("b", 0), deployment("c", None), deployment("fn", 40)]
    deployments.append(deployment("stray", 100, owned=False))  # no Function owns it: not ours to count
    assert manifests.namespace_replicas(deployments, "fn") == (3 + 0 + 1, 40)


@pytest.mark.parametrize(
    ("spec", "others", "cap", "current", "refused"),
    [
        ({"replicas": 10}, 40, 50, 0, False),  # exactly the cap
        ({"replicas": 11}, 40, 50, 0, True),
        ({"scaling": {"min": 3}}, 48, 50, 0, True),
        ({}, 49, 50, 0, False),  # one replica by default
        ({"replicas": 1000}, 0, 0, 0, False),  # 0: no cap
        ({"replicas": 11}, 40, 50, 5, True),  # growing past it
        ({"replicas": 5}, 60, 50, 8, False),  # scaling down is never refused, even over a (lowered) cap
        ({"replicas": 8}, 60, 50, 8, False),  # nor another change at the same count
    ],
)
def test_the_replica_cap(spec: dict[str, Any], others: int, cap: int, current: int, refused: bool) -> None:
    message = manifests.over_replica_cap(parse_function(body(**spec)), others, cap, current)
    assert (message is not None) == refused
    if message is not None:
        assert f"at most {cap} replicas" in message and "LF_NAMESPACE_MAX_REPLICAS" in message
        assert f"other Functions ask for {others}" in message


def test_the_cap_setting() -> None:
    assert OperatorConfig.from_env({}).namespace_max_replicas == NAMESPACE_MAX_REPLICAS == 50
    assert OperatorConfig.from_env({"LF_NAMESPACE_MAX_REPLICAS": "200"}).namespace_max_replicas == 200
    assert OperatorConfig.from_env({"LF_NAMESPACE_MAX_REPLICAS": "0"}).namespace_max_replicas == 0
    for bad in ("-1", "many", "1.5"):
        with pytest.raises(ValueError, match="LF_NAMESPACE_MAX_REPLICAS"):
            OperatorConfig.from_env({"LF_NAMESPACE_MAX_REPLICAS": bad})
