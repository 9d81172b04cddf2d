"""The golden vectors in `native/vectors/`, both directions: decode each .bin to its JSON fields, encode the
fields back to the .bin, byte for byte."""

import base64
import json
from pathlib import Path
from typing import Any

import lf_native
import pytest

VECTORS = Path(__file__).parents[3] / "native" / "vectors"
MANIFEST = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))["vectors"]


def pairs(items: list[list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in items]


def by_kind(kind: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in MANIFEST if v["kind"] == kind]


def test_manifest_covers_both_kinds() -> None:
    assert len(by_kind("request")) >= 5
    assert len(by_kind("response")) >= 5


@pytest.mark.parametrize("vector", by_kind("request"))
def test_request_vector(vector: dict[str, Any]) -> None:
    f = vector["fields"]
    golden = (VECTORS / vector["file"]).read_bytes()
    body = base64.b64decode(f["body_b64"])

    encoded = lf_native.encode_request(
        f["call_id"],
        f["method"],
        f["path"],
        f["query"],
        pairs(f["headers"]),
        body,
        f["budget_ms"],
        params=pairs(f["params"]),
        traceparent=f["traceparent"],
        tracestate=f["tracestate"],
    )
    assert encoded == golden

    req = lf_native.decode_request(golden)
    assert (req.call_id, req.method, req.path, req.query) == (f["call_id"], f["method"], f["path"], f["query"])
    assert (req.headers, req.params) == (pairs(f["headers"]), pairs(f["params"]))
    assert (req.body, req.budget_ms) == (body, f["budget_ms"])
    assert (req.traceparent, req.tracestate) == (f["traceparent"], f["tracestate"])


@pytest.mark.parametrize("vector", by_kind("response"))
def test_response_vector(vector: dict[str, Any]) -> None:
    f = vector["fields"]
    golden = (VECTORS / vector["file"]).read_bytes()
    body = base64.b64decode(f["body_b64"])

    encoded = lf_native.encode_response(
        f["status"],
        pairs(f["headers"]),
        body,
        call_id=f["call_id"],
        error_kind=f["error_kind"],
        error=f["error"],
        duration_ns=f["duration_ns"],
        cold_start=f["cold_start"],
    )
    assert encoded == golden

    resp = lf_native.decode_response(golden)
    assert (resp.status, resp.error_kind, resp.cold_start) == (f["status"], f["error_kind"], f["cold_start"])
    assert (resp.duration_ns, resp.call_id, resp.error) == (f["duration_ns"], f["call_id"], f["error"])
    assert (resp.headers, resp.body) == (pairs(f["headers"]), body)
