"""Async calls on JetStream (docs/protocol.md, "Async calls"): the streams and buckets, their subjects and keys, the
call record, the stream configurations and the few queries of them the ingestor, the runtimes and `lf dlq` make —
one module, so the definitions exist once and whoever starts first creates them (`ensure_all`, idempotent; who
that is: docs/architecture.md, "Streams, buckets and who creates them").

| name | kind | what |
|---|---|---|
| `LF_ASYNC` | stream, work queue, file storage | `lf.async.{ns}.{fn}.{call id}`: the envelope of each accepted call |
| `LF_DEAD` | stream, limits retention | `lf.dead.{ns}.{fn}.{call id}`: dead letters (envelope + `Lf-*` headers) |
| `LF_RESULTS` | KV (TTL = result TTL, per-message TTL allowed) | `{call id}` → `CallRecord` JSON, written with CAS |
| `LF_IDEMPOTENCY` | KV (TTL 24 h) | `{ns}.{fn}.{sha256 of the key}` → call id, create-only |

Why one subject per call (`….{call id}`, not one per function, `lf.async.{ns}.{fn}`): the function's consumer
filters on `lf.async.{ns}.{fn}.*` just the same, and the call id in the subject lets `GET /invocations/{id}` find
a queued call and `DELETE` remove it (a purge filtered on the subject) without an index of our own.

The JetStream calls themselves (create, KV get and compare-and-set put, publish) are `lf_core.bus.jetstream`'s,
over whatever `Requester` the caller has. Nothing here runs on the sync hot path.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from lf_core.bus.jetstream import (
    ERR_CONSUMER_NOT_FOUND,
    ERR_NO_MESSAGE,
    JetStreamError,
    Requester,
    api,
    ensure_stream,
    kv_config,
    nanoseconds,
    rfc3339_seconds,
)
from lf_core.contract.names import check_name

ASYNC_STREAM = "LF_ASYNC"
DEAD_STREAM = "LF_DEAD"
RESULTS_BUCKET = "LF_RESULTS"
IDEMPOTENCY_BUCKET = "LF_IDEMPOTENCY"
ASYNC_PREFIX = "lf.async"
DEAD_PREFIX = "lf.dead"

DEFAULT_RESULT_TTL_S = 24 * 3600.0
IDEMPOTENCY_TTL_S = 24 * 3600.0
DUPLICATE_WINDOW_S = 10 * 60.0
"""LF_ASYNC's `Nats-Msg-Id` window: covers a publish retried after a lost PubAck and a redrive sent twice. The
24 h idempotency window is the KV's (a duplicate window of 24 h would hold every call id of a day in memory)."""
DEAD_MAX_AGE_S = 14 * 24 * 3600.0

# headers of the messages in LF_ASYNC and LF_DEAD
CALLBACK_HEADER = "Lf-Callback-Url"
SUBMITTED_HEADER = "Lf-Submitted"
REDRIVE_HEADER = "Lf-Redrive"
ERROR_HEADER = "Lf-Error"
ATTEMPTS_HEADER = "Lf-Attempts"
STATUS_HEADER = "Lf-Status"
DEAD_AT_HEADER = "Lf-Dead-At"
FIRST_AT_HEADER = "Lf-First-Attempt"

Status = Literal["queued", "running", "failed", "succeeded", "dead", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "dead", "cancelled"})


# -- names --------------------------------------------------------------------------------------------------------


def async_subject(namespace: str, function: str, call_id: str) -> str:
    return f"{ASYNC_PREFIX}.{check_name(namespace, 'namespace')}.{check_name(function)}.{check_call_id(call_id)}"


def async_filter(namespace: str, function: str) -> str:
    """What the function's consumer pulls: every call of that function."""
    return f"{ASYNC_PREFIX}.{check_name(namespace, 'namespace')}.{check_name(function)}.*"


def dead_subject(namespace: str, function: str, call_id: str) -> str:
    return f"{DEAD_PREFIX}.{check_name(namespace, 'namespace')}.{check_name(function)}.{check_call_id(call_id)}"


def consumer_name(namespace: str, function: str) -> str:
    """The durable pull consumer of a function (names are DNS labels, so `_` cannot be part of either)."""
    return f"{check_name(namespace, 'namespace')}_{check_name(function)}"


def check_call_id(call_id: str) -> str:
    """A call id as it may appear in a subject and a KV key: 1-64 of `[0-9a-zA-Z-]`."""
    if not 0 < len(call_id) <= 64 or not call_id.replace("-", "").isalnum() or not call_id.isascii():
        raise ValueError(f"not a call id: {call_id[:80]!r}")
    return call_id


