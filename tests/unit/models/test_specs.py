"""function.yaml: defaults, resolution of durations and sizes, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from lf_core.contract.routes import decode_route, encode_route, route_of
from lf_core.contract.specs import ManifestError, load_manifest, parse_duration, parse_quantity


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "litefunctions.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": spec,
    }


def test_defaults_follow_the_design() -> None:
    fn = load_manifest(manifest())
    assert (fn.name, fn.namespace, fn.runtime, fn.handler) == ("hello", "default", "python", "handler.handle")
    assert fn.timeout_s == 60.0
    assert fn.max_request_bytes == fn.max_response_bytes == 6 * 1024 * 1024
    assert fn.replicas == 1


def test_values_are_resolved() -> None:
    fn = load_manifest(
        manifest(
            timeout="1.5m",
            concurrency=4,
            replicas=3,
            env={"A": "1"},
            secrets=["db-pass"],
            limits={"requestBody": "64Ki", "responseBody": 1000},
        )
    )
    assert fn.timeout_s == 90.0
    assert (fn.concurrency, fn.replicas) == (4, 3)
    assert fn.env == {"A": "1"} and fn.secrets == ("db-pass",)
    assert (fn.max_request_bytes, fn.max_response_bytes) == (65536, 1000)


def test_scaling_min_gives_the_replica_count_when_replicas_is_unset() -> None:
    assert load_manifest(manifest(scaling={"min": 2})).replicas == 2
    assert load_manifest(manifest(scaling={"min": 0})).replicas == 1


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"timeout": "soon"}, "spec.timeout"),
        ({"timeout": "0s"}, "spec.timeout"),
        ({"limits": {"requestBody": "6 parsecs"}}, "spec.limits.requestBody"),
        ({"concurrency": 0}, "concurrency"),
        ({"runtime": "cobol"}, "runtime"),
        ({"unknownField": 1}, "unknownField"),
        ({"handler": "handle"}, "spec.handler"),
        ({"secrets": ["Bad_Name"]}, "spec.secrets"),
    ],
)
def test_bad_values_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError, match=field) as info:
        load_manifest(manifest(**spec), source="fn/function.yaml")
    assert str(info.value).startswith("fn/function.yaml:")


def test_bad_metadata_and_api_version() -> None:
    with pytest.raises(ManifestError, match="metadata.name"):
        load_manifest({**manifest(), "metadata": {"name": "Bad.Name"}})
    with pytest.raises(ManifestError, match="apiVersion"):
        load_manifest({**manifest(), "apiVersion": "v1"})
    with pytest.raises(ManifestError, match="kind"):
        load_manifest({**manifest(), "kind": "Deployment"})


@pytest.mark.parametrize(("text", "seconds"), [("250ms", 0.25), ("30s", 30), ("2m", 120), ("1h", 3600), (5, 5)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("6Mi", 6 << 20), ("64Ki", 65536), ("1k", 1000), ("1G", 10**9), (7, 7)])
def test_quantities(text: str | int, size: int) -> None:
    assert parse_quantity(text) == size


def test_route_entries_round_trip() -> None:
    route = route_of(load_manifest(manifest(timeout="2s")))
    assert route.timeout_ms == 2000
    assert decode_route(encode_route(route)) == route
