"""The ingestor's spans: the SERVER span of each function call (sync, or an async submission) and of a call's status
endpoint, and the trace context the request envelope carries on. Set-up, sampling and context helpers are
lf_core.tracing's, shared with the runtimes. Off (`lf_core.tracing.ENABLED` false), only `untraced` is called.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from lf_core import tracing

_trust_incoming = False
"""LF_TRACE_TRUST_INCOMING: follow a caller's sampled flag (true) or decide ourselves, keeping its ids (false)."""


def configure(*, trust_incoming: bool) -> None:
    """Set from the ingestor's settings in each worker (`http.app.create_app`)."""
    global _trust_incoming
    _trust_incoming = trust_incoming


def _callers(headers: Any, untrusted: Callable[[str], str]) -> tuple[str, str]:
    """The caller's (traceparent, tracestate), its traceparent passed through `untrusted` unless callers are."""
    traceparent = headers.get("traceparent", "")
    if not traceparent:
        return "", ""
    if not _trust_incoming:
        traceparent = untrusted(traceparent)
    return traceparent, headers.get("tracestate", "")


def _incoming(headers: Any) -> tuple[str, str]:
    """The caller's trace context for our span: the sampled flag decided by us unless callers are trusted."""
    return _callers(headers, tracing.redecided)


def untraced(headers: Any) -> tuple[str, str]:
    """(traceparent, tracestate) for the envelope when the ingestor does not trace (or records no span): the
    caller's, with the sampled flag cleared unless callers are trusted, so no caller can make a tracing runtime
    record its call."""
    return _callers(headers, tracing.unsampled)


class CallSpan:
    """The ingestor's SERVER span of one function call (sync, or an async submission), or of a call's status
    endpoint (`endpoint`).

    It is passed explicitly (on the ingestor's per-call object, app._Call), never made current: granian's RSGI
    scheduler runs every request of a worker in one shared contextvars context, so a context attached by one
    request would be seen by the others it interleaves with.
    """

    __slots__ = ("recording", "span")

    def __init__(
        self,
        method: str,
        headers: Any,
        call_id: str,
        namespace: str,
        name: str,
        *,
        queued: bool = False,
        incoming: tuple[str, str] | None = None,
    ):
        attributes: dict[str, Any] = {
            "faas.invocation_id": call_id,
            "faas.trigger": "http",
            "faas.name": name,
            "faas.invoked_name": name,
            "litefunctions.namespace": namespace,
            "http.request.method": method,
        }
        if queued:  # POST /async-function/...: the runtime's CONSUMER span (trigger pubsub) will be its child
            attributes["litefunctions.async"] = True
        context = _incoming(headers) if incoming is None else incoming
        self.span = _start_server_span(f"{method} {name}{' async' if queued else ''}", context, attributes)
        self.recording: bool = self.span.is_recording()

    @classmethod
    def start(
        cls, method: str, headers: Any, call_id: str, namespace: str, name: str, *, queued: bool = False
    ) -> CallSpan | None:
        """The call's span; None when a trusted incoming trace context is `sampled_out`; an `UnsampledRoot` for a
        new trace the sampler would not record (decided here by its id, as the sampler does, without the SDK), or for
        an untrusted caller's trace we decided not to record (its trace id kept, see `tracing.redecided`)."""
        incoming = _incoming(headers)  # decided once: the span below starts from this same context
        traceparent = incoming[0]
        if traceparent and tracing.valid_traceparent(traceparent):
            if tracing.sampled_out(traceparent):
                return None if _trust_incoming else UnsampledRoot.continuing(traceparent)
        elif (drawn := tracing.draw_root()) is not None:  # a new trace, decided by its id
            trace_id, recorded = drawn
            if not recorded:
                return UnsampledRoot(trace_id)
            return tracing.with_trace_id(
                trace_id, lambda: cls(method, headers, call_id, namespace, name, queued=queued, incoming=incoming)
            )
        return cls(method, headers, call_id, namespace, name, queued=queued, incoming=incoming)

    @classmethod
    def endpoint(cls, method: str, route: str, headers: Any, call_id: str) -> CallSpan:
        """The span of a request to one of the ingestor's own endpoints about a call (`/invocations/{id}`)."""
        span = cls.__new__(cls)
        attributes = {"faas.invocation_id": call_id, "http.request.method": method, "http.route": route}
        span.span = _start_server_span(f"{method} {route}", _incoming(headers), attributes)
        span.recording = span.span.is_recording()
        return span

    def outgoing(self) -> tuple[str, str]:
        """(traceparent, tracestate) for the request envelope: this span's context (W3C, as the propagator writes
        it; formatted here because the propagator's inject costs several µs)."""
        ctx = self.span.get_span_context()
        if not ctx.is_valid:
            return "", ""
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}", ctx.trace_state.to_header()

    def coldstart(self, cold: bool) -> None:
        if self.recording:
            self.span.set_attribute("faas.coldstart", cold)

    def end(self, status: int, error: str = "") -> None:
        span = self.span
        if not self.recording:  # sampled out at the root: nothing to record
            span.end()
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, error or None))
            if error:
                span.set_attribute("error.type", error)
        span.end()

    def fail(self, exc: BaseException) -> None:
        """End with an error raised by the call: an HTTP error answer (the ingestor's `http.mapping.HttpError`) or
        anything else."""
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            self.end(status, str(getattr(exc, "code", "")))
        else:
            self.span.record_exception(exc)
            self.end(500, type(exc).__name__)


class UnsampledRoot(CallSpan):
    """A new trace the sampler would not record: no SDK span (a non-recording one costs tens of µs), only the W3C
    context, sampled flag off, that tells the runtime to record nothing either."""

    __slots__ = ("_traceparent",)

    def __init__(self, trace_id: int) -> None:
        self.span = None
        self.recording = False
        self._traceparent = f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-00"

    @classmethod
    def continuing(cls, traceparent: str) -> UnsampledRoot:
        """A caller's trace we do not record: its context goes on as `traceparent` (sampled flag off) says."""
        unsampled = cls.__new__(cls)
        unsampled.span = None
        unsampled.recording = False
        unsampled._traceparent = traceparent
        return unsampled

    def outgoing(self) -> tuple[str, str]:
        return self._traceparent, ""

    def coldstart(self, cold: bool) -> None:
        pass

    def end(self, status: int, error: str = "") -> None:
        pass

    def fail(self, exc: BaseException) -> None:
        pass


def _start_server_span(name: str, incoming: tuple[str, str], attributes: dict[str, Any]) -> Any:
    from opentelemetry import trace

    context = tracing.extract(*incoming)
    return tracing.tracer().start_span(name, context=context, kind=trace.SpanKind.SERVER, attributes=attributes)


def outgoing(span: CallSpan | None, headers: Any) -> tuple[str, str]:
    """The trace context to put in the request envelope: the call's span's, else the incoming one as is."""
    if span is not None:
        traceparent, tracestate = span.outgoing()
        if traceparent:
            return traceparent, tracestate
    traceparent = headers.get("traceparent", "")
    return traceparent, headers.get("tracestate", "") if traceparent else ""
