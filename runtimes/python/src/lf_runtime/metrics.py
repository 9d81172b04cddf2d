"""The runtime's `/metrics` (LF_METRICS_PORT > 0): plain counters on the hot path, written out at scrape time.

A call costs the replica a list increment for its outcome, one `bisect` of its duration (integer nanoseconds)
into the ingestor's buckets and an integer addition; nothing else per request (docs/performance.md). In-flight,
stuck handlers and the cold start are read from the replica's own state at scrape time.

The listener is a tiny asyncio HTTP/1.1 server (lf_runtime.listener: one request per connection, `GET /metrics`
only) on LF_METRICS_HOST (127.0.0.1) : LF_METRICS_PORT; every label value is bounded (namespace, function, a
fixed outcome).
"""

from __future__ import annotations

import asyncio
from typing import Any

from lf_core.contract.histograms import DURATION_BUCKETS

from lf_runtime.listener import NOT_FOUND, Answer, listen

OUTCOMES = ("ok", "handler_error", "timeout", "busy", "bad_request", "too_large", "internal")
OK, HANDLER_ERROR, TIMEOUT, BUSY, BAD_REQUEST, TOO_LARGE, INTERNAL = range(len(OUTCOMES))
BUCKETS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in DURATION_BUCKETS)
"""DURATION_BUCKETS in nanoseconds, so a call's duration is bisected as an integer."""


class RuntimeStats:
    """The replica's counters (mutated on the event loop thread only)."""

    __slots__ = ("calls", "dur", "dur_sum_ns")

    def __init__(self) -> None:
        self.calls = [0] * len(OUTCOMES)
        self.dur = [0] * (len(BUCKETS_NS) + 1)
        self.dur_sum_ns = 0


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format, as the Go and Rust runtimes write it too."""


def render(replica: Any) -> tuple[bytes, str]:
    """The replica's metrics in the text exposition format (`replica` is an `lf_runtime.serving.Replica`).

    Written here rather than with prometheus-client: a function's replica must not carry the platform's metrics
    library (a user's requirements may pin another version of it), and a handful of families at scrape time is
    all this needs. The Go and Rust runtimes write the same families (runtimes/conformance checks all three).
    """
    r = replica
    s: RuntimeStats = r.stats
    settings = r.settings
    base = f'function="{_escape(settings.function)}",namespace="{_escape(settings.namespace)}"'
    out: list[str] = []
    calls = _family(out, "litefunctions_runtime_calls", "counter", "Calls this replica answered, by outcome")
    for outcome, n in zip(OUTCOMES, s.calls, strict=True):
        out.append(f'{calls}{{{base},outcome="{outcome}"}} {n}')
    name = "litefunctions_runtime_handler_duration_seconds"
    _family(
        out, name, "histogram",
        "Time from a call's arrival in the replica to its answer (calls that ran, timeouts included)",
    )  # fmt: skip
    total = 0
    for bound, count in zip(DURATION_BUCKETS, s.dur, strict=False):
        total += count
        out.append(f'{name}_bucket{{{base},le="{float(bound)!r}"}} {total}')
    total += s.dur[-1]
    out.append(f'{name}_bucket{{{base},le="+Inf"}} {total}')
    out.append(f"{name}_count{{{base}}} {total}")
    out.append(f"{name}_sum{{{base}}} {s.dur_sum_ns / 1e9!r}")
    _one(out, "litefunctions_runtime_inflight", "gauge", "Calls running or queued", base, r.inflight)
    _one(
        out, "litefunctions_runtime_cold_starts", "counter", "Cold starts of this replica (0 or 1)", base,
        int(r.cold_started),
    )  # fmt: skip
    _one(
        out, "litefunctions_runtime_stuck_handlers", "gauge",
        "Sync handler threads still running past their call's deadline", base, r.stuck,
    )  # fmt: skip
    out.append("")
    return "\n".join(out).encode(), CONTENT_TYPE


def _family(out: list[str], name: str, kind: str, help_text: str) -> str:
    """Write a family's HELP and TYPE lines; return the name its samples carry. A counter's is `name_total`, in
    HELP and TYPE too (the 0.0.4 text format, as prometheus-client and promtool read it)."""
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    named = f"{name}_total" if kind == "counter" else name
    out.append(f"# HELP {named} {escaped}")
    out.append(f"# TYPE {named} {kind}")
    return named


def _one(out: list[str], name: str, kind: str, help_text: str, labels: str, value: int) -> None:
    out.append(f"{_family(out, name, kind, help_text)}{{{labels}}} {value}")


def _escape(value: str) -> str:
    """A label value in the exposition format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def serve(replica: Any, host: str, port: int) -> asyncio.Server:
    """Start the `/metrics` listener; the caller closes the returned server."""

    def answer(path: bytes) -> Answer:
        if path != b"/metrics":
            return NOT_FOUND
        body, ctype = render(replica)
        return "200 OK", ctype, body

    return await listen(host, port, answer)
