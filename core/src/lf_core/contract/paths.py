"""Paths that belong to the platform, and paths no call may carry: shared by the manifest checks (specs.py), the
ingestor's route table and the routing table itself (lf_native's routing.rs holds the same list)."""

from __future__ import annotations

RESERVED_SEGMENTS = ("function", "async-function", "invocations", "api", "healthz", "readyz", "metrics")
"""First path segments that belong to the platform (its endpoints, and `/api/` kept for its own API): no Trigger
may claim them, and the ingestor's table never routes them to a Trigger (lf_native's routing.rs holds the same
list, RESERVED_SEGMENTS, and refuses such routes too)."""


def reserved_segment(path: str) -> str | None:
    """The reserved first segment of `path` (a path or a route pattern), if it has one."""
    first = path[1:].partition("/")[0] if path.startswith("/") else None
    return first if first in RESERVED_SEGMENTS else None


def reserved_path_error(path: str, field: str = "spec.http.path") -> str | None:
    """Why `path` cannot be a Trigger's path (it claims one of the platform's prefixes), or None."""
    segment = reserved_segment(path)
    if segment is None:
        return None
    reserved = ", ".join("/" + s for s in RESERVED_SEGMENTS)
    return f"{field}: {path!r} is under /{segment}, which belongs to the platform (reserved: {reserved})"


def has_dot_segment(path: str) -> bool:
    """Whether `path` has a `.` or `..` segment (routing.rs's has_dot_segment: such a path matches nothing)."""
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))
