"""A caller that sampled its trace out gets no span anywhere (ingestor, runtime, the handler's own), and its call
is served as usual; a sampled caller in the same run gets all three, when callers are trusted
(LF_TRACE_TRUST_INCOMING=true). By default they are not (issue 14, item 10): a caller's sampled flag cannot make its
calls recorded beyond the sampler's own ratio. Real nats-server, ingestor and runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.otlpcollector import Collector, otel_env
from tests.harness.routes import Routes
from tests.integration.tracing.tracing_harness import SYNC_HANDLER, TRACE_ID, traced_function

pytestmark = pytest.mark.integration

UNSAMPLED_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "00f067aa0ba902b7"


async def test_a_sampled_out_caller_leaves_no_span(
    nats_url: str,
    tmp_path: Path,
    collector: Collector,
    routes: Routes,
) -> None:
    # the default sampler: parent-based, always on for new traces; the caller's flag decides only when trusted
    env = otel_env(collector.endpoint) | {"LF_TRACE_TRUST_INCOMING": "true"}
    async with traced_function(nats_url, tmp_path, routes, SYNC_HANDLER, env, "trs") as traced:
        dropped = await traced.http.get(traced.url, headers={"traceparent": f"00-{UNSAMPLED_TRACE}-{PARENT}-00"})
        kept = await traced.http.get(traced.url, headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
        assert (dropped.status_code, dropped.text) == (200, "hi")
        assert (kept.status_code, kept.text) == (200, "hi")
    # both processes flushed their spans on the way out

    kept_id, dropped_id = kept.headers["x-call-id"], dropped.headers["x-call-id"]
    spans = collector.wait_for(lambda s: s.attr("faas.invocation_id") == kept_id or s.span.name == "inner", 3)
    assert {s.span.trace_id for s in spans} == {bytes.fromhex(TRACE_ID)}
    assert not [s for s in collector.spans if s.attr("faas.invocation_id") == dropped_id]
    assert not [s for s in collector.spans if s.span.trace_id == bytes.fromhex(UNSAMPLED_TRACE)]


async def test_an_untrusted_callers_sampled_flag_does_not_force_recording(
    nats_url: str,
    tmp_path: Path,
    collector: Collector,
    routes: Routes,
) -> None:
    """With a 0 ratio for new traces, a caller sending `sampled` gets its call served and nothing recorded, by the
    ingestor or (told by the envelope's trace context) by the runtime (tests/unit/dataplane/test_tracing_sampling.py:
    the caller's ids are kept, and an unsampled caller is recorded at the sampler's ratio)."""
    ratio_zero = otel_env(collector.endpoint) | {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    async with traced_function(nats_url, tmp_path, routes, SYNC_HANDLER, ratio_zero, "tru") as traced:
        forced = await traced.http.get(traced.url, headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
        unforced = await traced.http.get(traced.url)  # the control: a new trace at ratio 0
        assert (forced.status_code, forced.text, unforced.status_code) == (200, "hi", 200)
    # both processes flushed their spans on the way out
    assert collector.spans == [], [s.span.name for s in collector.spans]
