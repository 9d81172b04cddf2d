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
