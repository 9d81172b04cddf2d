"""The CRD-only fields of a Function (docs/architecture.md, "Cluster mode") and the Trigger model: what is accepted,
what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from lf_core.contract.specs import API_VERSION, ManifestError, load_manifest, load_trigger


def _function(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Function", "metadata": {"name": "f"}, "spec": spec}


def _trigger(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Trigger", "metadata": {"name": "t"}, "spec": spec}


VALID = {
    "inline files": {"source": {"files": {"handler.py": "def handle(req): ..."}}},
    "archive": {"source": {"archive": {"url": "https://x/f.tgz", "sha256": "a" * 64}}},
    "git": {"source": {"git": {"url": "https://git/x.git", "ref": "v1", "path": "fns/f"}}},
    "resources": {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1}}},
    "auth": {"auth": {"mode": "public"}},
    "async": {"async": {"retries": 5, "backoff": "2s", "maxAge": "1h", "resultTTL": "10m"}},
    "image": {"image": "registry.example/fn:1"},
}


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_cluster_fields_are_accepted(spec: dict[str, Any]) -> None:
    assert load_manifest(_function(**spec)).name == "f"


INVALID = {
    "two sources": ({"source": {"files": {}, "git": {"url": "u"}}}, "exactly one of files, archive, git"),
    "no source kind": ({"source": {}}, "exactly one of files, archive, git"),
    "bad sha256": ({"source": {"archive": {"url": "https://x", "sha256": "zz"}}}, "sha256"),
    "bad quantity": ({"resources": {"requests": {"memory": "lots"}}}, "spec.resources.requests.memory"),
    "bad backoff": ({"async": {"backoff": "soon"}}, "spec.async.backoff"),
    "unknown auth mode": ({"auth": {"mode": "oauth"}}, "mode"),
    "traffic to unknown version": (
        {"versions": [{"name": "v1"}], "traffic": [{"version": "v2", "percent": 100}]},
        "unknown versions",
    ),
    "traffic not 100": (
        {"versions": [{"name": "v1"}], "traffic": [{"version": "v1", "percent": 50}]},
        "add up to 100",
    ),
    "duplicate versions": ({"versions": [{"name": "v1"}, {"name": "v1"}]}, "unique"),
}


@pytest.mark.parametrize(("spec", "message"), INVALID.values(), ids=INVALID.keys())
def test_cluster_fields_are_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_manifest(_function(**spec))


def test_http_trigger() -> None:
    trigger = load_trigger(_trigger(function="hello", http={"path": "/users/{id}", "methods": ["GET"]}))
    assert (trigger.kind, trigger.function, trigger.http and trigger.http.path) == ("http", "hello", "/users/{id}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"function": "hello"}, "exactly one of http, cron, nats"),
        ({"function": "hello", "http": {"path": "/a"}, "cron": {"schedule": "* * * * *"}}, "exactly one"),
        ({"function": "Hello", "http": {"path": "/a"}}, "function"),
        ({"function": "hello", "http": {"path": "a"}}, "path"),
        ({"function": "hello", "http": {"path": "/a", "methods": ["FETCH"]}}, "methods"),
    ],
    ids=["none", "two", "bad function name", "relative path", "unknown method"],
)
def test_invalid_triggers_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_trigger(_trigger(**spec))
