"""The status of Functions and Triggers: its models (part of the CRD schema) and its derivation from the
Function's Deployment. Pure: objects in, dicts out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

PHASES = ("Pending", "Deploying", "Ready", "Idle", "Failed")


class Condition(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A Kubernetes-style condition: `status` is "True", "False" or "Unknown"."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


class FunctionStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Observed state, written by the operator. `selector` is the label selector of the replicas (the scale
    subresource reads it), `revision` the hash of the spec the replicas run."""

    phase: str = ""
    url: str = ""
    replicas: int = 0
    ready_replicas: int = 0
    selector: str = ""
    revision: str = ""
    image: str = ""
    observed_generation: int = 0
    conditions: Annotated[list[Condition], msgspec.Meta(max_length=16)] = msgspec.field(default_factory=list)


class TriggerStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`lastFire`, `nextFire`, `lastCallId`, `lastError`: a cron or NATS Trigger's state as the dispatcher records
    it in LF_TRIGGERS (lf_core.contract.triggerstate), copied here on a timer."""

    phase: str = ""
    route: str = ""
    last_fire: str = ""
    next_fire: str = ""
    last_call_id: str = ""
    last_error: str = ""
    observed_generation: int = 0
    conditions: Annotated[list[Condition], msgspec.Meta(max_length=16)] = msgspec.field(default_factory=list)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]], type_: str, ok: bool | None, reason: str, message: str, generation: int, at: str
) -> list[dict[str, Any]]:
    """`conditions` with `type_` set; its lastTransitionTime only moves when its status changes."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else at
    updated = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [updated]


def condition_status(conditions: list[dict[str, Any]], type_: str) -> str:
    return next((str(c.get("status")) for c in conditions if c.get("type") == type_), "Unknown")


def _deployment_condition(deployment: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in deployment.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def derive_function_status(
    function: Mapping[str, Any], deployment: Mapping[str, Any] | None, *, at: str | None = None
) -> dict[str, Any]:
    """The Function's status fields that follow its Deployment: phase, replicas, readyReplicas and the
    `Available` and `Ready` conditions. Other fields (url, selector, `Valid`, `Routed`) are kept as they are.

    - no Deployment yet → Pending; the Deployment has not seen its latest spec, or not all replicas are updated
      and ready → Deploying; desired 0 → Idle (ready, nothing running); all ready → Ready; the Deployment gave up
      (ProgressDeadlineExceeded) or the spec is invalid → Failed.
    """
    at = at or now()
    status = dict(function.get("status") or {})
    generation = int(function.get("metadata", {}).get("generation", 0))
    conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions", []) or []]
    valid = condition_status(conditions, "Valid") != "False"
    routed = condition_status(conditions, "Routed") == "True"
    if deployment is None:
        phase, replicas, ready, available, why = "Pending", 0, 0, None, "no Deployment yet"
    else:
        spec = deployment.get("spec", {})
        dstatus = deployment.get("status", {}) or {}
        desired = int(spec.get("replicas", 1))
        replicas = int(dstatus.get("replicas", 0))
        ready = int(dstatus.get("readyReplicas", 0))
        updated = int(dstatus.get("updatedReplicas", 0))
        current = int(dstatus.get("observedGeneration", 0)) >= int(deployment.get("metadata", {}).get("generation", 0))
        progressing = _deployment_condition(deployment, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            phase, available, why = "Failed", False, str(progressing.get("message", "progress deadline exceeded"))
        elif current and desired == 0:
            phase, available, why = "Idle", True, "scaled to zero"
        elif current and updated >= desired and ready >= desired:
            phase, available, why = "Ready", True, f"{ready}/{desired} replicas ready"
        else:
            phase, available, why = "Deploying", False, f"{ready}/{desired} replicas ready, {updated} updated"
    if not valid:
        phase = "Failed"
    reason = {"Pending": "Pending", "Deploying": "Deploying", "Ready": "Ready", "Idle": "ScaledToZero"}.get(
        phase, "Failed"
    )
    conditions = set_condition(conditions, "Available", available, reason, why, generation, at)
    is_ready = bool(available) and routed and valid
    ready_why = why if valid else "the latest spec is invalid; see the Valid condition"
    if valid and available and not routed:
        ready_why = "the route is not written to LF_ROUTES yet"
    conditions = set_condition(conditions, "Ready", is_ready, reason, ready_why, generation, at)
    return {"phase": phase, "replicas": replicas, "readyReplicas": ready, "conditions": conditions}


def function_status(
    function: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    *,
    invalid: str | None = None,
    reason: str = "InvalidSpec",
    routed: bool | None = None,
    url: str | None = None,
    selector: str | None = None,
    revision: str | None = None,
    image: str | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    """The whole status after a reconcile: `invalid` is why the spec was refused (None: valid) and `reason` the
    Valid condition's reason then (InvalidSpec, OwnershipConflict, ReplicaCapExceeded), `routed` whether the route
    entry is written (None: unchanged); the other fields are set when given."""
    at = at or now()
    generation = int(function.get("metadata", {}).get("generation", 0))
    status = dict(function.get("status") or {})
    conditions = [dict(c) for c in status.get("conditions", []) or []]
    if invalid is None:
        conditions = set_condition(conditions, "Valid", True, "Valid", "", generation, at)
    else:
        conditions = set_condition(conditions, "Valid", False, reason, invalid, generation, at)
    if routed is not None:
        why = "" if routed else "the route could not be written to LF_ROUTES (NATS unreachable?)"
        conditions = set_condition(
            conditions, "Routed", routed, "Routed" if routed else "RouteFailed", why, generation, at
        )
    status["conditions"] = conditions
    for key, value in (("url", url), ("selector", selector), ("revision", revision), ("image", image)):
        if value is not None:
            status[key] = value
    status.update(derive_function_status({**function, "status": status}, deployment, at=at))
    status["observedGeneration"] = generation
    return status


def trigger_status(
    trigger: Mapping[str, Any],
    *,
    phase: str,
    ready: bool,
    reason: str,
    message: str,
    route: str = "",
    valid: bool | None = None,
    at: str = "",
) -> dict[str, Any]:
    """The Trigger's status: its `Ready` condition, and `Valid`, False with the same reason and message when the
    Trigger is refused (InvalidSpec, Unsupported, or RouteConflict when another namespace owns its host or path
    prefix). `valid` defaults to whether the phase is other than Failed: a Trigger fails only when refused."""
    generation = int(trigger.get("metadata", {}).get("generation", 0))
    conditions = [dict(c) for c in (trigger.get("status") or {}).get("conditions", []) or []]
    at = at or now()
    if valid is None:
        valid = phase != "Failed"
    if valid:
        conditions = set_condition(conditions, "Valid", True, "Valid", "", generation, at)
    else:
        conditions = set_condition(conditions, "Valid", False, reason, message, generation, at)
    conditions = set_condition(conditions, "Ready", ready, reason, message, generation, at)
    return {"phase": phase, "route": route, "observedGeneration": generation, "conditions": conditions}


def status_changed(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether patching `wanted` over `current` changes anything (so an unchanged status is never re-written)."""
    current = current or {}
    return any(current.get(key) != value for key, value in wanted.items())
