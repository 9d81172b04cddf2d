"""NATS subjects and bucket names (docs/protocol.md, "Subjects"), built only from validated names."""

from __future__ import annotations

from lf_core.contract.names import check_name

ROUTES_BUCKET = "LF_ROUTES"
INVOKE_PREFIX = "lf.invoke"


def invoke_subject(namespace: str, function: str) -> str:
    """`lf.invoke.{namespace}.{function}`: the subject a function's replicas serve in a queue group."""
    return f"{INVOKE_PREFIX}.{check_name(namespace, 'namespace')}.{check_name(function)}"


def queue_group(namespace: str, function: str) -> str:
    """`{namespace}.{function}`: replicas of one function share the work."""
    return f"{check_name(namespace, 'namespace')}.{check_name(function)}"


def scale_subject(namespace: str, function: str) -> str:
    return f"lf.scale.{check_name(namespace, 'namespace')}.{check_name(function)}"


def function_route_key(namespace: str, function: str) -> str:
    """Key of a function's entry in the LF_ROUTES bucket."""
    return f"fn.{check_name(namespace, 'namespace')}.{check_name(function)}"


def trigger_route_key(namespace: str, trigger: str) -> str:
    """Key of an HTTP Trigger's entry in the LF_ROUTES bucket."""
    return f"tr.{check_name(namespace, 'namespace')}.{check_name(trigger, 'trigger name')}"


EVENT_TRIGGER_PREFIX = "et."
"""Keys of cron and NATS Trigger entries in LF_ROUTES: read by the dispatcher, skipped by the ingestors."""
TRIGGERS_BUCKET = "LF_TRIGGERS"
"""The state of cron and NATS Triggers (last fire, next fire, last error, last call id), written by the
dispatcher, read by `lf triggers list` and the operator (`lf_core.contract.triggerstate`)."""


def event_trigger_route_key(namespace: str, trigger: str) -> str:
    """Key of a cron or NATS Trigger's entry in the LF_ROUTES bucket (`et.{namespace}.{trigger}`)."""
    return f"{EVENT_TRIGGER_PREFIX}{check_name(namespace, 'namespace')}.{check_name(trigger, 'trigger name')}"


def trigger_state_key(namespace: str, trigger: str) -> str:
    """Key of a Trigger's state in LF_TRIGGERS."""
    return f"{check_name(namespace, 'namespace')}.{check_name(trigger, 'trigger name')}"


def trigger_queue_group(namespace: str, trigger: str) -> str:
    """The queue group the dispatcher replicas share a core-NATS Trigger's subscription in."""
    return f"lf-trigger.{check_name(namespace, 'namespace')}.{check_name(trigger, 'trigger name')}"


def trigger_consumer(namespace: str, trigger: str) -> str:
    """The durable pull consumer of a JetStream Trigger on its namespace's stream (no `.` allowed in the name)."""
    return f"lftr_{check_name(namespace, 'namespace')}_{check_name(trigger, 'trigger name')}"
