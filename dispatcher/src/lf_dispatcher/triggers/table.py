"""What the trigger service knows of LF_ROUTES: the cron and NATS Trigger entries (`et.`) and, for each function,
its entry (`fn.`: the budget of the calls it is sent). Kept in step by one watch of the bucket; `changed` is set on
every change so the subscriptions can be brought in line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from lf_core.contract.confinement import nats_trigger_error
from lf_core.contract.names import InvalidName
from lf_core.contract.routes import EventTriggerRoute, FunctionRoute, decode_event_trigger_route, decode_route
from lf_core.contract.subjects import (
    EVENT_TRIGGER_PREFIX,
    ROUTES_BUCKET,
    event_trigger_route_key,
    function_route_key,
)

log = logging.getLogger(__name__)

_FUNCTION_PREFIX = "fn."
_DELETES = ("DEL", "PURGE")


class TriggerTable:
    def __init__(self) -> None:
        self.triggers: dict[str, EventTriggerRoute] = {}
        self.refused: dict[str, str] = {}
        """Entries refused here (a subject outside the namespace written by hand): key → the rule's message."""
        self.functions: dict[tuple[str, str], FunctionRoute] = {}
        self.changed = asyncio.Event()
        self.loaded = asyncio.Event()

    def function(self, namespace: str, name: str) -> FunctionRoute | None:
        return self.functions.get((namespace, name))

    def apply(self, key: str, value: bytes | None) -> None:
        """One entry of the bucket (None: deleted)."""
        if key.startswith(EVENT_TRIGGER_PREFIX):
            self._apply_trigger(key, value)
        elif key.startswith(_FUNCTION_PREFIX):
            self._apply_function(key, value)

    def _apply_trigger(self, key: str, value: bytes | None) -> None:
        self.refused.pop(key, None)
        if value is None:
            if self.triggers.pop(key, None) is not None:
                self.changed.set()
            return
        try:
            route = decode_event_trigger_route(value)
            expected = event_trigger_route_key(route.namespace, route.name)
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidName) as exc:
            log.warning("trigger_entry_skipped", extra={"fields": {"key": key, "reason": str(exc)}})
            self.triggers.pop(key, None)
            self.changed.set()
            return
        refusal = self.refusal(route, key, expected)
        if refusal is not None:
            log.warning("trigger_entry_refused", extra={"fields": {"key": key, "reason": refusal}})
            self.refused[key] = refusal
            self.triggers.pop(key, None)
        else:
            self.triggers[key] = route
        self.changed.set()

    @staticmethod
    def refusal(route: EventTriggerRoute, key: str, expected: str) -> str | None:
        """Why an entry is not run: filed under another Trigger's key, or a subject or stream outside its
        namespace (checked again here: the entry may not come from lf dev or the operator)."""
        if key != expected:
            return f"filed under {key}, expected {expected}"
        if route.kind == "cron" and route.cron is None:
            return "a cron entry without spec.cron"
        if route.kind == "nats":
            if route.nats is None:
                return "a nats entry without spec.nats"
            return nats_trigger_error(route.namespace, route.nats.subject, route.nats.stream)
        return None

    def _apply_function(self, key: str, value: bytes | None) -> None:
        _, _, rest = key.partition(".")
        namespace, _, name = rest.partition(".")
        if value is None:
            self.functions.pop((namespace, name), None)
            return
        try:
            route = decode_route(value)
            if key != function_route_key(route.namespace, route.name):
                return
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidName):
            return
        self.functions[(route.namespace, route.name)] = route


async def watch(js: Any, table: TriggerTable, *, restart_after_s: float = 1.0) -> None:
    """Keep `table` in step with LF_ROUTES forever (a nats-py JetStream context); cancel to stop. Each (re)start
    reads the whole bucket again, so entries deleted while the watch was down go too."""
    while True:
        try:
            await _watch_once(js, table)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker went away, the watch's consumer was lost: start over
            log.warning("trigger_watch_failed", extra={"fields": {"error": repr(exc)}})
        await asyncio.sleep(restart_after_s)


async def _watch_once(js: Any, table: TriggerTable) -> None:
    from nats.js.api import KeyValueConfig
    from nats.js.errors import BucketNotFoundError

    try:
        kv = await js.key_value(ROUTES_BUCKET)
    except BucketNotFoundError:
        kv = await js.create_key_value(KeyValueConfig(bucket=ROUTES_BUCKET, history=1))
    watcher = await kv.watchall()
    try:
        seen: dict[str, bytes] = {}
        live = False
        async for entry in watcher:
            if entry is None:
                for key in [k for k in table.triggers if k not in seen] + [k for k in table.refused if k not in seen]:
                    table.apply(key, None)
                for fn_key in [k for k in table.functions if function_route_key(*k) not in seen]:
                    table.functions.pop(fn_key, None)
                for key, data in seen.items():
                    table.apply(key, data)
                live = True
                table.loaded.set()
                continue
            value: bytes | None = None if entry.operation in _DELETES else bytes(entry.value or b"")
            if live:
                table.apply(entry.key, value)
            elif value is None:
                seen.pop(entry.key, None)
            else:
                seen[entry.key] = value
    finally:
        await watcher.stop()
