"""spec.async.sink end to end: an async call through the real ingestor, a real dispatcher process and a Python
runtime on the session's nats-server; its result reaches the sink as a signed CloudEvent (read back by the SDK)
and the caller's X-Callback-Url as a signed record view; both outcomes land in the record."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from callback_harness import Behaviour, ReceiverServer, answer
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from lf_controlplane.natsserver import NatsServer
from lf_core.callbackkeys import KeyRing
from lf_core.contract.specs import AsyncRule
from lf_dispatcher.signing import verify

from tests.harness.dispatcher import start_dispatcher
from tests.harness.ingestor import start_ingestor
from tests.harness.routes import function_route, put_routes
from tests.harness.runtime import RuntimeProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration

HANDLER = """
from lf_runtime import Response

def handle(req):
    if req.path.strip("/") == "bad":
        return Response("no such thing", status=400, headers={"content-type": "text/plain"})
    return {"echo": req.body.decode()}
"""


def test_results_reach_the_sink_as_cloudevents_and_the_callback_as_records(
    nats_server: NatsServer, receiver_factory: Callable[[Behaviour], ReceiverServer], tmp_path: Path
) -> None:
    sink, hook = receiver_factory(answer(202)), receiver_factory(answer(200))
    name = f"s-{uuid.uuid4().hex[:8]}"
    keys = tmp_path / "callback-keys"
    route = msgspec.structs.replace(
        function_route(name), concurrency=4, replicas=1, async_rule=AsyncRule(max_attempts=2, sink=sink.url)
    )
    put_routes(nats_server.url, route)
    ingestor = start_ingestor(nats_server.url, tmp_path / "ingestor.log", LF_CALLBACK_ALLOW_PRIVATE="true")
    dispatcher = start_dispatcher(
        nats_server.url, tmp_path / "dispatcher.log", LF_CALLBACK_ALLOW_PRIVATE="true",
        LF_CALLBACK_KEYS_DIR=str(keys),
    )  # fmt: skip
    runtime = RuntimeProcess.start_python(nats_server.url, name, tmp_path / name, {"handler.py": HANDLER})
    try:
        dispatcher.wait_for("async_ready", 20, consumer=f"default_{name}")
        submitted = {}
        for path in ("ok", "bad"):
            response = httpx.post(
                f"{ingestor.url}/async-function/{name}/{path}", content=b"hi", headers={"X-Callback-Url": hook.url}
            )
            assert response.status_code == 202, response.text
            submitted[path] = response.headers["x-call-id"]

        def settled(call_id: str) -> dict[str, object] | None:
            view: dict[str, object] = httpx.get(f"{ingestor.url}/invocations/{call_id}").json()
            done = view.get("sink") not in (None, "pending") and view.get("callback") not in (None, "pending")
            return view if done else None

        views = {path: wait_for(lambda c=call_id: settled(c), 30, f"{path}'s deliveries") for path, call_id in
                 submitted.items()}  # fmt: skip
    finally:
        runtime.stop()
        dispatcher.stop()
        ingestor.stop()
    assert views["ok"]["status"] == "succeeded" and views["bad"]["status"] == "dead"
    assert all(v["sink"] == "delivered" and v["callback"] == "delivered" for v in views.values()), views

    secrets = [k.hmac_key for k in KeyRing(keys, create=False).signing_keys("default")]
    events = {}
    for _, headers, body in sink.received.requests:
        assert verify(headers["lf-signature"], body, secrets, now=time.time())
        event = from_binary_event(HTTPMessage(headers=headers, body=body))
        events[event.get_id()] = event
    ok, bad = events[submitted["ok"]], events[submitted["bad"]]
    assert ok.get_type() == "dev.litefunctions.call.succeeded" and ok.get_data() == {"echo": "hi"}
    assert ok.get_source() == f"/litefunctions/default/{name}"
    assert bad.get_type() == "dev.litefunctions.call.dead" and bad.get_data() == "no such thing"
    hooked = {json.loads(body)["callId"]: headers for _, headers, body in hook.received.requests}
    assert set(hooked) == set(submitted.values())
    assert all(h["lf-call-id"] in hooked and "lf-signature" in h for h in hooked.values())
