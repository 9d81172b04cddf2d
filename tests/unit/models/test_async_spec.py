"""`spec.async` resolved onto the Function, and carried to the dispatcher by the function's route entry
(docs/operations.md, "Async calls")."""

from __future__ import annotations

from typing import Any

import pytest
from lf_core.asynccalls.policy import DEFAULT_BACKOFF_S, DEFAULT_MAX_ATTEMPTS
from lf_core.contract.routes import decode_route, encode_route, route_of
from lf_core.contract.specs import API_VERSION, AsyncRule, ManifestError, load_manifest


def _function(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Function", "metadata": {"name": "f"}, "spec": spec}


RESOLVED = {
    "no async section: the defaults": ({}, AsyncRule()),
    "empty section: the same defaults": ({"async": {}}, AsyncRule()),
    "retries count after the first attempt": ({"async": {"retries": 0}}, AsyncRule(max_attempts=1)),
    "maxAttempts counts them all": ({"async": {"maxAttempts": 5}}, AsyncRule(max_attempts=5)),
    "both, agreeing": ({"async": {"retries": 4, "maxAttempts": 5}}, AsyncRule(max_attempts=5)),
    "everything": (
        {"async": {"maxAttempts": 2, "backoff": "250ms", "maxAge": "1h", "resultTTL": "10m", "maxConcurrency": 8}},
        AsyncRule(max_attempts=2, backoff_s=0.25, max_age_s=3600.0, result_ttl_s=600.0, max_concurrency=8),
    ),
    "plain seconds": ({"async": {"backoff": 2, "resultTTL": 60}}, AsyncRule(backoff_s=2.0, result_ttl_s=60.0)),
}


@pytest.mark.parametrize(("spec", "rule"), RESOLVED.values(), ids=RESOLVED.keys())
def test_async_is_resolved(spec: dict[str, Any], rule: AsyncRule) -> None:
    assert load_manifest(_function(**spec)).async_ == rule


def test_the_defaults_are_the_runtime_policy_defaults() -> None:
    rule = AsyncRule()
    assert (rule.max_attempts, rule.backoff_s) == (DEFAULT_MAX_ATTEMPTS, DEFAULT_BACKOFF_S)


REFUSED = {
    "retries and maxAttempts disagree": ({"retries": 2, "maxAttempts": 5}, "disagree"),
    "no attempt at all": ({"maxAttempts": 0}, "maxAttempts"),
    "zero concurrency": ({"maxConcurrency": 0}, "maxConcurrency"),
    "bad maxAge": ({"maxAge": "forever"}, "spec.async.maxAge"),
    "bad resultTTL": ({"resultTTL": "-1s"}, "spec.async.resultTTL"),
    "snake case is not the schema": ({"max_attempts": 2}, "max_attempts"),
}


@pytest.mark.parametrize(("options", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_async_is_refused_naming_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_manifest(_function(**{"async": options}))


def test_the_route_entry_carries_it_to_the_dispatcher() -> None:
    """The dispatcher acts on spec.async as the route entry carries it (no runtime reads it any more)."""
    fn = load_manifest(
        _function(
            timeout="3s",
            concurrency=8,
            **{"async": {"maxAttempts": 4, "backoff": "1.5s", "maxAge": "90s", "resultTTL": "1h", "maxConcurrency": 5}},
        )
    )
    route = decode_route(encode_route(route_of(fn)))
    assert (
        route.async_rule
        == fn.async_
        == AsyncRule(max_attempts=4, backoff_s=1.5, max_age_s=90.0, result_ttl_s=3600.0, max_concurrency=5)
    )
    assert (route.timeout_ms, route.concurrency) == (3000, 8)
