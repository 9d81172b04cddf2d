"""The ingestor's route table: per-function targets built once per change, the native table over them, and the
watcher that keeps both in step with the JetStream KV bucket LF_ROUTES.

Serving only reads `Routes.table`, a reference to an immutable native `RoutingTable`; the watcher builds a new
table from all entries on every change and swaps the reference, so a lookup never waits for the watcher and never
sees a half-built table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import msgspec
from lf_core.contract.names import InvalidName
from lf_core.contract.paths import reserved_path_error
from lf_core.contract.routes import (
    Claims,
    FunctionRoute,
    HttpTriggerRoute,
    claim_order,
    conflict_message,
    decode_route,
    decode_trigger_route,
)
from lf_core.contract.specs import RateRule
from lf_core.contract.subjects import (
    EVENT_TRIGGER_PREFIX,
    ROUTES_BUCKET,
    function_route_key,
    invoke_subject,
    trigger_route_key,
)
from lf_native import RoutingTable
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from lf_dataplane.calls.caching import CachePolicy
from lf_dataplane.calls.overload import Gate

log = logging.getLogger(__name__)

_DELETES = ("DEL", "PURGE")
_TRIGGER_PREFIX = "tr."

Entry = FunctionRoute | HttpTriggerRoute


class FunctionTarget:
    """What the hot path needs about one function, computed when the table is built, never per request."""

    __slots__ = (
        "cache", "expose_errors", "gate", "label", "max_request_bytes", "max_response_bytes", "name", "namespace",
        "rate", "rate_key", "revision", "subject", "timeout_s",
    )  # fmt: skip

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        timeout_s: float,
        max_request_bytes: int,
        max_response_bytes: int,
        revision: str = "",
        gate: Gate | None = None,
        cache: CachePolicy | None = None,
        rate: RateRule | None = None,
        expose_errors: bool = False,
    ) -> None:
        self.expose_errors = expose_errors
        """Callers get the handler's exception text (spec.errors.expose); else the generic message (http.mapping)."""
        self.namespace = namespace
        self.name = name
        self.label = f"{name}.{namespace}"
        self.subject = invoke_subject(namespace, name)  # validates both names
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes
        self.revision = revision
        self.gate = gate
        """The function's in-flight cap in this worker (None: no cap); kept across table rebuilds."""
        self.cache = cache
        self.rate = rate
        self.rate_key = f"{self.label}/"
        """Prefix of the rate limiter's keys: the whole key for `key: function`, plus the client IP for `ip`."""

    def __repr__(self) -> str:
        return f"FunctionTarget({self.label}, timeout_s={self.timeout_s:g})"


class Defaults(msgspec.Struct, frozen=True, kw_only=True):
    """Limits for entries that carry none (a zero or negative field)."""

    timeout_s: float = 60.0
    max_request_bytes: int = 6 * 1024 * 1024
    max_response_bytes: int = 6 * 1024 * 1024
    function_queue: int = 1024
    """Calls that may wait for a function's in-flight cap in one worker."""


def target_of(route: FunctionRoute, defaults: Defaults, gates: dict[str, Gate] | None = None) -> FunctionTarget:
    """Raises InvalidName if the entry's names are not DNS-1123 labels.

    `gates` keeps each function's Gate across rebuilds (resized to the entry's cap), so calls in flight stay
    counted when an unrelated route changes.
    """
    label = f"{route.name}.{route.namespace}"
    gate = None
    if route.max_inflight > 0:
        if gates is None:
            gate = Gate(route.max_inflight, defaults.function_queue)
        else:
            gate = gates.get(label)
            if gate is None:
                gate = gates[label] = Gate(route.max_inflight, defaults.function_queue)
            else:
                gate.resize(route.max_inflight, defaults.function_queue)
    return FunctionTarget(
        route.namespace,
        route.name,
        timeout_s=route.timeout_ms / 1000 if route.timeout_ms > 0 else defaults.timeout_s,
        max_request_bytes=route.max_request_bytes if route.max_request_bytes > 0 else defaults.max_request_bytes,
        max_response_bytes=(route.max_response_bytes if route.max_response_bytes > 0 else defaults.max_response_bytes),
        revision=route.revision,
        gate=gate,
        cache=CachePolicy(label, route.revision, route.cache) if route.cache is not None else None,
        rate=route.rate_limit,
        expose_errors=route.expose_errors,
    )


