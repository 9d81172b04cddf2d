"""What a manifest may not ask for (issue 14): fields the schema accepts but nothing serves yet (item 12), bodies
over the broker's payload (item 5), timeouts past the u32 millisecond budget (item 10). Each refusal names the
field, for `lf dev`, `lf deploy` and the operator alike (they all resolve through `lf_core.contract.specs`)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from lf_core.contract.specs import (
    API_VERSION,
    BROKER_MAX_PAYLOAD,
    ENVELOPE_MARGIN,
    MAX_BODY_BYTES,
    MAX_TIMEOUT_S,
    FunctionSpec,
    ManifestError,
    TriggerSpec,
    load_manifest,
    unsupported_fields,
    unsupported_trigger_fields,
)


def _function(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Function", "metadata": {"name": "f"}, "spec": spec}


UNSUPPORTED = {
    "versions": ({"versions": [{"name": "v1", "image": "img:1"}]}, ["spec.versions"]),
    "traffic": (
        {"versions": [{"name": "v1", "image": "img:1"}], "traffic": [{"version": "v1", "percent": 100}]},
        ["spec.versions", "spec.traffic"],
    ),
    "scaling.max": ({"scaling": {"max": 5}}, ["spec.scaling.max"]),
    "scaling.targetConcurrency": ({"scaling": {"targetConcurrency": 8}}, ["spec.scaling.targetConcurrency"]),
    "scaling.scaleToZeroAfter": ({"scaling": {"scaleToZeroAfter": "5m"}}, ["spec.scaling.scaleToZeroAfter"]),
    "scaling.mode keda": ({"scaling": {"mode": "keda"}}, ["spec.scaling.mode"]),
    "auth apiKey": ({"auth": {"mode": "apiKey"}}, ["spec.auth.mode"]),
    "auth jwt with roles": ({"auth": {"mode": "jwt", "roles": ["admin"]}}, ["spec.auth.mode", "spec.auth.roles"]),
    "roles under public": ({"auth": {"roles": ["admin"]}}, ["spec.auth.roles"]),
}


@pytest.mark.parametrize(("spec", "fields"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_fields_are_named_and_refused(spec: dict[str, Any], fields: list[str]) -> None:
    assert unsupported_fields(msgspec.convert(spec, FunctionSpec)) == fields  # the schema accepts them
    with pytest.raises(ManifestError) as info:
        load_manifest(_function(**spec), source="f/function.yaml")
    message = str(info.value)
    assert message.startswith(f"f/function.yaml: {', '.join(fields)}: not served yet")


SERVED = {
    "defaults": {},
    "scaling.min": {"scaling": {"min": 2}},
    "scaling.mode builtin": {"scaling": {"mode": "builtin"}},
    "scaling.mode none": {"scaling": {"mode": "none"}},
    "auth public": {"auth": {"mode": "public"}},
    "empty versions": {"versions": []},
}


@pytest.mark.parametrize("spec", SERVED.values(), ids=SERVED.keys())
def test_what_is_served_is_not_refused(spec: dict[str, Any]) -> None:
    assert unsupported_fields(msgspec.convert(spec, FunctionSpec)) == []
    assert load_manifest(_function(**spec)).name == "f"


@pytest.mark.parametrize(
    ("kind", "spec", "fields"),
    [
        ("http", {"path": "/a"}, []),
        ("cron", {"schedule": "0 3 * * *"}, []),
        ("nats", {"subject": "ev.default.orders"}, []),
    ],
)
def test_every_trigger_kind_is_served(kind: str, spec: dict[str, Any], fields: list[str]) -> None:
    assert unsupported_trigger_fields(msgspec.convert({"function": "f", kind: spec}, TriggerSpec)) == fields


def test_the_body_cap_is_the_broker_payload_less_the_envelope_margin() -> None:
    assert MAX_BODY_BYTES == BROKER_MAX_PAYLOAD - ENVELOPE_MARGIN == 7 * 1024 * 1024
    # the cap and the defaults fit; lf dev's broker is configured from the same constant
    from lf_controlplane.natsserver import MAX_PAYLOAD

    assert MAX_PAYLOAD == BROKER_MAX_PAYLOAD
    fn = load_manifest(_function(limits={"requestBody": "7Mi", "responseBody": MAX_BODY_BYTES}))
    assert fn.max_request_bytes == fn.max_response_bytes == MAX_BODY_BYTES


@pytest.mark.parametrize("field", ["requestBody", "responseBody"])
@pytest.mark.parametrize("value", ["1Gi", "8Mi", MAX_BODY_BYTES + 1])
def test_a_body_limit_over_the_cap_is_refused_naming_field_and_cap(field: str, value: str | int) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(_function(limits={field: value}), source="f/function.yaml")
    message = str(info.value)
    assert f"spec.limits.{field}" in message and f"cap of {MAX_BODY_BYTES} bytes" in message
    assert "max_payload" in message


def test_the_timeout_cap() -> None:
    assert load_manifest(_function(timeout="1h")).timeout_s == MAX_TIMEOUT_S
    # 50 days would overflow the envelope's u32 millisecond budget; an hour and a second is already refused
    for value in ("3601s", "1200h", 50 * 24 * 3600):
        with pytest.raises(ManifestError, match=r"spec.timeout: .* over the platform's maximum of 3600s"):
            load_manifest(_function(timeout=value))
