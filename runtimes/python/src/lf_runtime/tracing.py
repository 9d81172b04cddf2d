"""The runtime's span around each handler run, when tracing is configured (set-up shared with the ingestor:
lf_core.tracing). Off, nothing of OpenTelemetry is imported and serving tests one boolean.

The span continues the trace context of the request envelope (the ingestor's SERVER span is its parent) and is
made current in the call's own contextvars copy, so spans the handler starts through the OpenTelemetry API nest
under it. It ends when the call is answered: by the handler, by a failure, or by the deadline.
"""

from __future__ import annotations

from typing import Any

from lf_core.tracing import (
    ENABLED,
    RUNTIME_SERVICE,
    extract,
    missing_sdk,
    sampled_out,
    setup,
    shutdown,
    unsampled_context,
)

__all__ = ["ENABLED", "RUNTIME_SERVICE", "end", "fail", "missing_sdk", "refused", "setup", "shutdown", "start"]


def start(tracer: Any, context: Any, envelope: Any, namespace: str, function: str, cold: bool) -> Any:
    """Start the call's span (current inside `context`, the contextvars copy the handler runs in); None when the
    caller's trace is sampled out, whose non-recording context is made current instead."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    if sampled_out(envelope.traceparent):
        context.run(otel_context.attach, unsampled_context(envelope.traceparent, envelope.tracestate))
        return None
    parent = extract(envelope.traceparent, envelope.tracestate)
    span = _span(tracer, parent, envelope, namespace, function, cold)
    context.run(otel_context.attach, trace.set_span_in_context(span, parent))  # the copy is dropped after the call
    return span


def refused(tracer: Any, envelope: Any, namespace: str, function: str, payload: bytes, error: str) -> None:
    """A call answered before any handler ran (`busy`, or no time left in its budget): a span begun and ended
    at once, so the trace shows which replica refused it and why. An undecodable envelope has no trace context
    to join and gets none, nor does a sampled-out one."""
    if sampled_out(envelope.traceparent):
        return
    parent = extract(envelope.traceparent, envelope.tracestate)
    end(_span(tracer, parent, envelope, namespace, function, False), payload, error)


def _span(tracer: Any, parent: Any, envelope: Any, namespace: str, function: str, cold: bool) -> Any:
    from opentelemetry import trace

    return tracer.start_span(
        function,
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={
            "faas.invocation_id": envelope.call_id,
            "faas.trigger": "http",
            "faas.coldstart": cold,
            "faas.name": function,
            "litefunctions.namespace": namespace,
            "http.request.method": envelope.method,
        },
    )


def fail(span: Any, exc: BaseException) -> None:
    """The handler raised: the exception as an event, the span's status an error."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def end(span: Any, payload: bytes, error: str = "") -> None:
    """End the span with what the call answered (a response envelope: status at 4..6, error kind at 6)."""
    if span is None:
        return
    status = int.from_bytes(payload[4:6], "little") if len(payload) > 6 else 0
    kind = payload[6] if len(payload) > 6 else 0
    span.set_attribute("http.response.status_code", status)
    if kind or status >= 500 or error:
        from opentelemetry.trace import Status, StatusCode

        if error:
            span.set_attribute("error.type", error)
        if span.status.status_code is not StatusCode.ERROR:  # keep fail()'s description
            span.set_status(Status(StatusCode.ERROR, error or None))
    span.end()