def build_table(routes: Iterable[Entry], defaults: Defaults, gates: dict[str, Gate] | None = None) -> RoutingTable:
    """A native table serving each function at `/function/{name}[.{namespace}]` and each HTTP Trigger at its own
    host and path (with its function's target); bad entries are logged and skipped, and so is a trigger whose
    function has no entry.

    Defence in depth behind the operator (which refuses these Triggers with a condition): a trigger on one of the
    platform's reserved paths is skipped, and so is one whose host or any-host path prefix another namespace
    claimed first (`lf_core.contract.routes.Claims`, in creation order), each with a warning."""
    targets: dict[tuple[str, str], FunctionTarget] = {}
    triggers: list[HttpTriggerRoute] = []
    for route in routes:
        if isinstance(route, HttpTriggerRoute):
            triggers.append(route)
            continue
        try:
            target = target_of(route, defaults, gates)
        except InvalidName as exc:
            log.warning("route entry skipped", extra={"fields": {"reason": str(exc)}})
            continue
        targets[(target.namespace, target.name)] = target
    functions = [(ns, name, target) for (ns, name), target in targets.items()]
    entries = []
    claims = Claims()
    for trigger in sorted(triggers, key=claim_order):
        refused = reserved_path_error(trigger.path, "path")
        owner = None if refused is not None else claims.conflict(trigger)
        if owner is not None:
            refused = conflict_message(trigger, owner)
        if refused is not None:
            fields = {"trigger": f"{trigger.namespace}/{trigger.name}", "reason": refused}
            log.warning("trigger route refused", extra={"fields": fields})
            continue
        claims.add(trigger)
        routed = targets.get((trigger.namespace, trigger.function))
        if routed is None:
            log.debug("trigger route waits for its function", extra={"fields": {"trigger": trigger.name}})
            continue
        entries.append((",".join(trigger.methods) or "*", trigger.host, trigger.path, routed))
    try:
        return RoutingTable.build(functions, entries)
    except ValueError:
        pass
    kept: list[tuple[str, str, str, FunctionTarget]] = []
    for entry in entries:  # one entry is bad (a pattern, or the same route twice): keep every other one
        try:
            RoutingTable.build([], [*kept, entry])
        except ValueError as exc:
            log.warning("trigger route skipped", extra={"fields": {"path": entry[2], "reason": str(exc)}})
            continue
        kept.append(entry)
    return RoutingTable.build(functions, kept)


def parse_entry(key: str, value: bytes) -> Entry | None:
    """The route in a KV entry, or None (logged) when it is malformed or filed under the wrong key."""
    route: Entry
    try:
        if key.startswith(_TRIGGER_PREFIX):
            route = decode_trigger_route(value)
            expected = trigger_route_key(route.namespace, route.name)
        else:
            route = decode_route(value)
            expected = function_route_key(route.namespace, route.name)
    except (msgspec.DecodeError, msgspec.ValidationError, InvalidName) as exc:
        log.warning("route entry skipped", extra={"fields": {"key": key, "reason": str(exc)}})
        return None
    if key != expected:
        log.warning("route entry skipped", extra={"fields": {"key": key, "reason": f"expected key {expected}"}})
        return None
    return route