def idempotency_key(namespace: str, function: str, key: str) -> str:
    """The KV key of an `Idempotency-Key` (scoped to the function; hashed: any header value is a valid key)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{namespace}.{function}.{digest}"


# -- the call record ----------------------------------------------------------------------------------------------


class CallResult(msgspec.Struct, kw_only=True):
    status: int
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    body: bytes = b""
    """base64 in JSON."""


class CallRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`LF_RESULTS[{call id}]`: one per call, from its first attempt on; every write is a compare-and-set on the
    revision the writer read, so of two workers holding the same call only one moves it on."""

    call_id: str
    namespace: str
    function: str
    status: Status
    attempts: int = 0
    submitted_at: float = 0.0
    updated_at: float = 0.0
    next_attempt_at: float = 0.0
    last_error: str = ""
    worker: str = ""
    result: CallResult | None = None
    callback: str = ""
    """"" none, "pending", "delivered", "failed: ...\""""
    redrives: int = 0
    sink: str = ""
    """spec.async.sink's CloudEvent: "" none, "pending", "delivered", "failed: ..." (lf_dispatcher.callbacks)"""


_record_decoder = msgspec.json.Decoder(CallRecord)


def encode_record(record: CallRecord) -> bytes:
    return msgspec.json.encode(record)


def decode_record(data: bytes) -> CallRecord:
    return _record_decoder.decode(data)


def record_view(record: CallRecord) -> dict[str, Any]:
    """What `GET /invocations/{id}` answers: the record, the result's body as text when it is UTF-8."""
    view: dict[str, Any] = {
        "callId": record.call_id,
        "function": record.function,
        "namespace": record.namespace,
        "status": record.status,
        "attempts": record.attempts,
        "submittedAt": record.submitted_at,
        "updatedAt": record.updated_at,
    }
    if record.last_error:
        view["lastError"] = record.last_error
    if record.next_attempt_at and record.status == "failed":
        view["nextAttemptAt"] = record.next_attempt_at
    if record.callback:
        view["callback"] = record.callback
    if record.sink:
        view["sink"] = record.sink
    if record.result is not None:
        result: dict[str, Any] = {"status": record.result.status, "headers": [list(h) for h in record.result.headers]}
        try:
            result["body"] = record.result.body.decode()
        except UnicodeDecodeError:
            result["bodyBase64"] = base64.b64encode(record.result.body).decode()
        view["result"] = result
    return view


# -- stream and bucket definitions --------------------------------------------------------------------------------


def async_stream_config(*, replicas: int = 1) -> dict[str, Any]:
    return {
        "name": ASYNC_STREAM,
        "subjects": [f"{ASYNC_PREFIX}.>"],
        "retention": "workqueue",
        "storage": "file",
        "num_replicas": replicas,
        "duplicate_window": nanoseconds(DUPLICATE_WINDOW_S),
        "discard": "old",
        "allow_direct": True,
    }


def dead_stream_config(*, replicas: int = 1) -> dict[str, Any]:
    return {
        "name": DEAD_STREAM,
        "subjects": [f"{DEAD_PREFIX}.>"],
        "retention": "limits",
        "storage": "file",
        "num_replicas": replicas,
        "max_age": nanoseconds(DEAD_MAX_AGE_S),
        "duplicate_window": nanoseconds(DUPLICATE_WINDOW_S),
        "discard": "old",
        "allow_direct": True,
    }


def consumer_config(namespace: str, function: str, *, ack_wait_s: float, max_ack_pending: int = 1000) -> dict[str, Any]:
    """The function's durable pull consumer. Redeliveries are counted and stopped by the runtimes (maxAttempts),
    not by `max_deliver`, so the last failure can still be dead-lettered."""
    return {
        "durable_name": consumer_name(namespace, function),
        "filter_subject": async_filter(namespace, function),
        "ack_policy": "explicit",
        "ack_wait": nanoseconds(ack_wait_s),
        "deliver_policy": "all",
        "max_deliver": -1,
        "max_ack_pending": max_ack_pending,
        "max_waiting": 512,
        "replay_policy": "instant",
    }


STREAM_REPLICAS_SETTING = "LF_STREAM_REPLICAS"
MAX_STREAM_REPLICAS = 5
"""JetStream's limit: a stream has 1 to 5 replicas (3 on a 3-node cluster: any one server may be lost)."""


