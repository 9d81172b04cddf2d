"""The Python runtime's `/metrics` (LF_METRICS_PORT): exact counts after known calls, valid for promtool."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from lf_controlplane.natsserver import free_port
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families
from runtime_harness import Start, call

from tests.harness.promtool import promtool_check

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_runtime_metrics_count_known_calls(start_runtime: Start, nc: Client, is_async: bool) -> None:
    port = free_port()
    runtime = start_runtime(is_async=is_async, env={"LF_METRICS_PORT": str(port), "LF_STUCK_LIMIT": "5"})
    fn = runtime.function
    assert runtime.wait_for("metrics_listening")["url"] == f"http://127.0.0.1:{port}/metrics"
    before = samples(scrape(port))
    labels = {("namespace", "default"), ("function", fn)}
    cold = ("litefunctions_runtime_cold_starts_total", frozenset(labels))
    assert before[cold] == 0, "no call yet: no cold start"

    for _ in range(3):
        assert (await call(nc, fn, "/text")).status == 200
    for _ in range(2):
        assert (await call(nc, fn, "/raise")).status == 500
    assert (await call(nc, fn, "/sleep", query="s=2", budget_ms=300)).status == 504

    text = scrape(port)
    got = samples(text)

    def calls(outcome: str) -> float:
        return got[("litefunctions_runtime_calls_total", frozenset({*labels, ("outcome", outcome)}))]

    assert (calls("ok"), calls("handler_error"), calls("timeout"), calls("busy"), calls("internal")) == (3, 2, 1, 0, 0)
    assert got[("litefunctions_runtime_handler_duration_seconds_count", frozenset(labels))] == 6
    assert got[("litefunctions_runtime_handler_duration_seconds_bucket", frozenset({*labels, ("le", "+Inf")}))] == 6
    assert got[("litefunctions_runtime_handler_duration_seconds_sum", frozenset(labels))] >= 0.2
    assert got[cold] == 1, "the cold start is counted once"
    assert got[("litefunctions_runtime_inflight", frozenset(labels))] == 0
    stuck = got[("litefunctions_runtime_stuck_handlers", frozenset(labels))]
    assert stuck == (0 if is_async else 1), "a sync handler past its deadline is stuck until it returns"
    assert not [name for name, _ in got if name.startswith("litefunctions_async")], "async calls: the dispatcher's"

    promtool_check(text)

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert missing.value.code == 404
    missing.value.close()
