"""The sampled-out fast path: which incoming trace contexts skip our spans, the non-recording context a handler
gets instead, and the W3C header the ingestor formats itself (it must equal the propagator's)."""

from __future__ import annotations

import pytest
from lf_core import tracing
from lf_dataplane.observability import callspans
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def parent_based(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_parent_based", True)


@pytest.mark.parametrize(
    ("traceparent", "out"),
    [
        (f"00-{TRACE}-{PARENT}-00", True),
        (f"00-{TRACE}-{PARENT}-02", True),  # flags without the sampled bit
        (f"00-{TRACE}-{PARENT}-01", False),
        (f"00-{TRACE}-{PARENT}-03", False),
        ("", False),
        (f"00-{'0' * 32}-{PARENT}-00", False),  # invalid ids: the SDK starts a new trace, the sampler decides
        (f"00-{TRACE}-{'0' * 16}-00", False),
        (f"00-{TRACE.upper()}-{PARENT}-00", False),
        (f"01-{TRACE}-{PARENT}-00", False),
        (f"00-{TRACE}-{PARENT}-00-extra", False),
        (f"00-{TRACE[:-1]}g-{PARENT}-00", False),
    ],
)
def test_sampled_out_only_for_a_valid_unsampled_parent(parent_based: None, traceparent: str, out: bool) -> None:
    assert tracing.sampled_out(traceparent) is out


def test_nothing_is_sampled_out_without_a_parent_based_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_parent_based", False)  # e.g. OTEL_TRACES_SAMPLER=traceidratio ignores the flag
    assert not tracing.sampled_out(f"00-{TRACE}-{PARENT}-00")


def test_the_unsampled_context_carries_the_callers_ids_and_state() -> None:
    span = get_current_span(tracing.unsampled_context(f"00-{TRACE}-{PARENT}-00", "vendor=x"))
    ctx = span.get_span_context()
    assert not span.is_recording()
    assert (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") == (TRACE, PARENT)
    assert ctx.is_remote and not ctx.trace_flags.sampled
    assert ctx.trace_state.to_header() == "vendor=x"


@pytest.mark.parametrize("incoming", [f"00-{TRACE}-{PARENT}-01", ""])
def test_the_outgoing_header_is_what_the_propagator_writes(monkeypatch: pytest.MonkeyPatch, incoming: str) -> None:
    monkeypatch.setattr(tracing, "_tracer", TracerProvider().get_tracer("test"))
    headers = {"traceparent": incoming, "tracestate": "vendor=x"} if incoming else {}
    span = callspans.CallSpan("GET", headers, "call-1", "default", "hello")
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span.span))
    assert span.outgoing() == (carrier["traceparent"], carrier.get("tracestate", ""))
    assert span.recording
    span.end(200)


def test_root_bound_only_for_parent_based_samplers_deciding_by_trace_id() -> None:
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        DEFAULT_ON,
        ParentBased,
        TraceIdRatioBased,
    )

    ratio = TraceIdRatioBased(0.25)
    assert tracing.root_bound(ParentBased(ratio)) == ratio.bound
    assert tracing.root_bound(ParentBased(ALWAYS_OFF)) == 0
    assert tracing.root_bound(DEFAULT_ON) is None  # always on: the SDK's span is recorded anyway
    assert tracing.root_bound(ParentBased(ALWAYS_ON)) is None
    assert tracing.root_bound(ratio) is None  # not parent-based: no shortcut at all


