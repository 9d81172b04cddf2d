"""Entries of the LF_ROUTES key-value bucket: what an ingestor needs to serve a function.

Written by `lf dev` (and later the operator) as JSON under `fn.{namespace}.{name}`; every ingestor watches the
bucket and rebuilds its native routing table from the entries it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

import msgspec

from lf_core.contract.specs import AsyncRule, CacheRule, CronTrigger, Function, NatsTrigger, RateRule, Trigger
from lf_core.contract.subjects import event_trigger_route_key, function_route_key, trigger_route_key


class FunctionRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One function as the ingestor sees it. Fields added later have defaults, so older entries still decode;
    older ingestors ignore fields they do not know (msgspec's default)."""

    namespace: str
    name: str
    timeout_ms: int
    max_request_bytes: int
    max_response_bytes: int
    revision: str = ""
    """Changes on every deploy of new code or spec; the ingestors drop the function's cached answers."""
    max_inflight: int = 0
    """Calls one ingestor worker forwards at once (concurrency x replicas); more wait in a bounded queue. 0: no cap."""
    cache: CacheRule | None = None
    rate_limit: RateRule | None = None
    runtime: str = ""
    """The function's runtime ("" in older entries)."""
    expose_errors: bool = False
    """spec.errors.expose: the ingestor passes the handler's exception text to callers (else a generic message)."""
    concurrency: int = 0
    """Calls one replica runs at once (spec.concurrency; 0 in older entries)."""
    replicas: int = 0
    """Replicas the function is meant to run (spec.replicas; 0 in older entries)."""
    async_rule: AsyncRule = msgspec.field(default_factory=AsyncRule, name="async")
    """spec.async resolved: what the dispatcher acts on (attempts, backoff, max age, result TTL, concurrency)."""


def route_of(function: Function, revision: str = "") -> FunctionRoute:
    """The route entry of `function`; `revision` names the deployed code (lf dev: the folder's fingerprint)."""
    return FunctionRoute(
        namespace=function.namespace,
        name=function.name,
        timeout_ms=round(function.timeout_s * 1000),
        max_request_bytes=function.max_request_bytes,
        max_response_bytes=function.max_response_bytes,
        revision=revision,
        max_inflight=function.concurrency * max(function.replicas, 1),
        cache=function.cache,
        rate_limit=function.rate_limit,
        runtime=function.runtime,
        expose_errors=function.expose_errors,
        concurrency=function.concurrency,
        replicas=function.replicas,
        async_rule=function.async_,
    )


def route_key(route: FunctionRoute) -> str:
    return function_route_key(route.namespace, route.name)


def encode_route(route: FunctionRoute) -> bytes:
    return msgspec.json.encode(route)


def decode_route(data: bytes) -> FunctionRoute:
    """Raises msgspec.ValidationError / DecodeError on a malformed entry."""
    return msgspec.json.decode(data, type=FunctionRoute)


