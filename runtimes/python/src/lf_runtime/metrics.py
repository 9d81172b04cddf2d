"""The runtime's `/metrics` (LF_METRICS_PORT > 0): plain counters on the hot path, prometheus-client at scrape time.

A call costs the replica a list increment for its outcome, one `bisect` of its duration (integer nanoseconds)
into the ingestor's buckets and an integer addition; no prometheus-client call per request (DESIGN §7). In-flight,
stuck handlers and the cold start are read from the replica's own state at scrape time, the async counters from
`AsyncWorker.counts`, and `litefunctions_async_pending` from the last pulled message's JetStream ack subject
(`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the v2 form with domain and account
hash): the consumer's pending count as of that delivery, so nothing is asked of the server.

The listener is a tiny asyncio HTTP/1.1 server (one request per connection, `GET /metrics` only) on
LF_METRICS_HOST (127.0.0.1) : LF_METRICS_PORT; every label value is bounded (namespace, function, a fixed outcome).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from lf_dataplane.buckets import DURATION_BUCKETS

OUTCOMES = ("ok", "handler_error", "timeout", "busy", "bad_request", "too_large", "internal")
OK, HANDLER_ERROR, TIMEOUT, BUSY, BAD_REQUEST, TOO_LARGE, INTERNAL = range(len(OUTCOMES))
BUCKETS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in DURATION_BUCKETS)
"""DURATION_BUCKETS in nanoseconds, so a call's duration is bisected as an integer."""
_READ_TIMEOUT_S = 5.0


class RuntimeStats:
    """The replica's counters (mutated on the event loop thread only)."""

    __slots__ = ("calls", "dur", "dur_sum_ns")

    def __init__(self) -> None:
        self.calls = [0] * len(OUTCOMES)
        self.dur = [0] * (len(BUCKETS_NS) + 1)
        self.dur_sum_ns = 0


def pending_from_ack(reply: str) -> int | None:
    """The consumer's pending count in a JetStream ack subject (v1 or v2 layout), None if it is not one."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        token = tokens[8]
    elif len(tokens) >= 11:  # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
        token = tokens[10]
    else:
        return None
    return int(token) if token.isdigit() else None


class RuntimeCollector:
    """A prometheus-client collector over a replica's counters (`replica` is an `lf_runtime.serving.Replica`)."""

    def __init__(self, replica: Any) -> None:
        self.replica = replica

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        r = self.replica
        s: RuntimeStats = r.stats
        settings = r.settings
        lv = [settings.namespace, settings.function]
        nf = ["namespace", "function"]
        calls = CounterMetricFamily(
            "litefunctions_runtime_calls", "Calls this replica answered, by outcome", labels=[*nf, "outcome"]
        )
        for name, n in zip(OUTCOMES, s.calls, strict=True):
            calls.add_metric([*lv, name], n)
        yield calls
        dur = HistogramMetricFamily(
            "litefunctions_runtime_handler_duration_seconds",
            "Time from a call's arrival in the replica to its answer (calls that ran, timeouts included)",
            labels=nf,
        )
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(DURATION_BUCKETS, s.dur, strict=False):
            total += count
            buckets.append((repr(float(bound)), total))
        buckets.append(("+Inf", total + s.dur[-1]))
        dur.add_metric(lv, buckets, s.dur_sum_ns / 1e9)
        yield dur
        yield _one(GaugeMetricFamily, "litefunctions_runtime_inflight", "Calls running or queued", lv, r.inflight)
        yield _one(
            CounterMetricFamily, "litefunctions_runtime_cold_starts", "Cold starts of this replica (0 or 1)", lv,
            int(r.cold_started),
        )  # fmt: skip
        yield _one(
            GaugeMetricFamily, "litefunctions_runtime_stuck_handlers",
            "Sync handler threads still running past their call's deadline", lv, r.stuck,
        )  # fmt: skip
        worker = r.async_worker
        if worker is None:
            return
        counts = worker.counts
        for key, help_text in (
            ("runs", "Async calls this replica ran (each attempt)"),
            ("retries", "Async attempts that failed and were scheduled again"),
            ("dead", "Async calls dead-lettered by this replica"),
            ("zombie_results_dropped", "Async results dropped because another delivery of the call moved on"),
        ):
            yield _one(CounterMetricFamily, f"litefunctions_async_{key}", help_text, lv, counts.get(key, 0))
        last = worker.last_reply
        pending = pending_from_ack(last) if last else 0
        yield _one(
            GaugeMetricFamily, "litefunctions_async_pending",
            "The function's async calls not yet delivered, as of this replica's last pulled call", lv, pending or 0,
        )  # fmt: skip


def _one(kind: Any, name: str, help_text: str, lv: list[str], value: float) -> Any:
    family = kind(name, help_text, labels=["namespace", "function"])
    family.add_metric(lv, value)
    return family


def render(replica: Any) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(replica))
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def serve(replica: Any, host: str, port: int) -> asyncio.Server:
    """Start the `/metrics` listener; the caller closes the returned server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path != b"/metrics":
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            else:
                body, ctype = render(replica)
                status = "200 OK"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
