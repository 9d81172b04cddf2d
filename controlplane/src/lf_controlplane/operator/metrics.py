"""The operator's own `/metrics` (LF_OPERATOR_METRICS_PORT > 0; docs/metrics.md "Operator").

- `litefunctions_replicas_desired{namespace,function}`: the replicas the operator asked for in the Function's
  Deployment (spec.replicas, which the scale subresource sets, else scaling.min; with `scaling.mode: keda` the
  Deployment's own count as applied), set on every reconcile, removed with the Function.
- `litefunctions_operator_reconciles_total{kind,outcome}` and `litefunctions_operator_reconcile_duration_seconds
  {kind}`: every handler run, `kind` the resource (Function, Trigger, Deployment), `outcome` one of OUTCOMES.
- `litefunctions_functions{phase}`: Functions by the phase the operator last wrote (every phase, 0 included).

Labels are bounded: namespace/function of existing Functions, fixed kinds, outcomes and phases. prometheus-client
serves it from its own thread, apart from kopf's liveness endpoint (LF_OPERATOR_LIVENESS).
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections import Counter as Tally
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily

from lf_controlplane.operator.status import PHASES

KINDS = ("Function", "Trigger", "Deployment")
OUTCOMES = ("ok", "invalid", "retry", "failed", "error")
"""ok; invalid: the spec was refused (no retry); retry: a temporary error (kopf retries); failed: a permanent
error; error: anything else (kopf retries with its backoff)."""
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

P = ParamSpec("P")
R = TypeVar("R")


class _Run:
    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = "ok"


_current: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("lf_operator_run", default=None)


class OperatorMetrics:
    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.replicas_desired = Gauge(
            "litefunctions_replicas_desired",
            "Replicas the operator asked for in the Function's Deployment",
            ["namespace", "function"],
            registry=self.registry,
        )
        self.reconciles = Counter(
            "litefunctions_operator_reconciles",
            "Operator handler runs, by resource kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "litefunctions_operator_reconcile_duration_seconds",
            "Time an operator handler took, by resource kind",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        for kind in KINDS:  # every series from the start, so rate() sees the first increment
            self.duration.labels(kind)
            for outcome in OUTCOMES:
                self.reconciles.labels(kind, outcome)
        self.phases: dict[tuple[str, str], str] = {}
        self.registry.register(_Phases(self))
        if process:
            ProcessCollector(registry=self.registry)
        self._server: Any = None

    # -- what the handlers record ------------------------------------------------------------------------------

    def set_desired(self, namespace: str, function: str, replicas: int | None) -> None:
        if replicas is None:
            self._remove(self.replicas_desired, namespace, function)
        else:
            self.replicas_desired.labels(namespace, function).set(replicas)

    def set_phase(self, namespace: str, function: str, phase: str) -> None:
        if phase:
            self.phases[(namespace, function)] = phase

    def forget(self, namespace: str, function: str) -> None:
        """A Function is gone: drop its series."""
        self._remove(self.replicas_desired, namespace, function)
        self.phases.pop((namespace, function), None)

    @staticmethod
    def _remove(metric: Gauge, *labels: str) -> None:
        try:
            metric.remove(*labels)
        except KeyError:
            pass

    def measured(
        self, kind: str
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
        """Count and time every run of an async handler (innermost decorator, under kopf's)."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {KINDS}")

        def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
            @functools.wraps(fn)
            async def run(*args: P.args, **kwargs: P.kwargs) -> R:
                current = _Run()
                token = _current.set(current)
                started = time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except kopf.TemporaryError:
                    current.outcome = "retry"
                    raise
                except kopf.PermanentError:
                    current.outcome = "failed"
                    raise
                except Exception:
                    current.outcome = "error"
                    raise
                finally:
                    _current.reset(token)
                    self.duration.labels(kind).observe(time.perf_counter() - started)
                    self.reconciles.labels(kind, current.outcome).inc()
                return result

            return run

        return decorate

    # -- the endpoint ------------------------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> int:
        """Start `GET /metrics` on host:port (a thread of prometheus-client); the port bound is returned."""
        server, _thread = start_http_server(port, host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def mark_invalid() -> None:
    """The running handler refused the object's spec (counted as outcome `invalid`, not `ok`)."""
    current = _current.get()
    if current is not None:
        current.outcome = "invalid"


class _Phases:
    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Any]:
        yield GaugeMetricFamily(
            "litefunctions_functions", "Functions by the phase the operator wrote", labels=["phase"]
        )

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            "litefunctions_functions", "Functions by the phase the operator wrote", labels=["phase"]
        )
        tally = Tally(dict(self.metrics.phases).values())
        for phase in PHASES:
            family.add_metric([phase], tally.get(phase, 0))
        yield family


METRICS = OperatorMetrics()
"""The operator process's metrics (the handlers record into it; `lf operator` serves it when configured)."""
