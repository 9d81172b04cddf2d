"""The ingestor's metrics: plain counters per function on the hot path, prometheus-client only at scrape time.

Why not prometheus-client on the hot path: a labelled `Counter.inc()` plus a `Histogram.observe()` per call cost
several microseconds (label lookup, a lock, multiprocess mmap writes), a fifth of our per-request budget
(docs/architecture.md, "Budgets"). Here a call costs one dict lookup (the function's `FunctionStats`, kept by label
across route-table rebuilds), a few integer increments and one `bisect` into the duration buckets.

Several granian workers: each worker keeps its own `WorkerStats` and writes a snapshot (JSON) to
`LF_METRICS_DIR/ingestor-{pid}.json` every LF_METRICS_FLUSH seconds, off the request path, and once more when
it stops. `GET /metrics` on the admin listener (`observability/admin.py`, in the server's main process, not on
the public port) reads every worker's last snapshot (`SnapshotDir`) and renders the sum through a
prometheus-client custom collector. Counters of a worker that has exited stay in its file (so totals never go
backwards); its gauges (in-flight) are dropped. The server's main process creates the directory (a fresh
temporary one unless LF_METRICS_DIR is set) before it starts the workers.

Every label value is bounded: namespace and function come from the route table, `code` is an HTTP status,
`layer` and `reason` come from the fixed set of error codes in `lf_dataplane.http.mapping`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec
from lf_core.contract.histograms import DURATION_BUCKETS

log = logging.getLogger(__name__)

SIZE_BUCKETS: tuple[int, ...] = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
"""Bytes, powers of 4 from 64 B to 16 MiB (`size_index` finds a bucket with one `bit_length`)."""
_NB = len(DURATION_BUCKETS) + 1
_NS = len(SIZE_BUCKETS) + 1
_SIZE_LAST = len(SIZE_BUCKETS)


def size_index(n: int) -> int:
    """Index of the first bucket of SIZE_BUCKETS holding `n` bytes (len(SIZE_BUCKETS) for +Inf)."""
    if n <= 64:
        return 0
    i = (((n - 1).bit_length() + 1) >> 1) - 3
    return i if i < _SIZE_LAST else _SIZE_LAST


class FunctionStats:
    """One function's counters in one worker (mutated on the event loop thread only)."""

    __slots__ = (
        "cold_starts", "codes", "dur", "dur_sum", "errors", "function", "inflight", "namespace", "ovh_count",
        "ovh_sum", "req", "req_sum", "resp", "resp_sum", "rt", "rt_sum",
    )  # fmt: skip

    def __init__(self, namespace: str, function: str) -> None:
        self.namespace = namespace
        self.function = function
        self.codes: dict[int, int] = {}
        self.dur = [0] * _NB
        self.dur_sum = 0.0
        self.rt = [0] * _NB  # the runtime's own time (response envelope duration_ns)
        self.rt_sum = 0.0
        self.ovh_sum = 0.0  # total minus the runtime's time, calls that reached a runtime
        self.ovh_count = 0
        self.inflight = 0
        self.cold_starts = 0
        self.errors: dict[str, int] = {}  # "layer/reason"
        self.req = [0] * _NS
        self.req_sum = 0
        self.resp = [0] * _NS
        self.resp_sum = 0

    def answered(self, status: int, body_len: int, seconds: float) -> None:
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.dur[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.dur_sum += seconds
        self.resp[size_index(body_len)] += 1
        self.resp_sum += body_len

    def failed(self, status: int, layer: str, reason: str, seconds: float) -> None:
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.dur[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.dur_sum += seconds
        key = f"{layer}/{reason}"
        self.errors[key] = self.errors.get(key, 0) + 1

    def ran(self, duration_ns: int, cold: bool, request_len: int, seconds: float) -> None:
        """A runtime answered: its own time, the platform's overhead, a cold start, the request's size."""
        rt = duration_ns / 1e9
        self.rt[bisect_left(DURATION_BUCKETS, rt)] += 1
        self.rt_sum += rt
        self.ovh_sum += seconds - rt
        self.ovh_count += 1
        if cold:
            self.cold_starts += 1
        self.req[size_index(request_len)] += 1
        self.req_sum += request_len

    def snapshot(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "function": self.function,
            "codes": {str(k): v for k, v in self.codes.items()}, "dur": self.dur, "dur_sum": self.dur_sum,
            "rt": self.rt, "rt_sum": self.rt_sum, "ovh_sum": self.ovh_sum, "ovh_count": self.ovh_count,
            "inflight": self.inflight, "cold_starts": self.cold_starts, "errors": self.errors,
            "req": self.req, "req_sum": self.req_sum, "resp": self.resp, "resp_sum": self.resp_sum,
        }  # fmt: skip


class WorkerStats:
    """All counters of one ingestor worker, and its snapshot file."""

    def __init__(self, directory: str | None = None) -> None:
        self.functions: dict[str, FunctionStats] = {}
        self.directory = Path(directory) if directory else None
        self.pid = os.getpid()
        self.started = time.time()
        self.sources: dict[str, Any] = {}
        """Objects whose counters are read at snapshot time: "cache" (ResponseCache), "gate" (Gate), "app"."""

    def of(self, label: str, namespace: str, function: str) -> FunctionStats:
        stats = self.functions.get(label)
        if stats is None:
            stats = self.functions[label] = FunctionStats(namespace, function)
        return stats

    def snapshot(self) -> dict[str, Any]:
        worker: dict[str, int] = {}
        cache = self.sources.get("cache")
        if cache is not None:
            worker["cache_hits"] = cache.hits + cache.shared_hits
            worker["cache_misses"] = cache.misses
        gate = self.sources.get("gate")
        if gate is not None:
            worker["overloaded"] = gate.refused
            worker["worker_inflight"] = gate.inflight
        app = self.sources.get("app")
        if app is not None:
            worker["rate_limited"] = app.rate_limited
        return {
            "pid": self.pid,
            "worker": worker,
            "functions": [s.snapshot() for s in self.functions.values()],
        }

    @property
    def path(self) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"ingestor-{self.pid}.json"

    def flush(self) -> None:
        """Write this worker's snapshot atomically (a reader sees the old file or the new one)."""
        path = self.path
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(msgspec.json.encode(self.snapshot()))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write metrics snapshot", extra={"fields": {"path": str(path), "error": str(exc)}})

    async def run_flusher(self, interval_s: float) -> None:
        import asyncio

        try:
            while True:
                await asyncio.sleep(interval_s)
                self.flush()
        finally:
            self.flush()


class SnapshotDir:
    """The snapshots of every worker in a directory, read by the admin listener (which keeps no counts itself)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def all_snapshots(self) -> list[tuple[dict[str, Any], bool]]:
        """Each worker's last snapshot, with whether its process is alive."""
        snaps: list[tuple[dict[str, Any], bool]] = []
        for path in sorted(self.directory.glob("ingestor-*.json")):
            try:
                snap = msgspec.json.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            snaps.append((snap, _alive(int(snap.get("pid", 0)))))
        return snaps


class _Snapshots(Protocol):
    def all_snapshots(self) -> list[tuple[dict[str, Any], bool]]: ...


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- rendering (scrape time only) --------------------------------------------------------------------------------


class _Merged:
    def __init__(self) -> None:
        self.fn: dict[tuple[str, str], dict[str, Any]] = {}
        self.worker: dict[str, int] = {}

    def add(self, snap: dict[str, Any], alive: bool) -> None:
        for key, value in snap.get("worker", {}).items():
            if key == "worker_inflight" and not alive:
                continue
            self.worker[key] = self.worker.get(key, 0) + value
        for f in snap.get("functions", []):
            k = (f["namespace"], f["function"])
            m = self.fn.get(k)
            if m is None:
                m = self.fn[k] = {
                    "codes": {}, "errors": {}, "dur": [0] * _NB, "rt": [0] * _NB, "req": [0] * _NS,
                    "resp": [0] * _NS, "dur_sum": 0.0, "rt_sum": 0.0, "ovh_sum": 0.0, "ovh_count": 0,
                    "inflight": 0, "cold_starts": 0, "req_sum": 0, "resp_sum": 0,
                }  # fmt: skip
            for name in ("codes", "errors"):
                for key, value in f[name].items():
                    m[name][key] = m[name].get(key, 0) + value
            for name in ("dur", "rt", "req", "resp"):
                m[name] = [a + b for a, b in zip(m[name], f[name], strict=True)]
            for name in ("dur_sum", "rt_sum", "ovh_sum", "ovh_count", "cold_starts", "req_sum", "resp_sum"):
                m[name] += f[name]
            if alive:
                m["inflight"] += f["inflight"]


def _cumulative(counts: list[int], bounds: Iterable[float]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(bounds, counts, strict=False):
        total += count
        out.append((_fmt(bound), total))
    out.append(("+Inf", total + counts[-1]))
    return out


def _fmt(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else f"{value}.0"


class IngestorCollector:
    """A prometheus-client collector over the merged snapshots of every worker."""

    def __init__(self, stats: _Snapshots) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            SummaryMetricFamily,
        )

        merged = _Merged()
        live = 0
        for snap, alive in self.stats.all_snapshots():
            merged.add(snap, alive)
            live += alive
        nf = ["namespace", "function"]
        inv = CounterMetricFamily(
            "litefunctions_invocations", "Sync calls answered, by HTTP status code", labels=[*nf, "code"]
        )
        gw_inv = CounterMetricFamily(
            "gateway_function_invocation", "OpenFaaS-compatible: calls by function and status code",
            labels=["function_name", "code"],
        )  # fmt: skip
        dur = HistogramMetricFamily(
            "litefunctions_invocation_duration_seconds", "Time from request to response, in the ingestor",
            labels=nf,
        )  # fmt: skip
        gw_dur = HistogramMetricFamily(
            "gateway_functions_seconds", "OpenFaaS-compatible: call duration by function", labels=["function_name"]
        )
        rt = HistogramMetricFamily(
            "litefunctions_function_duration_seconds",
            "Time the runtime spent on a call (its own measure, from the response envelope)", labels=nf,
        )  # fmt: skip
        ovh = SummaryMetricFamily(
            "litefunctions_platform_overhead_seconds",
            "Platform time of calls that reached a runtime: ingestor + broker, i.e. total minus function time",
            labels=nf,
        )
        inflight = GaugeMetricFamily("litefunctions_inflight", "Sync calls in flight in the ingestor", labels=nf)
        cold = CounterMetricFamily(
            "litefunctions_cold_starts", "First calls served by a new replica (counted once per replica)", labels=nf
        )
        errors = CounterMetricFamily(
            "litefunctions_errors", "Calls answered with an error, by the layer that failed and the reason",
            labels=[*nf, "layer", "reason"],
        )  # fmt: skip
        limited = CounterMetricFamily("litefunctions_rate_limited", "Calls refused by a rate limit", labels=nf)
        req = HistogramMetricFamily("litefunctions_request_bytes", "Request body sizes of forwarded calls", labels=nf)
        resp = HistogramMetricFamily("litefunctions_response_bytes", "Response body sizes", labels=nf)
        for (ns, fn), m in sorted(merged.fn.items()):
            lv = [ns, fn]
            gw_name = f"{fn}.{ns}"
            for code, n in sorted(m["codes"].items()):
                inv.add_metric([*lv, code], n)
                gw_inv.add_metric([gw_name, code], n)
            dbuckets = _cumulative(m["dur"], DURATION_BUCKETS)
            dur.add_metric(lv, dbuckets, m["dur_sum"])
            gw_dur.add_metric([gw_name], dbuckets, m["dur_sum"])
            rt.add_metric(lv, _cumulative(m["rt"], DURATION_BUCKETS), m["rt_sum"])
            ovh.add_metric(lv, m["ovh_count"], max(m["ovh_sum"], 0.0))
            inflight.add_metric(lv, m["inflight"])
            cold.add_metric(lv, m["cold_starts"])
            limited_n = 0
            for key, n in sorted(m["errors"].items()):
                layer, _, reason = key.partition("/")
                errors.add_metric([*lv, layer, reason], n)
                if reason == "rate_limited":
                    limited_n += n
            limited.add_metric(lv, limited_n)
            req.add_metric(lv, _cumulative(m["req"], SIZE_BUCKETS), m["req_sum"])
            resp.add_metric(lv, _cumulative(m["resp"], SIZE_BUCKETS), m["resp_sum"])
        yield from (inv, gw_inv, dur, gw_dur, rt, ovh, inflight, cold, errors, limited, req, resp)
        w = merged.worker
        yield CounterMetricFamily(
            "litefunctions_cache_hits", "Calls answered from the response cache", value=w.get("cache_hits", 0)
        )
        yield CounterMetricFamily(
            "litefunctions_cache_misses", "Cacheable calls not in the cache", value=w.get("cache_misses", 0)
        )
        yield CounterMetricFamily(
            "litefunctions_ingestor_overloaded",
            "Calls refused because a worker was at LF_MAX_INFLIGHT with a full queue", value=w.get("overloaded", 0),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "litefunctions_ingestor_inflight", "Calls in flight in all workers", value=w.get("worker_inflight", 0)
        )
        yield GaugeMetricFamily("litefunctions_ingestor_workers", "Ingestor worker processes alive", value=live)


def render(stats: _Snapshots) -> tuple[bytes, str]:
    """The text exposition of every worker's metrics, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(IngestorCollector(stats))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_dir(directory: str) -> None:
    """Create the snapshot directory and drop files of an earlier run (called before the workers start)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("ingestor-*"):
        with contextlib.suppress(OSError):
            old.unlink()
