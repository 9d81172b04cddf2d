"""Observability conformance: every runtime's replica exports the Python runtime's `/metrics`, publishes a call's
stdout/stderr to LF_LOGS, and continues the caller's trace with its own span (docs/metrics.md).

Each runtime gets a replica of its conformance function of its own (`obs-{runtime}`, its own route), started like
the suite's (same binary, `runtime_env`) plus LF_METRICS_PORT and the standard OTEL_* variables pointing at an
in-process OTLP/HTTP collector (tests/harness/otlpcollector.py), so its counts and spans are this module's alone. The
ingestor of the suite has no tracing and trusts its callers (LF_TRACE_TRUST_INCOMING): the envelope carries the
caller's `traceparent` as it came, which is then the runtime span's parent.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import nats
import pytest
from conformance_harness import RUNTIMES, Replica, launch, load_function, route
from lf_controlplane.natsserver import NatsServer, free_port
from lf_core.contract.histograms import DURATION_BUCKETS
from nats.js.api import DeliverPolicy
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.otlpcollector import Collector, Exported, otel_env
from tests.harness.promtool import promtool_check
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.conformance

RUST_PENDING: dict[str, str] = {}
"""The one place Rust cases are expected to fail (strict xfail): remove a test's entry once the Rust runtime passes
it (none left: /metrics, LF_LOGS and spans all pass)."""

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT = "00f067aa0ba902b7"
NF = ("function", "namespace")
FAMILIES = {  # the Python runtime's (runtimes/python/src/lf_runtime/metrics.py): type and label names
    "litefunctions_runtime_calls": ("counter", (*NF, "outcome")),
    "litefunctions_runtime_handler_duration_seconds": ("histogram", NF),
    "litefunctions_runtime_inflight": ("gauge", NF),
    "litefunctions_runtime_cold_starts": ("counter", NF),
    "litefunctions_runtime_stuck_handlers": ("gauge", NF),
}
OUTCOMES = ("ok", "handler_error", "timeout", "busy", "bad_request", "too_large", "internal")


class Observed(Replica):
    """A replica with its /metrics port, and the broker it publishes to."""

    metrics_port: int = 0
    nats_url: str = ""

    def scrape(self) -> str:
        response = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        return response.text

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        out = {}
        for family in text_string_to_metric_families(self.scrape()):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def labels(self, **extra: str) -> frozenset[tuple[str, str]]:
        return frozenset({"namespace": "default", "function": self.function.name, **extra}.items())


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector.running() as collector:
        yield collector


@pytest.fixture(autouse=True)
def _rust_pending(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    reason = RUST_PENDING.get(request.node.originalname)
    if reason and callspec is not None and callspec.params.get("observed") == "rust":
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="module", params=RUNTIMES)
def observed(
    request: pytest.FixtureRequest,
    ingestor: str,
    nats_server: NatsServer,
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Observed]:
    replica = start_observed(request.param, f"obs-{request.param}", ingestor, nats_server, collector, tmp_path_factory)
    try:
        yield replica
    finally:
        replica.stop()


def start_observed(
    runtime: str,
    name: str,
    ingestor: str,
    nats_server: NatsServer,
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
    **env_extra: str,
) -> Observed:
    """A replica of `runtime`'s conformance function named `name` (routed), with /metrics and tracing on."""
    suite_function = load_function(runtime)
    function = msgspec.structs.replace(suite_function, name=name)
    argv, env = launch(runtime, function, tmp_path_factory.mktemp(name), nats_server.url)
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    port = free_port()
    env.update(otel_env(collector.endpoint), LF_METRICS_PORT=str(port), **env_extra)
    route(nats_server.url, ingestor, function)
    replica = Observed(runtime, function, argv, env, ingestor)
    replica.metrics_port, replica.nats_url = port, nats_server.url
    replica.start()
    return replica


# -- /metrics -------------------------------------------------------------------------------------------------------