class Routes:
    """Holds the current native table; `table` is None until the bucket's initial content is loaded.

    `on_redeploy(label)` is called for every function whose entry changed revision or went away (the response
    cache drops its answers).
    """

    def __init__(self, defaults: Defaults | None = None, *, on_redeploy: Callable[[str], object] | None = None) -> None:
        self.defaults = defaults or Defaults()
        self.table: RoutingTable | None = None
        self.gates: dict[str, Gate] = {}
        self.on_redeploy = on_redeploy
        self._entries: dict[str, Entry] = {}
        self._loaded = asyncio.Event()

    @property
    def loaded(self) -> bool:
        return self.table is not None

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    def replace_all(self, entries: Mapping[str, Entry]) -> None:
        for key, old in self._entries.items():
            self._check_redeploy(old, entries.get(key))
        self._entries = dict(entries)
        self._rebuild()
        if self.table is None:  # the initial content itself could not be built: serve no function
            self.table = RoutingTable.build([])
        self._loaded.set()

    def put(self, key: str, route: Entry | None) -> None:
        """Apply one change (None deletes) and swap in a rebuilt table."""
        old = self._entries.get(key)
        if old is not None:
            self._check_redeploy(old, route)
        if route is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = route
        self._rebuild()

    def _check_redeploy(self, old: Entry, new: Entry | None) -> None:
        if not isinstance(old, FunctionRoute) or not (new is None or isinstance(new, FunctionRoute)):
            return  # trigger entries carry no revision: their function's entry does
        if new is not None and new.revision == old.revision and new.cache == old.cache:
            return
        label = f"{old.name}.{old.namespace}"
        if new is None:
            self.gates.pop(label, None)
        if self.on_redeploy is not None:
            self.on_redeploy(label)

    def _rebuild(self) -> None:
        try:
            table = build_table(self._entries.values(), self.defaults, self.gates)
        except ValueError as exc:  # the native builder refused: keep serving the previous table
            log.error("route table rebuild failed", extra={"fields": {"reason": str(exc)}})
            return
        self.table = table  # one reference assignment: readers see the old or the new table, whole
        log.debug("route table swapped", extra={"fields": {"functions": len(table)}})


async def open_bucket(js: JetStreamContext, *, replicas: int = 1) -> KeyValue:
    """The LF_ROUTES bucket, created with `replicas` if missing (history 1: only the current entry matters)."""
    try:
        return await js.key_value(ROUTES_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=ROUTES_BUCKET, history=1, replicas=replicas))


async def watch_routes(
    js: JetStreamContext, routes: Routes, *, restart_after_s: float = 1.0, replicas: int = 1
) -> None:
    """Keep `routes` in step with LF_ROUTES forever; cancel the task to stop.

    Each (re)start reads the bucket's whole current content into a fresh map and swaps it in at once, so
    entries deleted while the watch was down disappear too; after that every change swaps in a rebuilt table.
    """
    while True:
        try:
            await _watch_once(js, routes, replicas)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker went away, the consumer was lost...: start over
            log.warning("route watch failed; restarting", extra={"fields": {"error": repr(exc)}})
        await asyncio.sleep(restart_after_s)


async def _watch_once(js: JetStreamContext, routes: Routes, replicas: int = 1) -> None:
    kv = await open_bucket(js, replicas=replicas)
    watcher = await kv.watchall()
    try:
        initial: dict[str, Entry] = {}
        live = False
        async for entry in watcher:
            if entry is not None and entry.key.startswith(EVENT_TRIGGER_PREFIX):
                continue  # a cron or NATS Trigger: the dispatcher's, not a route
            if entry is None:  # the end of the bucket's current content: swap it in whole
                routes.replace_all(initial)
                log.info("routes loaded", extra={"fields": {"functions": len(initial)}})
                live = True
                continue
            route = None if entry.operation in _DELETES else parse_entry(entry.key, entry.value or b"")
            if live:
                routes.put(entry.key, route)
            elif route is None:
                initial.pop(entry.key, None)
            else:
                initial[entry.key] = route
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
