"""LF_STREAM_REPLICAS: parsed the same way by every process that creates streams (a runtime creates none), and
carried into every stream and bucket definition `ensure_all` sends (the Helm chart sets 3 for its 3-node JetStream
cluster)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from lf_controlplane.operator.config import OperatorConfig
from lf_core.asynccalls import streams
from lf_core.bus.jetstream import ERR_STREAM_NOT_FOUND, Headers
from lf_dataplane.settings import Settings as IngestorSettings
from lf_dataplane.settings import SettingsError as IngestorSettingsError


@pytest.mark.parametrize(
    ("env", "expected"), [({}, 1), ({"LF_STREAM_REPLICAS": ""}, 1), ({"LF_STREAM_REPLICAS": "3"}, 3)]
)
def test_every_process_reads_the_same_setting(env: Mapping[str, str], expected: int) -> None:
    assert streams.stream_replicas(env) == expected
    assert IngestorSettings.from_env(env).stream_replicas == expected
    assert OperatorConfig.from_env(env).stream_replicas == expected


@pytest.mark.parametrize("raw", ["0", "6", "three", "-1", "2.5"])
def test_a_bad_count_is_refused_naming_the_setting(raw: str) -> None:
    env = {"LF_STREAM_REPLICAS": raw}
    with pytest.raises(ValueError, match="LF_STREAM_REPLICAS"):
        streams.stream_replicas(env)
    with pytest.raises(IngestorSettingsError, match="LF_STREAM_REPLICAS"):
        IngestorSettings.from_env(env)
    with pytest.raises(ValueError, match="LF_STREAM_REPLICAS"):
        OperatorConfig.from_env(env)


async def test_ensure_all_creates_every_stream_and_bucket_with_the_replicas() -> None:
    created: dict[str, int] = {}

    async def broker(subject: str, payload: bytes, headers: Headers, timeout: float) -> bytes:
        if subject.startswith("$JS.API.STREAM.INFO."):
            return json.dumps({"error": {"code": 404, "err_code": ERR_STREAM_NOT_FOUND, "description": "no"}}).encode()
        assert subject.startswith("$JS.API.STREAM.CREATE."), subject
        config = json.loads(payload)
        created[config["name"]] = config["num_replicas"]
        return json.dumps({"config": config}).encode()

    await streams.ensure_all(broker, replicas=3)
    assert created == {"LF_ASYNC": 3, "LF_DEAD": 3, "KV_LF_RESULTS": 3, "KV_LF_IDEMPOTENCY": 3}
