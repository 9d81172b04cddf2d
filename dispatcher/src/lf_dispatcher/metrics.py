"""The dispatcher's Prometheus metrics, on its admin listener (LF_ADMIN_HOST:LF_ADMIN_PORT, `GET /metrics`).

The async families keep the names and labels docs/metrics.md gave them when each replica exported its own; they
are now counted where the work happens, per function, by each dispatcher (sum over dispatchers for the total):

| name | type | what |
|---|---|---|
| `litefunctions_async_runs_total` | counter | attempts started (the record moved to `running`, the function invoked) |
| `litefunctions_async_retries_total` | counter | attempts that failed and were NAKed with the policy's backoff |
| `litefunctions_async_dead_total` | counter | calls dead-lettered |
| `litefunctions_async_zombie_results_dropped_total` | counter | results dropped: another delivery moved the record on |
| `litefunctions_async_pulls_total` | counter | pull requests sent (round trips beside each call's own) |
| `litefunctions_async_busy_total` | counter | answered busy (or no replica): NAKed shortly, not an attempt |
| `litefunctions_async_pending` | gauge | the consumer's pending count as of the last call pulled (its ack subject) |
| `litefunctions_async_window` | gauge | calls this dispatcher may hold for the function now (its pull window) |
| `litefunctions_dispatcher_inflight` | gauge | calls this dispatcher holds over all functions |

Counting costs a dict lookup and an add per event (a `FunctionCounts` per function, rendered at scrape time):
prometheus_client's own counters take a lock per increment, and the dispatcher counts several events per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COUNTERS = ("runs", "retries", "dead", "zombie_results_dropped", "busy", "pulls")
HELP = {
    "runs": "Async attempts started (the function invoked).",
    "retries": "Async attempts that failed and were NAKed with a backoff.",
    "dead": "Async calls dead-lettered.",
    "zombie_results_dropped": "Async results dropped because another delivery of the call had moved its record on.",
    "busy": "Async attempts answered busy or with no replica: NAKed shortly, not counted as attempts.",
    "pulls": "Pull requests sent to the function's consumer.",
}


class FunctionCounts:
    """One function's counters and gauges (plain attributes: written on the loop, read by the scrape thread)."""

    __slots__ = (
        "busy",
        "dead",
        "function",
        "namespace",
        "pending",
        "pulls",
        "retries",
        "runs",
        "window",
        "zombie_results_dropped",
    )

    def __init__(self, namespace: str, function: str) -> None:
        self.namespace = namespace
        self.function = function
        self.runs = self.retries = self.dead = self.zombie_results_dropped = self.busy = self.pulls = 0
        self.pending = 0
        self.window = 0


class Metrics(Collector):
    """Every function's counts (kept after a function goes, so counters never go back), rendered per scrape."""

    def __init__(self, inflight: Callable[[], int] = lambda: 0) -> None:
        self.functions: dict[tuple[str, str], FunctionCounts] = {}
        self.inflight = inflight
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def of(self, namespace: str, function: str) -> FunctionCounts:
        key = (namespace, function)
        counts = self.functions.get(key)
        if counts is None:
            counts = self.functions[key] = FunctionCounts(namespace, function)
        return counts

    def collect(self) -> Iterable[Metric]:
        labels = ["namespace", "function"]
        functions = list(self.functions.values())
        for name in COUNTERS:
            family = CounterMetricFamily(f"litefunctions_async_{name}", HELP[name], labels=labels)
            for c in functions:
                family.add_metric([c.namespace, c.function], getattr(c, name))
            yield family
        pending = GaugeMetricFamily(
            "litefunctions_async_pending", "The consumer's pending count as of the last call pulled.", labels=labels
        )
        window = GaugeMetricFamily(
            "litefunctions_async_window", "Calls this dispatcher may hold for the function now.", labels=labels
        )
        for c in functions:
            pending.add_metric([c.namespace, c.function], c.pending)
            window.add_metric([c.namespace, c.function], c.window)
        yield pending
        yield window
        yield GaugeMetricFamily(
            "litefunctions_dispatcher_inflight", "Async calls this dispatcher holds.", value=self.inflight()
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AdminListener:
    """`GET /metrics` (and `/healthz`) from a daemon thread; anything else 404."""

    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        class Handler(BaseHTTPRequestHandler):
            server_version = "litefunctions"
            sys_version = ""

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                if path == "/metrics":
                    self._send(200, metrics.render(), CONTENT_TYPE)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="admin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