def test_metrics_count_each_outcome_and_the_cold_start_once(observed: Observed) -> None:
    labels = observed.labels

    def calls(got: dict[Any, float], outcome: str) -> float:
        return got[("litefunctions_runtime_calls_total", labels(outcome=outcome))]

    duration_count = ("litefunctions_runtime_handler_duration_seconds_count", labels())
    before = observed.samples()
    assert httpx.get(observed.url("/inspect")).status_code == 200
    assert httpx.get(observed.url("/status/404")).status_code == 404  # the handler's own status: ok
    assert httpx.get(observed.url("/error")).status_code == 500
    assert httpx.get(observed.url("/panic")).status_code == 500
    assert httpx.get(observed.url("/sleep/3000"), timeout=10).status_code == 504
    text = observed.scrape()
    after = observed.samples()

    delta = {o: calls(after, o) - calls(before, o) for o in OUTCOMES}
    assert delta == {**dict.fromkeys(OUTCOMES, 0), "ok": 2, "handler_error": 2, "timeout": 1}
    assert after[duration_count] - before[duration_count] == 5
    inf = ("litefunctions_runtime_handler_duration_seconds_bucket", labels(le="+Inf"))
    assert after[inf] == after[duration_count]
    took = after[("litefunctions_runtime_handler_duration_seconds_sum", labels())]
    took -= before[("litefunctions_runtime_handler_duration_seconds_sum", labels())]
    assert 1.8 <= took < 10, "the timeout alone ran about 1.9 s"
    assert after[("litefunctions_runtime_cold_starts_total", labels())] == 1, "one cold start per replica"
    assert after[("litefunctions_runtime_inflight", labels())] == 0

    # the Python runtime's families, types, label names and buckets, nothing else
    found = {f.name: (f.type, f) for f in text_string_to_metric_families(text)}
    assert set(found) == set(FAMILIES)
    for name, (kind, label_names) in FAMILIES.items():
        family = found[name][1]
        assert family.type == kind, name
        for sample in family.samples:
            assert tuple(sorted(set(sample.labels) - {"le"})) == tuple(sorted(label_names)), sample
    bucket = "litefunctions_runtime_handler_duration_seconds_bucket"
    bounds = sorted(float(dict(lbl)["le"]) for (sample, lbl) in after if sample == bucket)
    assert bounds[:-1] == list(DURATION_BUCKETS) and math.isinf(bounds[-1])

    promtool_check(text)


# -- LF_LOGS --------------------------------------------------------------------------------------------------------