class HttpTriggerRoute(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP Trigger, under `tr.{namespace}.{name}`: requests for `methods` (empty: any) on `host` ("" any,
    exact, or "*.suffix") whose path matches `path` go to `function` in the same namespace, with that function's
    timeout and limits. It serves only while the function's own entry exists. Ingestors that predate triggers skip
    these keys (they log the entry as malformed), so the bucket stays readable by them."""

    kind: Literal["http"] = "http"
    namespace: str
    name: str
    function: str
    path: str
    host: str = ""
    methods: tuple[str, ...] = ()
    created: str = ""
    """The Trigger's metadata.creationTimestamp (RFC 3339, UTC): when its claim on `host` or its path prefix was
    made (`claim_order`). "" in entries written before claims: they sort first."""


def trigger_key(route: HttpTriggerRoute) -> str:
    return trigger_route_key(route.namespace, route.name)


def encode_trigger_route(route: HttpTriggerRoute) -> bytes:
    return msgspec.json.encode(route)


def decode_trigger_route(data: bytes) -> HttpTriggerRoute:
    """Raises msgspec.ValidationError / DecodeError on a malformed entry."""
    return msgspec.json.decode(data, type=HttpTriggerRoute)


class EventTriggerRoute(msgspec.Struct, frozen=True, kw_only=True):
    """A cron or NATS Trigger, under `et.{namespace}.{name}`: what the dispatcher runs (the ingestors skip these
    keys). `cron` or `nats` is the Trigger's spec as validated (`resolve_trigger`); each firing or message becomes
    an async call of `function` in the same namespace. `revision` changes with the spec, so a dispatcher knows to
    restart its schedule or subscription."""

    kind: Literal["cron", "nats"]
    namespace: str
    name: str
    function: str
    cron: CronTrigger | None = None
    nats: NatsTrigger | None = None
    revision: str = ""


def event_trigger_route(trigger: Trigger) -> EventTriggerRoute | None:
    """The entry of a cron or NATS Trigger (None for an HTTP one, which is an `HttpTriggerRoute`)."""
    if trigger.kind not in ("cron", "nats"):
        return None
    route = EventTriggerRoute(
        kind="cron" if trigger.kind == "cron" else "nats",
        namespace=trigger.namespace,
        name=trigger.name,
        function=trigger.function,
        cron=trigger.cron,
        nats=trigger.nats,
    )
    revision = hashlib.sha256(msgspec.json.encode(route)).hexdigest()[:16]
    return msgspec.structs.replace(route, revision=revision)


def event_trigger_key(route: EventTriggerRoute) -> str:
    return event_trigger_route_key(route.namespace, route.name)


def encode_event_trigger_route(route: EventTriggerRoute) -> bytes:
    return msgspec.json.encode(route)


def decode_event_trigger_route(data: bytes) -> EventTriggerRoute:
    """Raises msgspec.ValidationError / DecodeError on a malformed entry."""
    return msgspec.json.decode(data, type=EventTriggerRoute)


# -- who owns a host or a path prefix -----------------------------------------------------------------------------
#
# A host belongs to the namespace whose Trigger claimed it first, with every path on it (a host is an origin:
# cookies and scripts are shared by everything it serves). A wildcard `*.example.com` claims every host under it,
# and is refused if another namespace owns one of them. Triggers on any host ("") share that space by path: the
# first segment belongs to the namespace that claimed it first, and a pattern starting with a parameter
# (`/{x}/...`, `/{*rest}`) claims every first segment. Within one namespace triggers never conflict here (the
# routing table orders them, and refuses exact duplicates). "First" is `claim_order`: creation time, then
# namespace and name, so every reader (operator, each ingestor) decides alike.


def claim_order(route: HttpTriggerRoute) -> tuple[str, str, str]:
    return (route.created, route.namespace, route.name)


def _host_key(host: str) -> str:
    return host.lower().removesuffix(".")


def _first_segment(path: str) -> str | None:
    """The literal first segment of a pattern, or None when it is a parameter (it claims every first segment)."""
    first = path[1:].partition("/")[0]
    return None if first.startswith("{") else first


class Claims:
    """Hosts and any-host first segments claimed so far, each with the route that claimed it first. Add routes in
    `claim_order`; `conflict` names the earlier claim of another namespace a route overlaps, if any."""

    def __init__(self) -> None:
        self._hosts: dict[str, HttpTriggerRoute] = {}
        self._wildcards: dict[str, HttpTriggerRoute] = {}  # suffix with its leading dot
        self._segments: dict[str, HttpTriggerRoute] = {}
        self._every_segment: HttpTriggerRoute | None = None

    def conflict(self, route: HttpTriggerRoute) -> HttpTriggerRoute | None:
        ns = route.namespace
        if route.host:
            host = _host_key(route.host)
            if host.startswith("*."):
                suffix = host[1:]
                candidates = [r for h, r in self._hosts.items() if h.endswith(suffix)]
                candidates += [r for s, r in self._wildcards.items() if s.endswith(suffix) or suffix.endswith(s)]
            else:
                candidates = [self._hosts[host]] if host in self._hosts else []
                candidates += [r for s, r in self._wildcards.items() if host.endswith(s)]
        else:
            first = _first_segment(route.path)
            candidates = [self._every_segment] if self._every_segment is not None else []
            if first is None:
                candidates += self._segments.values()
            elif first in self._segments:
                candidates.append(self._segments[first])
        others = [r for r in candidates if r is not None and r.namespace != ns]
        return min(others, key=claim_order) if others else None

    def add(self, route: HttpTriggerRoute) -> None:
        """Record `route`'s claim (kept only where it is the first one)."""
        if route.host:
            host = _host_key(route.host)
            if host.startswith("*."):
                self._wildcards.setdefault(host[1:], route)
            else:
                self._hosts.setdefault(host, route)
            return
        first = _first_segment(route.path)
        if first is None:
            if self._every_segment is None:
                self._every_segment = route
        else:
            self._segments.setdefault(first, route)


def _before(other: HttpTriggerRoute, route: HttpTriggerRoute, stored: bool) -> bool:
    """Whether `other` (an entry of the bucket) claimed before `route`. Creation times have one-second resolution:
    within the same second an entry already in the bucket keeps its claim against a Trigger not yet written (the
    operator saw it first), and only between two written entries do namespace and name decide."""
    if other.created != route.created:
        return other.created < route.created
    return not stored or claim_order(other) < claim_order(route)


def claim_conflict(route: HttpTriggerRoute, others: Iterable[HttpTriggerRoute]) -> HttpTriggerRoute | None:
    """The entry of another namespace that claimed `route`'s host (or any-host path prefix) before it did, if any:
    then `route` must not be served. `others` are the bucket's entries; one under `route`'s own key means `route`
    is already written (see `_before`)."""
    mine = (route.namespace, route.name)
    stored = any((o.namespace, o.name) == mine for o in others)
    claims = Claims()
    for other in sorted((o for o in others if (o.namespace, o.name) != mine), key=claim_order):
        if not _before(other, route, stored):
            continue
        if claims.conflict(other) is None:  # an entry that itself lost its claim owns nothing
            claims.add(other)
    return claims.conflict(route)


def displaced_by(route: HttpTriggerRoute, others: Iterable[HttpTriggerRoute]) -> list[HttpTriggerRoute]:
    """The entries of other namespaces that overlap `route`'s claim and claimed after it (they lose it to `route`);
    `others` as for `claim_conflict`."""
    mine = (route.namespace, route.name)
    stored = any((o.namespace, o.name) == mine for o in others)
    claims = Claims()
    claims.add(route)
    return [
        o for o in others
        if o.namespace != route.namespace and not _before(o, route, stored) and claims.conflict(o) is route
    ]  # fmt: skip


def conflict_message(route: HttpTriggerRoute, owner: HttpTriggerRoute) -> str:
    """What a refused Trigger's condition says: which claim, owned by whom since when."""
    if route.host:
        what = f"host {route.host!r}"
        owned = f"host {owner.host!r}" if owner.host != route.host else "it"
    else:
        first = _first_segment(route.path)
        what = f"path {route.path!r} on any host" + (f" (prefix /{first})" if first is not None else "")
        owned = f"path {owner.path!r}"
    return (
        f"spec.http: {what} belongs to namespace {owner.namespace!r}, whose Trigger {owner.name!r} claimed {owned}"
        f" first (created {owner.created or 'before claims were recorded'}); use another host or path"
    )
