"""The checked-in CRDs are generated from the msgspec models, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from lf_controlplane.operator import crds

CRDS = Path(__file__).resolve().parents[3] / crds.CHART_CRDS


def test_checked_in_crds_match_the_models() -> None:
    for name, text in crds.rendered().items():
        path = CRDS / name
        assert path.exists(), f"{path} missing: run python -m lf_controlplane.operator.crds"
        assert path.read_text() == text, f"{path} drifted from the models: run python -m lf_controlplane.operator.crds"
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(crds.rendered())


def _walk(node: Any, path: str = "") -> list[str]:
    """Places that break structural-schema rules: no type, anyOf/oneOf/$ref, additionalProperties beside properties."""
    problems = []
    if isinstance(node, dict):
        if "properties" in node or "items" in node or "additionalProperties" in node:
            if "type" not in node:
                problems.append(f"{path}: no type")
        for bad in ("$ref", "oneOf", "anyOf", "nullable"):
            if bad in node and not node.get("x-kubernetes-int-or-string"):
                problems.append(f"{path}: {bad}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties")
        for key in ("properties",):
            for child, sub in node.get(key, {}).items():
                problems += _walk(sub, f"{path}.{child}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                problems += _walk(node[key], f"{path}[]")
    return problems


def test_schemas_are_structural() -> None:
    for crd in (crds.function_crd(), crds.trigger_crd()):
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _walk(schema) == []


def test_function_crd_shape() -> None:
    version = crds.function_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Runtime",
        "Phase",
        "Replicas",
        "Ready",
        "URL",
        "Age",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["timeout"]["default"] == "60s"
    assert spec["properties"]["runtime"]["enum"] == ["go", "python", "rust"]
    assert (
        yaml.safe_load(crds.rendered()["functions.litefunctions.io.yaml"])["metadata"]["name"]
        == "functions.litefunctions.io"
    )
