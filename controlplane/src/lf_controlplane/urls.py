"""Where a function is served by an ingestor: the OpenFaaS-compatible `/function/...` URL (docs/architecture.md,
"HTTP surface")."""

from __future__ import annotations

from lf_core.contract.names import DEFAULT_NAMESPACE


def function_url(base_url: str, namespace: str, name: str) -> str:
    suffix = "" if namespace == DEFAULT_NAMESPACE else f".{namespace}"
    return f"{base_url.rstrip('/')}/function/{name}{suffix}"
