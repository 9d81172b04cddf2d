"""OpenTelemetry tracing, off unless configured: the set-up, sampling and trace-context helpers the ingestor's spans
(lf_dataplane.observability.callspans) and the runtime's (lf_runtime.tracing) share.

Off, this module imports nothing of OpenTelemetry and the hot path tests one module-level boolean (`ENABLED`,
read once from the environment at import). On (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
or `OTEL_TRACES_EXPORTER` set, and neither `OTEL_TRACES_EXPORTER=none` nor `OTEL_SDK_DISABLED=true`), `setup`
installs a TracerProvider with a BatchSpanProcessor over the OTLP/HTTP exporter (or the console one); the SDK
reads the other standard variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*`). The W3C trace context travels in the request envelope (docs/protocol.md).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

INGESTOR_SERVICE = "litefunctions-ingestor"
RUNTIME_SERVICE = "litefunctions-runtime"
TRACER_NAME = "litefunctions"
T = TypeVar("T")


def configured(env: Mapping[str, str]) -> bool:
    """Whether the standard OTel variables ask for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


ENABLED: bool = configured(os.environ)
"""Read once at start-up; the hot paths test only this."""

_provider: Any = None
_tracer: Any = None
_parent_based = False
"""The sampler follows the parent's sampled flag (the default `parentbased_always_on`, any `parentbased_*`)."""
_root_bound: int | None = None
"""Set by `setup` when the sampler is parent-based and decides new traces by their id alone (`parentbased_
traceidratio`, `parentbased_always_off`): a new trace is recorded iff its id's low 64 bits are under this."""
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
_TRACE_ID_LOW = (1 << 64) - 1
_next_trace_id = threading.local()
"""A trace id `draw_root` drew (and sampled), for the SDK's id generator to hand to the span `with_trace_id` starts."""


def missing_sdk() -> str:
    """Why tracing, configured, cannot start ("" when it can): the OpenTelemetry SDK and OTLP exporter are the
    `tracing` extra (`lf-core[tracing]`, `lf-runtime[tracing]`), which a function's image may leave out."""
    for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            return (
                f"tracing is configured (OTEL_* variables) but {module} is not installed: install the 'tracing' "
                "extra (lf-runtime[tracing]) or unset OTEL_EXPORTER_OTLP_ENDPOINT / set OTEL_TRACES_EXPORTER=none"
            )
    return ""


def setup(default_service: str) -> Any:
    """Install the process's TracerProvider (once; idempotent) and return our tracer. Only call when ENABLED."""
    global _provider, _tracer, _parent_based, _root_bound
    if _tracer is not None:
        return _tracer
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    resource = Resource.create({})  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    # OTEL_TRACES_SAMPLER, default parent-based always-on
    provider = TracerProvider(resource=resource, id_generator=id_generator())
    for name in _exporter_names(os.environ):
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* from the environment
    trace.set_tracer_provider(provider)
    _parent_based = isinstance(provider.sampler, ParentBased)
    _root_bound = root_bound(provider.sampler)
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    return _tracer


def id_generator() -> Any:
    """The SDK's random ids, except a trace id `draw_root` drew (and sampled) for the span `with_trace_id` starts."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class Drawn(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            drawn: int = getattr(_next_trace_id, "value", 0)
            if drawn:
                _next_trace_id.value = 0
                return drawn
            return super().generate_trace_id()

    return Drawn()


def root_bound(sampler: Any) -> int | None:
    """The bound `_root_bound` describes, for a sampler that decides new traces by their id alone; else None."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    root = getattr(sampler, "_root", None) if isinstance(sampler, ParentBased) else None
    if isinstance(root, TraceIdRatioBased):
        return int(root.bound)
    if root is ALWAYS_OFF:
        return 0
    return None


def shutdown() -> None:
    """Export what is buffered and stop the processors (the provider also does this at interpreter exit)."""
    global _provider, _tracer
    if _provider is not None:
        try:
            _provider.shutdown()
        except Exception as exc:  # an exporter failing at exit must not fail the stop
            log.warning("tracing shutdown failed", extra={"fields": {"error": repr(exc)}})
        _provider = _tracer = None


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    return [n for n in names if n and n != "none"] or ["otlp"]


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("unsupported OTEL_TRACES_EXPORTER", extra={"fields": {"exporter": name}})
        return None
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        log.warning("only OTLP over http/protobuf is installed; using it", extra={"fields": {"requested": protocol}})
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_* variables


