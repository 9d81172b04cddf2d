"""What a replica is started with: the runtime contract wins over a function's env; only declared secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from lf_controlplane.dev.functions import MissingSecretError, materialize_secrets, runtime_env
from lf_controlplane.dev.supervising import Backoff
from lf_core.contract.specs import load_manifest


def function(**spec: object):  # type: ignore[no-untyped-def]
    return load_manifest(
        {
            "apiVersion": "litefunctions.io/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "f", "namespace": "team"},
            "spec": spec,
        }
    )


def test_function_env_cannot_override_the_runtime_contract(tmp_path: Path) -> None:
    fn = function(env={"GREETING": "hi", "LF_FUNCTION": "evil", "LF_NATS_URL": "nats://elsewhere"}, concurrency=3)
    env = runtime_env(fn, code_dir=tmp_path, nats_url="nats://127.0.0.1:1", pythonpath="p", secrets_dir=tmp_path)
    assert env["GREETING"] == "hi"
    assert env["LF_FUNCTION"] == "f" and env["LF_NAMESPACE"] == "team"
    assert env["LF_NATS_URL"] == "nats://127.0.0.1:1"
    assert env["LF_CONCURRENCY"] == "3"
    assert env["PYTHONPATH"] == "p"


def test_spec_async_stays_out_of_the_replica(tmp_path: Path) -> None:
    """spec.async reaches the dispatcher in the route entry; a replica speaks the sync protocol only."""
    fn = function(timeout="5s", concurrency=4, **{"async": {"maxAttempts": 2, "backoff": "100ms", "maxConcurrency": 2}})
    env = runtime_env(fn, code_dir=tmp_path, nats_url="nats://127.0.0.1:1", pythonpath="p", secrets_dir=tmp_path)
    assert not [k for k in env if k.startswith(("LF_ASYNC_", "LF_TIMEOUT", "LF_STREAM_REPLICAS"))]


def test_only_declared_secrets_are_copied_privately(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "db-pass").write_text("s3cret")
    (source / "other").write_text("not yours")
    target = tmp_path / "out"
    materialize_secrets(function(secrets=["db-pass"]), source, target)
    assert sorted(p.name for p in target.iterdir()) == ["db-pass"]
    assert (target / "db-pass").read_text() == "s3cret"
    assert (target / "db-pass").stat().st_mode & 0o777 == 0o600


def test_a_missing_secret_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingSecretError, match="api-token"):
        materialize_secrets(function(secrets=["api-token"]), tmp_path, tmp_path / "out")


def test_restart_backoff_doubles_and_is_capped() -> None:
    backoff = Backoff(first=0.2, cap=10.0)
    assert [backoff.delay(n) for n in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]


def test_metrics_url_recorded_from_a_replicas_port() -> None:
    from lf_controlplane.dev.state import metrics_url

    assert metrics_url({"LF_METRICS_PORT": "9123"}) == "http://127.0.0.1:9123/metrics"
    assert metrics_url({"LF_METRICS_PORT": "0"}) is None
    assert metrics_url({}) is None, "a replica started without LF_METRICS_PORT serves no /metrics"