@pytest.mark.parametrize("incoming", ["", "00-garbage", f"00-{'0' * 32}-{PARENT}-01"])
def test_new_traces_are_sampled_here_exactly_as_the_sdk_would(monkeypatch: pytest.MonkeyPatch, incoming: str) -> None:
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    sampler = ParentBased(TraceIdRatioBased(0.25))
    provider = TracerProvider(sampler=sampler, id_generator=tracing.id_generator())
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_parent_based", True)
    monkeypatch.setattr(tracing, "_root_bound", tracing.root_bound(sampler))
    headers = {"traceparent": incoming} if incoming else {}
    recorded = 0
    for i in range(2000):
        span = callspans.CallSpan.start("GET", headers, f"call-{i}", "default", "hello")
        assert span is not None
        traceparent, _ = span.outgoing()
        trace_id = int(traceparent[3:35], 16)
        sdk_says = sampler.should_sample(None, trace_id, "hello").decision.is_sampled()
        if span.recording:
            recorded += 1
            assert int(traceparent[53:55], 16) & 1 and sdk_says  # the SDK's span, with the id drawn here
            assert span.span.get_span_context().trace_id == trace_id
        else:
            assert isinstance(span, callspans.UnsampledRoot)
            assert traceparent.endswith("-00") and not sdk_says  # no SDK span; the runtime is told not to record
            assert tracing.sampled_out(traceparent)
        span.coldstart(False)
        span.end(200)
    assert 350 < recorded < 650  # ~25% of 2,000


# -- a caller's sampled flag is not trusted by default (issue 14, item 10) ---------------------------------------


def ratio_provider(monkeypatch: pytest.MonkeyPatch, ratio: float) -> None:
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    sampler = ParentBased(TraceIdRatioBased(ratio))
    provider = TracerProvider(sampler=sampler, id_generator=tracing.id_generator())
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_parent_based", True)
    monkeypatch.setattr(tracing, "_root_bound", tracing.root_bound(sampler))


@pytest.mark.parametrize("flags", ["01", "00"])
def test_an_untrusted_flag_is_replaced_by_our_ratio_and_the_callers_ids_kept(
    monkeypatch: pytest.MonkeyPatch, flags: str
) -> None:
    ratio_provider(monkeypatch, 0.25)
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-{flags}", "tracestate": "vendor=x"}
    recorded = 0
    for i in range(2000):  # one trace id throughout: the decision is drawn, not read from the caller's id
        span = callspans.CallSpan.start("GET", headers, f"call-{i}", "default", "hello")
        assert span is not None
        traceparent, _ = span.outgoing()
        assert traceparent[3:35] == TRACE  # correlation: the caller finds its call under its own trace id
        if span.recording:
            recorded += 1
            ctx = span.span.parent
            assert (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") == (TRACE, PARENT)
            assert traceparent.endswith("-01")
        else:
            assert traceparent == f"00-{TRACE}-{PARENT}-00"  # the runtime is told not to record either
        span.end(200)
    assert 350 < recorded < 650  # ~25% of 2,000, whatever the caller's flag


def test_trusted_callers_decide_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    ratio_provider(monkeypatch, 0.0)
    monkeypatch.setattr(callspans, "_trust_incoming", True)
    sampled = callspans.CallSpan.start("GET", {"traceparent": f"00-{TRACE}-{PARENT}-01"}, "c1", "default", "hello")
    assert sampled is not None and sampled.recording
    sampled.end(200)
    assert callspans.CallSpan.start("GET", {"traceparent": f"00-{TRACE}-{PARENT}-00"}, "c2", "default", "hello") is None


@pytest.mark.parametrize(
    ("bound", "incoming", "expected"),
    [
        (0, f"00-{TRACE}-{PARENT}-03", f"00-{TRACE}-{PARENT}-02"),  # always off: never, other flag bits kept
        (None, f"00-{TRACE}-{PARENT}-00", f"00-{TRACE}-{PARENT}-01"),  # always on: always
        (0, "00-garbage", "00-garbage"),  # invalid: the SDK starts a new trace, our sampler decides there
    ],
)
def test_redecided(monkeypatch: pytest.MonkeyPatch, bound: int | None, incoming: str, expected: str) -> None:
    monkeypatch.setattr(tracing, "_parent_based", True)
    monkeypatch.setattr(tracing, "_root_bound", bound)
    assert tracing.redecided(incoming) == expected
    monkeypatch.setattr(tracing, "_parent_based", False)  # not parent-based: the flag decides nothing anyway
    assert tracing.redecided(incoming) == incoming
