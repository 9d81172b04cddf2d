"""Tracing off costs nothing: no OpenTelemetry import, the trace context passed on as it came; and when it is on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from lf_core.tracing import configured
from lf_dataplane.http import app as app_module
from lf_dataplane.observability import callspans
from lf_native import decode_request, encode_response

from tests.unit.dataplane.test_ingestor_app import Bus, Scope, app_with, call


def test_importing_the_ingestor_and_the_runtime_with_tracing_off_imports_no_opentelemetry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys, lf_dataplane.http.app, lf_dataplane.http.server, lf_runtime.serving, lf_runtime.__main__\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(env: dict[str, str], on: bool) -> None:
    assert configured(env) is on


@pytest.mark.skipif(app_module._TRACING, reason="OTEL_* set in the test environment")
@pytest.mark.parametrize("trusted", [True, False])
async def test_with_tracing_off_the_incoming_trace_context_is_passed_on_its_flag_cleared_unless_trusted(
    trusted: bool,
) -> None:
    """Untrusted, the caller's ids go on (the runtime's spans join its trace) but its sampled flag does not: a
    tracing runtime's parent-based sampler would otherwise record every call a client marks sampled."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    bus = Bus(encode_response(200, [], b""), encode_response(200, [], b""))
    app = app_with(bus)
    callspans.configure(trust_incoming=trusted)
    try:
        headers = [("traceparent", traceparent), ("tracestate", "v=1")]
        await call(app, Scope("GET", "/function/echo", headers=headers))
        await call(app, Scope("GET", "/function/echo", headers=[("tracestate", "v=1")]))  # tracestate alone: nothing
    finally:
        callspans.configure(trust_incoming=False)
    first, second = (decode_request(r) for r in bus.requests)
    passed = traceparent if trusted else traceparent[:-2] + "00"
    assert (first.traceparent, first.tracestate) == (passed, "v=1")
    assert (second.traceparent, second.tracestate) == ("", "")