def stream_replicas(env: Mapping[str, str]) -> int:
    """LF_STREAM_REPLICAS of `env`: how many servers keep each stream and bucket this process creates (default 1,
    a single nats-server; the Helm chart's 3-node JetStream cluster sets 3). ValueError naming it when it is not
    an integer from 1 to 5. Only creation uses it: an existing stream keeps its replicas."""
    raw = env.get(STREAM_REPLICAS_SETTING, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_STREAM_REPLICAS:
        raise ValueError(f"{STREAM_REPLICAS_SETTING}={raw!r} is not a replica count (an integer from 1 to 5)")
    return int(raw)


# -- the API calls ------------------------------------------------------------------------------------------------


async def ensure_all(request: Requester, *, result_ttl_s: float = DEFAULT_RESULT_TTL_S, replicas: int = 1) -> None:
    """LF_ASYNC, LF_DEAD, LF_RESULTS and LF_IDEMPOTENCY, each created unless it exists."""
    await ensure_stream(request, async_stream_config(replicas=replicas))
    await ensure_stream(request, dead_stream_config(replicas=replicas))
    await ensure_stream(request, kv_config(RESULTS_BUCKET, result_ttl_s, replicas=replicas))
    await ensure_stream(request, kv_config(IDEMPOTENCY_BUCKET, IDEMPOTENCY_TTL_S, replicas=replicas))


async def ensure_consumer(request: Requester, config: dict[str, Any]) -> None:
    """Create the durable consumer, or update it (a new timeout changes its ack wait)."""
    name = config["durable_name"]
    subject = f"$JS.API.CONSUMER.CREATE.{ASYNC_STREAM}.{name}"
    try:
        await api(request, subject, {"stream_name": ASYNC_STREAM, "config": config})
    except JetStreamError:
        await api(request, subject, {"stream_name": ASYNC_STREAM, "config": config, "action": "update"})


async def find_queued(request: Requester, call_id: str) -> tuple[str, int] | None:
    """`(subject, stream sequence)` of a call still in LF_ASYNC (queued or being run), or None."""
    try:
        reply = await api(
            request,
            f"$JS.API.STREAM.MSG.GET.{ASYNC_STREAM}",
            {"seq": 1, "next_by_subj": f"{ASYNC_PREFIX}.*.*.{call_id}"},
        )
    except JetStreamError as exc:
        if exc.err_code == ERR_NO_MESSAGE or exc.code == 404:
            return None
        raise
    return str(reply["message"]["subject"]), int(reply["message"]["seq"])


async def queued_in_namespace(request: Requester, namespace: str) -> int:
    """How many calls of `namespace` LF_ASYNC holds: accepted and not finished (queued, running, waiting for a
    retry), counted by the broker for every ingestor. One subject per call, so the count of subjects under
    `lf.async.{ns}.>` is the count of calls: STREAM.INFO's `total` with a page offset past the end (no subject is
    sent back). The server walks the namespace's subjects: about 1 ms per thousand, so callers cache it."""
    reply = await api(
        request,
        f"$JS.API.STREAM.INFO.{ASYNC_STREAM}",
        {"subjects_filter": f"{ASYNC_PREFIX}.{check_name(namespace, 'namespace')}.>", "offset": 1 << 30},
    )
    return int(reply.get("total", 0))


async def remove_queued(request: Requester, call_id: str) -> int:
    """Delete a call's message from LF_ASYNC; how many were removed."""
    reply = await api(request, f"$JS.API.STREAM.PURGE.{ASYNC_STREAM}", {"filter": f"{ASYNC_PREFIX}.*.*.{call_id}"})
    return int(reply.get("purged", 0))


class Pending(msgspec.Struct, kw_only=True):
    """A function's async backlog: the autoscaler's async signal and the metrics' `async_pending`."""

    namespace: str
    function: str
    pending: int
    """Calls not delivered yet."""
    in_flight: int
    """Delivered, not acknowledged (running, or waiting for a retry)."""
    redelivered: int
    oldest_age_s: float
    """Age of the oldest call still in the stream (0 when none)."""


async def pending_of(request: Requester, namespace: str, function: str, *, now: float | None = None) -> Pending:
    """The consumer's counts and the age of the function's oldest stored call."""
    try:
        info = await api(request, f"$JS.API.CONSUMER.INFO.{ASYNC_STREAM}.{consumer_name(namespace, function)}")
    except JetStreamError as exc:
        if exc.err_code != ERR_CONSUMER_NOT_FOUND:
            raise
        info = {}
    oldest = 0.0
    try:
        first = await api(
            request,
            f"$JS.API.STREAM.MSG.GET.{ASYNC_STREAM}",
            {"seq": 1, "next_by_subj": async_filter(namespace, function)},
        )
        oldest = max(0.0, (time.time() if now is None else now) - rfc3339_seconds(first["message"]["time"]))
    except JetStreamError as exc:
        if exc.err_code != ERR_NO_MESSAGE and exc.code != 404:
            raise
    return Pending(
        namespace=namespace,
        function=function,
        pending=int(info.get("num_pending", 0)),
        in_flight=int(info.get("num_ack_pending", 0)),
        redelivered=int(info.get("num_redelivered", 0)),
        oldest_age_s=round(oldest, 3),
    )
