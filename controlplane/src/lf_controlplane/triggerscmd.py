"""`lf triggers list` and `lf trigger fire NAME`: Triggers as LF_ROUTES holds them (`tr.` HTTP, `et.` cron and NATS
entries) with the state the dispatcher records in LF_TRIGGERS; a manual run is an async call with a fresh id
(`lf_core.asynccalls.triggered`, which the dispatcher's runs go through too)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import typer
from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.contract.names import DEFAULT_NAMESPACE, InvalidName, check_name
from lf_core.contract.routes import (
    EventTriggerRoute,
    FunctionRoute,
    HttpTriggerRoute,
    decode_event_trigger_route,
    decode_route,
    decode_trigger_route,
)
from lf_core.contract.subjects import (
    ROUTES_BUCKET,
    event_trigger_route_key,
    function_route_key,
    trigger_state_key,
)
from lf_core.contract.triggerstate import TriggerState, rfc3339
from rich.console import Console
from rich.table import Table

from lf_controlplane.deadletters import AsJson, NatsUrl, _run

triggers_app = typer.Typer(help="Triggers: cron schedules, NATS subjects and HTTP routes.", no_args_is_help=True)
trigger_app = typer.Typer(help="One Trigger: fire it by hand.", no_args_is_help=True)
console = Console()

Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="only this namespace")]


class Listed(msgspec.Struct, kw_only=True):
    namespace: str
    name: str
    kind: str
    function: str
    source: str
    """The schedule (with its time zone), the subject (and stream), or the HTTP host and path."""
    last_fire: str = ""
    next_fire: str = ""
    last_call_id: str = ""
    last_error: str = ""


async def _keys(request: jetstream.Requester, bucket: str, prefix: str) -> list[str]:
    try:
        info = await jetstream.api(
            request, f"$JS.API.STREAM.INFO.KV_{bucket}", {"subjects_filter": f"$KV.{bucket}.{prefix}>"}
        )
    except jetstream.JetStreamError as exc:
        if exc.err_code == jetstream.ERR_STREAM_NOT_FOUND:
            return []
        raise
    head = f"$KV.{bucket}."
    return sorted(s[len(head) :] for s in (info.get("state") or {}).get("subjects") or {})


def _source(route: EventTriggerRoute | HttpTriggerRoute) -> str:
    if isinstance(route, HttpTriggerRoute):
        return f"{route.host or '*'}{route.path}" + (f" {','.join(route.methods)}" if route.methods else "")
    if route.cron is not None:
        return f"{route.cron.schedule} ({route.cron.timezone}, {route.cron.concurrency_policy})"
    if route.nats is not None:
        return route.nats.subject + (f" (stream {route.nats.stream})" if route.nats.stream else "")
    return ""


async def list_triggers(request: jetstream.Requester, namespace: str | None = None) -> list[Listed]:
    """Every Trigger entry of LF_ROUTES (of `namespace`, if given) with its recorded state."""
    states = {(s.namespace, s.name): s for s in await triggered.list_states(request)}
    listed = []
    for prefix in ("et.", "tr."):
        for key in await _keys(request, ROUTES_BUCKET, prefix + (f"{namespace}." if namespace else "")):
            found = await jetstream.kv_get(request, ROUTES_BUCKET, key)
            if found is None:
                continue
            try:
                route: EventTriggerRoute | HttpTriggerRoute = (
                    decode_event_trigger_route(found[0]) if prefix == "et." else decode_trigger_route(found[0])
                )
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            state = states.get((route.namespace, route.name)) or TriggerState(
                namespace=route.namespace, name=route.name, kind=route.kind
            )
            listed.append(
                Listed(
                    namespace=route.namespace,
                    name=route.name,
                    kind=route.kind,
                    function=route.function,
                    source=_source(route),
                    last_fire=rfc3339(state.last_fire),
                    next_fire=rfc3339(state.next_fire),
                    last_call_id=state.last_call_id,
                    last_error=state.last_error,
                )  # fmt: skip
            )
    return sorted(listed, key=lambda t: (t.namespace, t.name))


@triggers_app.command("list")
def list_(url: NatsUrl = None, namespace: Namespace = None, as_json: AsJson = False) -> None:
    """Triggers: kind, function, schedule or subject, last fire, next fire, last error."""
    if namespace is not None:
        _check(namespace, "namespace")
    rows = _run(url, lambda request: list_triggers(request, namespace))
    if as_json:
        print(json.dumps([msgspec.to_builtins(r) for r in rows], indent=2))
        return
    if not rows:
        console.print("no triggers")
        return
    table = Table("NAMESPACE", "NAME", "KIND", "FUNCTION", "SCHEDULE / SUBJECT", "LAST FIRE", "NEXT FIRE", "LAST ERROR")
    for r in rows:
        table.add_row(r.namespace, r.name, r.kind, r.function, r.source, r.last_fire, r.next_fire, r.last_error)
    console.print(table)


async def fire(request: jetstream.Requester, namespace: str, name: str, body: str | None = None) -> dict[str, Any]:
    """A manual run of a cron or NATS Trigger: an async call of its function with a fresh call id (the cron spec's
    body and headers unless `body` is given). LookupError when the Trigger or its function is unknown."""
    found = await jetstream.kv_get(request, ROUTES_BUCKET, event_trigger_route_key(namespace, name))
    if found is None:
        raise LookupError(f"no cron or NATS trigger {name!r} in namespace {namespace!r}")
    route = decode_event_trigger_route(found[0])
    entry = await jetstream.kv_get(request, ROUTES_BUCKET, function_route_key(namespace, route.function))
    if entry is None:
        raise LookupError(f"trigger {name!r} calls function {route.function!r}, which is not deployed in {namespace!r}")
    function: FunctionRoute = decode_route(entry[0])
    headers: list[tuple[str, str]] = []
    payload = b""
    if route.cron is not None:
        headers = [(k.lower(), v) for k, v in route.cron.headers.items()]
        payload = route.cron.body.encode()
    if body is not None:
        payload = body.encode()
    headers.append((triggered.TRIGGER_HEADER, route.name))
    call_id = triggered.fresh_call_id("fire")
    await triggered.submit(
        request, namespace=namespace, function=route.function, call_id=call_id, body=payload, headers=headers,
        timeout_ms=function.timeout_ms,
    )  # fmt: skip
    return {
        "callId": call_id,
        "trigger": name,
        "namespace": namespace,
        "function": route.function,
        "statusUrl": f"/invocations/{call_id}",
        "state": trigger_state_key(namespace, name),
    }


@trigger_app.command("fire")
def fire_(
    name: Annotated[str, typer.Argument(help="The Trigger's name.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="its namespace")] = DEFAULT_NAMESPACE,
    body: Annotated[str | None, typer.Option("--body", help="the call's body (default: the cron spec's)")] = None,
    url: NatsUrl = None,
) -> None:
    """Run a cron or NATS Trigger now: an async call of its function with a fresh id (printed)."""
    _check(name, "trigger name")
    _check(namespace, "namespace")
    answer = _run(url, lambda request: fire(request, namespace, name, body))
    console.print(
        f"queued call {answer['callId']} of {answer['function']} (status: lf invoke or GET {answer['statusUrl']})"
    )


def _check(value: str, what: str) -> None:
    try:
        check_name(value, what)
    except InvalidName as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
