"""Status derived from the Function's Deployment (phase, replicas, conditions), as a table."""

from __future__ import annotations

from typing import Any

import pytest
from lf_controlplane.operator.status import (
    condition_status,
    derive_function_status,
    function_status,
    set_condition,
    status_changed,
)

AT = "2026-01-01T00:00:00Z"


def function(conditions: list[dict[str, Any]] | None = None, generation: int = 2) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": {"conditions": conditions or []}}


def routed(valid: bool = True) -> list[dict[str, Any]]:
    conditions = set_condition([], "Routed", True, "Routed", "", 2, AT)
    return set_condition(conditions, "Valid", valid, "x", "", 2, AT)


def deployment(desired: int = 2, ready: int = 2, updated: int = 2, observed: int = 5, **extra: Any) -> dict[str, Any]:
    status = {"replicas": desired, "readyReplicas": ready, "updatedReplicas": updated, "observedGeneration": observed}
    return {"metadata": {"generation": 5}, "spec": {"replicas": desired}, "status": status | extra}


CASES = {
    "no deployment": (None, routed(), "Pending", "False"),
    "deployment not observed yet": (deployment(observed=4), routed(), "Deploying", "False"),
    "replicas coming up": (deployment(ready=1), routed(), "Deploying", "False"),
    "old replicas still around": (deployment(updated=1), routed(), "Deploying", "False"),
    "all ready": (deployment(), routed(), "Ready", "True"),
    "all ready, route missing": (deployment(), [], "Ready", "False"),
    "scaled to zero": (deployment(desired=0, ready=0, updated=0), routed(), "Idle", "True"),
    "progress deadline": (
        deployment(
            ready=0, conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        ),
        routed(),
        "Failed",
        "False",
    ),
    "invalid spec, old version serving": (deployment(), routed(valid=False), "Failed", "False"),
}


@pytest.mark.parametrize(("dep", "conditions", "phase", "ready"), CASES.values(), ids=CASES.keys())
def test_phase_and_ready(dep: dict[str, Any] | None, conditions: list[dict[str, Any]], phase: str, ready: str) -> None:
    derived = derive_function_status(function(conditions), dep, at=AT)
    assert derived["phase"] == phase
    assert condition_status(derived["conditions"], "Ready") == ready


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = set_condition([], "Ready", False, "a", "", 1, "t1")
    same = set_condition(first, "Ready", False, "b", "other", 2, "t2")
    changed = set_condition(same, "Ready", True, "c", "", 3, "t3")
    assert same[0]["lastTransitionTime"] == "t1"
    assert changed[0]["lastTransitionTime"] == "t3"


def test_full_status_after_a_reconcile() -> None:
    status = function_status(
        function(), deployment(), routed=True, url="http://u", selector="s=1", revision="r", image="i", at=AT
    )
    assert status["observedGeneration"] == 2
    assert (status["phase"], status["url"], status["selector"], status["readyReplicas"]) == (
        "Ready",
        "http://u",
        "s=1",
        2,
    )
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Valid": "True",
        "Routed": "True",
        "Available": "True",
        "Ready": "True",
    }


def test_invalid_spec_status() -> None:
    status = function_status(function(), None, invalid="spec.timeout: bad", at=AT)
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert (status["phase"], valid["status"], valid["reason"], valid["message"]) == (
        "Failed",
        "False",
        "InvalidSpec",
        "spec.timeout: bad",
    )


def test_status_changed() -> None:
    assert not status_changed({"phase": "Ready", "x": 1}, {"phase": "Ready"})
    assert status_changed({"phase": "Ready"}, {"phase": "Deploying"})
