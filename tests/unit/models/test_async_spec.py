"""`spec.async` resolved onto the Function, and the runtime's LF_ASYNC_* variables it becomes (docs/operations.md,
"Async calls")."""

from __future__ import annotations

from typing import Any

import pytest
from lf_core.asynccalls.policy import DEFAULT_BACKOFF_S, DEFAULT_MAX_ATTEMPTS
from lf_core.contract.specs import API_VERSION, AsyncRule, ManifestError, async_env, load_manifest


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


ENV = {
    "defaults": (
        {},
        {"LF_TIMEOUT": "60s", "LF_ASYNC_MAX_ATTEMPTS": "3", "LF_ASYNC_BACKOFF": "1s", "LF_ASYNC_RESULT_TTL": "86400s"},
    ),
    "tuned": (
        {"timeout": "2s", "concurrency": 4, "async": {"retries": 1, "backoff": "200ms", "maxAge": "5m"}},
        {
            "LF_TIMEOUT": "2s",
            "LF_ASYNC_MAX_ATTEMPTS": "2",
            "LF_ASYNC_BACKOFF": "0.2s",
            "LF_ASYNC_RESULT_TTL": "86400s",
            "LF_ASYNC_MAX_AGE": "300s",
        },
    ),
    "maxConcurrency below a replica's concurrency": (
        {"concurrency": 16, "async": {"maxConcurrency": 4}},
        {"LF_ASYNC_MAX_INFLIGHT": "4", "LF_ASYNC_CONCURRENCY": "4"},
    ),
    "maxConcurrency above it: a replica still runs at most its concurrency": (
        {"concurrency": 16, "async": {"maxConcurrency": 100}},
        {"LF_ASYNC_MAX_INFLIGHT": "100", "LF_ASYNC_CONCURRENCY": "16"},
    ),
}


@pytest.mark.parametrize(("spec", "expected"), ENV.values(), ids=ENV.keys())
def test_async_env(spec: dict[str, Any], expected: dict[str, str]) -> None:
    env = async_env(load_manifest(_function(**spec)))
    assert expected.items() <= env.items()
    if "async" not in spec or "maxConcurrency" not in spec["async"]:
        assert "LF_ASYNC_MAX_INFLIGHT" not in env and "LF_ASYNC_CONCURRENCY" not in env
    if "maxAge" not in spec.get("async", {}):
        assert "LF_ASYNC_MAX_AGE" not in env


def test_the_runtime_reads_back_what_the_spec_says() -> None:
    """The variables are the runtime's own: its Settings parse them into the same policy."""
    from lf_runtime.settings import Settings

    fn = load_manifest(
        _function(
            timeout="3s",
            concurrency=8,
            **{"async": {"maxAttempts": 4, "backoff": "1.5s", "maxAge": "90s", "resultTTL": "1h", "maxConcurrency": 5}},
        )
    )
    settings = Settings.from_env({"LF_FUNCTION": "f", "LF_CONCURRENCY": "8", **async_env(fn)})
    assert settings.timeout_s == 3.0
    assert settings.async_max_attempts == 4
    assert settings.async_backoff_s == 1.5
    assert settings.async_max_age_s == 90.0
    assert settings.async_result_ttl_s == 3600.0
    assert (settings.async_max_inflight, settings.async_concurrency) == (5, 5)
