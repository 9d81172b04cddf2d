"""The state of a cron or NATS Trigger in the LF_TRIGGERS bucket (`{namespace}.{name}` → JSON): written by the
dispatcher (the cron leader for a schedule; the replicas, at most once a second each, for a subject), read by
`lf triggers list` and the operator (the Trigger's status: lastFire, nextFire, lastError)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

STATE_TTL_S = 30 * 24 * 3600.0
"""How long a Trigger's state is kept without a write (a removed Trigger's state goes away with it, or after this)."""


class TriggerState(msgspec.Struct, kw_only=True, omit_defaults=True):
    namespace: str
    name: str
    kind: str
    function: str = ""
    last_fire: float = 0.0
    """When the last call was stored (seconds since the epoch; 0: never)."""
    last_scheduled: float = 0.0
    """Cron: the scheduled time of the last run handled (fired or skipped); where a new leader resumes."""
    next_fire: float = 0.0
    """Cron: the next scheduled time."""
    last_call_id: str = ""
    last_error: str = ""
    last_error_at: float = 0.0
    fired: int = 0
    """Calls stored by the writer of this state (cron: by every leader; NATS: by the replica that wrote last)."""
    skipped: int = 0
    """Cron runs skipped by `Forbid`, or missed past the starting deadline."""
    revision: str = ""
    """The entry's revision this state was written for."""


def encode_state(state: TriggerState) -> bytes:
    return msgspec.json.encode(state)


def decode_state(data: bytes) -> TriggerState:
    """Raises msgspec.ValidationError / DecodeError on a malformed value."""
    return msgspec.json.decode(data, type=TriggerState)


def rfc3339(seconds: float) -> str:
    """A time for a status field or a table ("" for 0: never)."""
    if not seconds:
        return ""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_fields(state: TriggerState | None) -> dict[str, Any]:
    """What the operator puts into a Trigger's status from its state (camelCase; empty when there is none)."""
    if state is None:
        return {}
    fields: dict[str, Any] = {}
    for key, value in (
        ("lastFire", rfc3339(state.last_fire)),
        ("nextFire", rfc3339(state.next_fire)),
        ("lastCallId", state.last_call_id),
        ("lastError", state.last_error),
    ):
        fields[key] = value
    return fields
