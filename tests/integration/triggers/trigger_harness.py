"""The trigger service as real processes (`python -m lf_dispatcher.triggers`: the part of the dispatcher that fires
Triggers, without the async-call runner, so what it stores stays in LF_ASYNC to be counted), and the reads the
tests make of LF_ROUTES, LF_ASYNC and LF_TRIGGERS over nats-py."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lf_core.asynccalls import streams as js
from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.contract.routes import (
    EventTriggerRoute,
    encode_event_trigger_route,
    encode_route,
    event_trigger_key,
    route_key,
)
from lf_core.contract.subjects import ROUTES_BUCKET
from lf_core.contract.triggerstate import TriggerState
from lf_native import RequestEnvelope, decode_request
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError

from tests.harness.processes import clean_environ, stop_process
from tests.harness.routes import function_route
from tests.harness.waiting import wait_for


@dataclass
class TriggerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                record = json.loads(line)
                if record.get("event") == name:
                    out.append(record)
        return out

    def wait_for(self, name: str, timeout: float = 20) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            assert self.process.poll() is None, f"the trigger service exited:\n{self.log.read_text()[-3000:]}"
            events = self.events(name)
            return events[0] if events else None

        return wait_for(found, timeout, f"trigger service event {name}")  # type: ignore[no-any-return]

    def stop(self) -> int:
        return stop_process(self.process)


def start_triggers(nats_url: str, log: Path, **env: str) -> TriggerProcess:
    environment = clean_environ(LF_NATS_URL=nats_url, PYTHONUNBUFFERED="1", **env)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "lf_dispatcher.triggers"], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    service = TriggerProcess(process, log)
    try:
        service.wait_for("triggers_ready", 30)
    except BaseException:
        service.stop()
        raise
    return service


class Bus:
    """The tests' nats-py connection: write entries, read what the trigger service stored."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.request = jetstream.nats_py_requester(nc)

    async def routes(self) -> Any:
        jsc = self.nc.jetstream()
        try:
            return await jsc.key_value(ROUTES_BUCKET)
        except BucketNotFoundError:
            return await jsc.create_key_value(KeyValueConfig(bucket=ROUTES_BUCKET, history=1))

    async def put_function(self, namespace: str, name: str) -> None:
        route = function_route(name, namespace=namespace)
        await (await self.routes()).put(route_key(route), encode_route(route))

    async def put_trigger(self, route: EventTriggerRoute) -> None:
        await (await self.routes()).put(event_trigger_key(route), encode_event_trigger_route(route))

    async def delete_trigger(self, route: EventTriggerRoute) -> None:
        await (await self.routes()).delete(event_trigger_key(route))

    async def calls(self, namespace: str, function: str) -> dict[str, int]:
        """LF_ASYNC's subjects of the function's calls, each with its count of messages (one call per subject)."""
        await js.ensure_all(self.request)
        info = await jetstream.api(
            self.request,
            f"$JS.API.STREAM.INFO.{js.ASYNC_STREAM}",
            {"subjects_filter": js.async_filter(namespace, function)},
        )
        subjects: dict[str, int] = (info.get("state") or {}).get("subjects") or {}
        return dict(subjects)

    async def envelope(self, subject: str) -> RequestEnvelope:
        reply = await jetstream.api(
            self.request, f"$JS.API.STREAM.MSG.GET.{js.ASYNC_STREAM}", {"last_by_subj": subject}
        )
        return decode_request(base64.b64decode(reply["message"]["data"]))

    async def state(self, namespace: str, name: str) -> TriggerState | None:
        return await triggered.read_state(self.request, f"{namespace}.{name}")


def header(envelope: RequestEnvelope, name: str) -> str:
    return next((v for k, v in envelope.headers if k == name), "")
