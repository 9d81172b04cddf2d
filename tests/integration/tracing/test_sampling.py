"""A caller that sampled its trace out gets no span anywhere (ingestor, runtime, the handler's own), and its call
is served as usual; a sampled caller in the same run gets all three. Real nats-server, ingestor and runtime."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.dataplane.test_ingestor import put_route, start_ingestor, stop_ingestor, wait_served
from tests.integration.runtime.runtime_harness import RuntimeProcess
from tests.integration.tracing.test_tracing import (
    SYNC_HANDLER,
    TRACE_ID,
    Collector,
    collector,  # noqa: F401 (fixture)
    kv,  # noqa: F401 (fixture)
    otel_env,
    start_runtime,
)

pytestmark = pytest.mark.integration

UNSAMPLED_TRACE = "0af7651916cd43dd8448eb211c80319c"


async def test_a_sampled_out_caller_leaves_no_span(
    nats_url: str,
    tmp_path: Path,
    collector: Collector,  # noqa: F811
    kv: Any,  # noqa: F811
) -> None:
    env = otel_env(collector.endpoint)  # the default sampler: parent-based, always on for new traces
    ingestor = start_ingestor(nats_url, tmp_path / "ingestor.log", **env)
    function = f"trs-{uuid.uuid4().hex[:10]}"
    runtime: RuntimeProcess | None = None
    try:
        await put_route(kv, function)
        url = f"{ingestor.url}/function/{function}"
        async with httpx.AsyncClient(timeout=20) as http:
            await wait_served(http, url)
            runtime = start_runtime(nats_url, tmp_path / "fn", function, SYNC_HANDLER, env)
            runtime.wait_for("ready")
            dropped = await http.get(url, headers={"traceparent": f"00-{UNSAMPLED_TRACE}-00f067aa0ba902b7-00"})
            kept = await http.get(url, headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
            assert (dropped.status_code, dropped.text) == (200, "hi")
            assert (kept.status_code, kept.text) == (200, "hi")
    finally:
        stop_ingestor(ingestor)  # both flush their spans on the way out
        if runtime is not None:
            runtime.signal(signal.SIGTERM)
            runtime.exit_code()
            runtime.close()

    kept_id, dropped_id = kept.headers["x-call-id"], dropped.headers["x-call-id"]
    spans = collector.wait_for(lambda s: s.attr("faas.invocation_id") == kept_id or s.span.name == "inner", 3)
    assert {s.span.trace_id for s in spans} == {bytes.fromhex(TRACE_ID)}
    assert not [s for s in collector.spans if s.attr("faas.invocation_id") == dropped_id]
    assert not [s for s in collector.spans if s.span.trace_id == bytes.fromhex(UNSAMPLED_TRACE)]
