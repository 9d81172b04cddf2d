"""Async calls made by Triggers (a cron run, a NATS message, `lf trigger fire`): their call ids, their submission
to LF_ASYNC, what a schedule's concurrency policy asks of the previous run, and the LF_TRIGGERS state bucket. Shared
by the dispatcher and the CLI, over any `Requester`.

A submission is the ingestor's, minus HTTP: the request envelope published to `lf.async.{ns}.{fn}.{call id}` with
`Nats-Msg-Id` = call id, stored once JetStream's PubAck says so. A run's call id is deterministic (a cron run's
from namespace, trigger and scheduled time; a JetStream message's from its stream and sequence), so a run fired
twice (two leaders around a takeover, a message redelivered) is one call: the stream drops the second publish
within its duplicate window, and `already_stored` (a record in LF_RESULTS or the call still in LF_ASYNC) catches
it after that.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

from lf_native import encode_request

from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.contract.subjects import TRIGGERS_BUCKET
from lf_core.contract.triggerstate import STATE_TTL_S, TriggerState, decode_state, encode_state

TRIGGER_HEADER = "lf-trigger"
"""Request header of a triggered call: the Trigger's name."""
SCHEDULED_HEADER = "lf-scheduled-time"
"""Request header of a cron run: its scheduled time (RFC 3339, UTC)."""
SUBJECT_HEADER = "lf-subject"
"""Request header of a NATS Trigger's call: the subject the message came on."""
_DROPPED_PREFIXES = ("nats-", "lf-")
"""Message headers not passed on: the broker's own, and ours (a publisher must not pose as a trigger)."""


def _digest(*parts: str | int | float) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


def cron_call_id(namespace: str, trigger: str, scheduled: float) -> str:
    """The call id of a cron run: the same for every dispatcher that fires it."""
    return f"cron-{_digest('cron', namespace, trigger, int(scheduled))}"


def stream_call_id(namespace: str, trigger: str, stream: str, sequence: int) -> str:
    """The call id of a JetStream Trigger's message: the same on every redelivery."""
    return f"nats-{_digest('nats', namespace, trigger, stream, sequence)}"


def fresh_call_id(kind: str = "fire") -> str:
    """A new call id (a manual run, a core-NATS message)."""
    return f"{kind}-{uuid.uuid4().hex}"


def mapped_headers(headers: dict[str, str] | None) -> list[tuple[str, str]]:
    """A NATS message's headers as request headers (lowercase), without the broker's and the platform's own."""
    if not headers:
        return []
    items = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(_DROPPED_PREFIXES) or not lowered:
            continue
        items.append((lowered, value))
    return items


async def submit(
    request: jetstream.Requester,
    *,
    namespace: str,
    function: str,
    call_id: str,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    timeout_ms: int,
    method: str = "POST",
    path: str = "/",
    publish_timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Store one async call of `function` in LF_ASYNC; the PubAck (`duplicate: true` when the stream already had
    this call id). Raises JetStreamError, BusError or TimeoutError when it was not stored."""
    envelope = encode_request(call_id, method, path, "", list(headers), body, timeout_ms)
    msg_headers = [(jetstream.MSG_ID, call_id), (js.SUBMITTED_HEADER, f"{time.time():.6f}")]
    subject = js.async_subject(namespace, function, call_id)
    return await jetstream.publish(request, subject, envelope, msg_headers, publish_timeout_s)


async def already_stored(request: jetstream.Requester, call_id: str) -> bool:
    """The call was stored before: it has a record, or it still waits in LF_ASYNC."""
    if await jetstream.kv_get(request, js.RESULTS_BUCKET, call_id) is not None:
        return True
    return await js.find_queued(request, call_id) is not None


async def run_status(request: jetstream.Requester, call_id: str) -> str:
    """Where a previous run is: its record's status, "queued" while it waits in LF_ASYNC without one, or "gone"
    (no record and not queued: expired, purged, or never stored)."""
    found = await jetstream.kv_get(request, js.RESULTS_BUCKET, call_id)
    if found is not None:
        return js.decode_record(found[0]).status
    return "queued" if await js.find_queued(request, call_id) is not None else "gone"


def finished(status: str) -> bool:
    return status in js.TERMINAL or status == "gone"


async def cancel_queued(request: jetstream.Requester, call_id: str, namespace: str, function: str) -> bool:
    """Cancel a run that has not started (what `DELETE /invocations/{id}` does): its record becomes `cancelled`
    by compare-and-set (a dispatcher that started it first wins) and its message leaves LF_ASYNC."""
    found = await jetstream.kv_get(request, js.RESULTS_BUCKET, call_id)
    revision = 0
    if found is not None:
        if js.decode_record(found[0]).status != "queued":
            return False
        revision = found[1]
    record = js.CallRecord(
        call_id=call_id, namespace=namespace, function=function, status="cancelled", updated_at=time.time()
    )
    try:
        await jetstream.kv_put(request, js.RESULTS_BUCKET, call_id, js.encode_record(record), revision=revision)
    except jetstream.WrongSequence:
        return False
    await js.remove_queued(request, call_id)
    return True


# -- LF_TRIGGERS ---------------------------------------------------------------------------------------------------


async def ensure_state_bucket(request: jetstream.Requester, *, replicas: int = 1) -> None:
    await jetstream.ensure_stream(request, jetstream.kv_config(TRIGGERS_BUCKET, STATE_TTL_S, replicas=replicas))


async def read_state(request: jetstream.Requester, key: str) -> TriggerState | None:
    found = await jetstream.kv_get(request, TRIGGERS_BUCKET, key)
    if found is None:
        return None
    try:
        return decode_state(found[0])
    except ValueError:  # msgspec's errors are ValueErrors: a malformed state is no state
        return None


async def write_state(request: jetstream.Requester, key: str, state: TriggerState) -> None:
    await jetstream.kv_put(request, TRIGGERS_BUCKET, key, encode_state(state), revision=None)


async def delete_state(request: jetstream.Requester, key: str) -> None:
    await jetstream.publish(request, f"$KV.{TRIGGERS_BUCKET}.{key}", b"", [("KV-Operation", "PURGE"), _ROLLUP])


_ROLLUP = ("Nats-Rollup", "sub")


async def list_states(request: jetstream.Requester) -> list[TriggerState]:
    """Every Trigger's state in LF_TRIGGERS (an empty list when the bucket does not exist yet)."""
    try:
        info = await jetstream.api(
            request,
            f"$JS.API.STREAM.INFO.KV_{TRIGGERS_BUCKET}",
            {"subjects_filter": f"$KV.{TRIGGERS_BUCKET}.>"},
        )
    except jetstream.JetStreamError as exc:
        if exc.err_code == jetstream.ERR_STREAM_NOT_FOUND:
            return []
        raise
    subjects = sorted((info.get("state") or {}).get("subjects") or {})
    prefix = f"$KV.{TRIGGERS_BUCKET}."
    states = []
    for subject in subjects:
        state = await read_state(request, subject[len(prefix) :])
        if state is not None:
            states.append(state)
    return states