# -- trace context ------------------------------------------------------------------------------------------------


def extract(traceparent: str, tracestate: str) -> Any:
    """The OTel context of an incoming W3C trace context (an empty one when there is none or it is invalid)."""
    if not traceparent:
        from opentelemetry.context import Context

        return Context()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent, "tracestate": tracestate})


def sampled_out(traceparent: str) -> bool:
    """Whether a call continuing this W3C `traceparent` would record nothing: it is valid, its sampled flag is off
    and the sampler is parent-based (the default). Such a call gets no span of ours (the SDK would make a
    non-recording one, at tens of µs) and its trace context travels on as it came."""
    if not _parent_based or not traceparent:
        return False
    match = _valid(traceparent)
    return match is not None and not int(match[3], 16) & 1  # invalid: the SDK starts a new trace


def _valid(traceparent: str) -> re.Match[str] | None:
    match = _TRACEPARENT.match(traceparent)
    if match is None or match[1] == "0" * 32 or match[2] == "0" * 16:
        return None
    return match


def redecided(traceparent: str) -> str:
    """An untrusted caller's W3C `traceparent` with its sampled flag replaced by our own decision, for a parent-based
    sampler (which would otherwise follow the caller: any client could make every call it sends recorded).

    The trace and parent ids stay (the caller can still find its call in our traces); whether it is recorded is
    drawn at random with the sampler's ratio for new traces (`parentbased_traceidratio`; always for
    `parentbased_always_on`, never for `parentbased_always_off`), not read from the trace id, which the caller
    chose. An invalid header, or a sampler that is not parent-based, is returned as it came."""
    if not _parent_based:
        return traceparent
    match = _valid(traceparent)
    if match is None:
        return traceparent
    recorded = _root_bound is None or random.getrandbits(64) < _root_bound
    flags = (int(match[3], 16) & ~1) | recorded
    return f"00-{match[1]}-{match[2]}-{flags:02x}"


def unsampled(traceparent: str) -> str:
    """An untrusted caller's W3C `traceparent` as an ingestor that does not trace passes it on: the ids kept (the
    runtime's spans join the caller's trace), the sampled flag cleared, so a runtime's parent-based sampler does not
    record the call on the caller's word. An invalid header is returned as it came (a runtime starts a new trace)."""
    match = _valid(traceparent)
    if match is None:
        return traceparent
    return f"00-{match[1]}-{match[2]}-{int(match[3], 16) & ~1:02x}"


def unsampled_context(traceparent: str, tracestate: str) -> Any:
    """The OTel context of a `sampled_out` parent: a non-recording span, so spans a handler starts under it are
    dropped like their parent and propagate its trace."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState, set_span_in_context

    state = TraceState.from_header([tracestate]) if tracestate else None
    parent = SpanContext(
        int(traceparent[3:35], 16), int(traceparent[36:52], 16), True, TraceFlags(0), trace_state=state
    )
    return set_span_in_context(NonRecordingSpan(parent))


def valid_traceparent(traceparent: str) -> bool:
    """A W3C `traceparent` the SDK would continue (version 00, non-zero ids); an invalid one starts a new trace."""
    return _valid(traceparent) is not None


def tracer() -> Any:
    """The tracer `setup` installed (the global provider's when `setup` was not called: tests)."""
    from opentelemetry import trace

    return _tracer if _tracer is not None else trace.get_tracer(TRACER_NAME)


def draw_root() -> tuple[int, bool] | None:
    """For a new trace: `(trace id, recorded)` drawn now, when the sampler decides new traces by their id alone
    (so a caller can skip the SDK for a trace it would not record); None when it does not (start a span as usual).
    A recorded id is given to the next span started under `with_trace_id`."""
    if _root_bound is None:
        return None
    trace_id = random.getrandbits(128) or 1
    return trace_id, trace_id & _TRACE_ID_LOW < _root_bound


def with_trace_id(trace_id: int, start: Callable[[], T]) -> T:
    """Run `start` (which starts one root span) with the SDK's id generator handing out `trace_id`."""
    _next_trace_id.value = trace_id  # the SDK's sampler decides the same for this id as draw_root did
    try:
        return start()
    finally:
        _next_trace_id.value = 0