async def _records(url: str, subject: str) -> list[dict[str, Any]]:
    """Every LF_LOGS message on `subject` stored so far."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        out: list[dict[str, Any]] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.3)
            except nats.errors.TimeoutError:
                return out
            out.append(json.loads(msg.data))
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await nc.close()


def test_a_calls_stdout_and_stderr_are_one_lf_logs_record(observed: Observed) -> None:
    stuck = ("litefunctions_runtime_stuck_handlers", observed.labels())
    # A handler left running past its deadline (the timeout case) is still a running handler: the Go runtime
    # attributes os.Stdout only while one handler runs. Wait for it to return rather than race it.
    wait_for(lambda: observed.samples().get(stuck) == 0, 10, "no stuck handler")
    # The runtime logs a failed call (call_failed) on its own stderr, which is not the function's output: that
    # call has no record. A replica publishes a call's record before its answer, so once the next call's record
    # is in the stream, any record of this one would be too.
    failed = httpx.get(observed.url("/error"))
    assert failed.status_code == 500
    token = uuid.uuid4().hex[:12]
    began = time.time()
    response = httpx.get(observed.url(f"/print/{token}"))
    assert response.status_code == 200 and response.text == "printed"
    call_id = response.headers["x-call-id"]
    subject = f"lf.logs.default.{observed.function.name}"
    seen: list[dict[str, Any]] = []

    def mine() -> list[dict[str, Any]]:
        seen[:] = asyncio.run(_records(observed.nats_url, subject))
        return [r for r in seen if r["call_id"] == call_id]

    records = wait_for(mine, 10, f"the LF_LOGS record of {call_id}")
    assert len(records) == 1, records
    assert not [r for r in seen if r["call_id"] == failed.headers["x-call-id"]], "the runtime's own log was captured"
    record = records[0]
    assert (record["namespace"], record["function"]) == ("default", observed.function.name)
    assert record["replica"] and began - 1 <= record["ts"] <= time.time() + 1
    assert "dropped_bytes" not in record
    lines = [(line["stream"], line["text"]) for line in record["lines"]]
    assert ("stdout", f"stdout {token}") in lines and ("stderr", f"stderr {token}") in lines
    assert sorted(text for _, text in lines) == sorted(f"{what} {token}" for what in ("stdout", "stderr", "output"))
    assert set(record) == {"ts", "call_id", "namespace", "function", "replica", "lines"}


# -- traces ---------------------------------------------------------------------------------------------------------


def test_the_runtimes_span_continues_the_callers_trace(observed: Observed, collector: Collector) -> None:
    incoming = {"traceparent": f"00-{TRACE_ID}-{INCOMING_PARENT}-01", "tracestate": "vendor=x"}
    ok = httpx.get(observed.url("/inspect"), headers=incoming)
    failed = httpx.get(observed.url("/error"), headers=incoming)
    assert (ok.status_code, failed.status_code) == (200, 500)
    name = observed.function.name

    def span_of(call_id: str) -> Exported:
        found = collector.wait_for(lambda s: s.attr("faas.invocation_id") == call_id, 1)
        assert len(found) == 1, found
        return found[0]

    for response in (ok, failed):
        exported = span_of(response.headers["x-call-id"])
        span = exported.span
        assert exported.service == "litefunctions-runtime"
        assert span.trace_id == bytes.fromhex(TRACE_ID)
        assert span.parent_span_id == bytes.fromhex(INCOMING_PARENT), "the envelope's traceparent is the parent"
        assert span.trace_state == "vendor=x"
        assert span.kind == Span.SPAN_KIND_SERVER and span.name == name
        assert exported.attr("faas.trigger") == "http"
        assert exported.attr("faas.name") == name
        assert exported.attr("faas.coldstart") is False
        assert exported.attr("litefunctions.namespace") == "default"
        assert exported.attr("http.request.method") == "GET"
    good, bad = span_of(ok.headers["x-call-id"]), span_of(failed.headers["x-call-id"])
    assert good.attr("http.response.status_code") == 200
    assert good.span.status.code != Status.STATUS_CODE_ERROR
    assert bad.attr("http.response.status_code") == 500
    assert bad.span.status.code == Status.STATUS_CODE_ERROR and "conformance failure" in bad.span.status.message
    assert [e.name for e in bad.span.events] == ["exception"]

    # the replica's first call (no traceparent: a trace of its own) is its cold start
    first, second = (span_of(c) for c in observed.first_calls)
    assert (first.attr("faas.coldstart"), second.attr("faas.coldstart")) == (True, False)
    assert first.span.parent_span_id == b"" and first.span.trace_id != second.span.trace_id


def test_spans_are_exported_when_the_replica_stops(
    observed: Observed,
    ingestor: str,
    nats_server: NatsServer,
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With a 10-minute export delay, the spans of a replica's calls leave only when SIGTERM flushes them."""
    runtime = observed.runtime
    replica = start_observed(
        runtime, f"obs-stop-{runtime}", ingestor, nats_server, collector, tmp_path_factory,
        OTEL_BSP_SCHEDULE_DELAY="600000",
    )  # fmt: skip
    try:
        ids = set(replica.first_calls)
        assert not [s for s in collector.spans if s.attr("faas.invocation_id") in ids], "exported before the stop"
    finally:
        assert replica.stop() == 0
    found = collector.wait_for(lambda s: s.attr("faas.invocation_id") in ids, 2)
    assert {s.attr("faas.invocation_id") for s in found} == ids
