"""The peers' wiring, without building or starting anything."""

from __future__ import annotations

import json
from pathlib import Path

from bench import peers
from bench.peers.build import BUILDS

# What queue-proxy v0.42.2 refuses to start without (envconfig `required:"true"` in pkg/queue/sharedmain).
QUEUE_PROXY_REQUIRED = {
    "CONTAINER_CONCURRENCY", "QUEUE_SERVING_PORT", "QUEUE_SERVING_TLS_PORT", "USER_PORT", "REVISION_TIMEOUT_SECONDS",
    "SERVING_LOGGING_CONFIG", "SERVING_LOGGING_LEVEL", "SERVING_NAMESPACE", "SERVING_CONFIGURATION",
    "SERVING_REVISION", "SERVING_POD", "SERVING_POD_IP",
}  # fmt: skip


def test_the_issue_s_chains_are_all_there_once() -> None:
    names = [s.name for s in peers.SCENARIOS]
    assert len(names) == len(set(names))
    for needle in ("of-watchdog", "knative queue-proxy", "openfaas gateway", "uvicorn hello"):
        assert any(name.startswith(needle) for name in names), needle
    assert all(s.connections == 50 for s in peers.SCENARIOS)


def test_queue_proxy_gets_every_required_variable_and_points_at_the_upstream() -> None:
    env = peers.queue_proxy_env(port=18012, user_port=18080)
    assert QUEUE_PROXY_REQUIRED <= env.keys()
    assert env["QUEUE_SERVING_PORT"] == "18012" and env["USER_PORT"] == "18080"
    assert json.loads(env["SERVING_READINESS_PROBE"])["tcpSocket"]["port"] == 18080
    assert json.loads(env["SERVING_LOGGING_CONFIG"])["encoding"] == "json"
    assert env["TRACING_CONFIG_BACKEND"] == "none" and env["CONTAINER_CONCURRENCY"] == "0"


def test_builds_are_versioned_folders_outside_the_repo() -> None:
    repo = Path(peers.__file__).resolve().parents[2]
    for build in BUILDS.values():
        assert (build.module_dir / "go.mod").is_file() and (build.module_dir / "go.sum").is_file()
        assert build.folder().name.startswith(f"{build.name}-v") or build.folder().name.startswith(f"{build.name}-src-")
        assert repo not in build.folder().parents


def test_the_model_s_cache_key_follows_its_sources() -> None:
    model = BUILDS["openfaas-model"]
    assert model.version() == model.version()
    assert BUILDS["queue-proxy"].version() == "v0.42.2"
