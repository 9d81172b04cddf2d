"""Async calls on JetStream (DESIGN §4 "Async"): the streams and buckets, their subjects and keys, the call record,
and the few JetStream API calls the ingestor, the runtimes and `lf dlq` make — one module, so the definitions
exist once and whoever starts first creates them (`ensure`, idempotent).

| name | kind | what |
|---|---|---|
| `LF_ASYNC` | stream, work queue, file storage | `lf.async.{ns}.{fn}.{call id}`: the envelope of each accepted call |
| `LF_DEAD` | stream, limits retention | `lf.dead.{ns}.{fn}.{call id}`: dead letters (envelope + `Lf-*` headers) |
| `LF_RESULTS` | KV (TTL = result TTL, per-message TTL allowed) | `{call id}` → `CallRecord` JSON, written with CAS |
| `LF_IDEMPOTENCY` | KV (TTL 24 h) | `{ns}.{fn}.{sha256 of the key}` → call id, create-only |

Why one subject per call (`….{call id}`, where DESIGN names `lf.async.{ns}.{fn}`): the function's consumer
filters on `lf.async.{ns}.{fn}.*` just the same, and the call id in the subject lets `GET /invocations/{id}` find
a queued call and `DELETE` remove it (a purge filtered on the subject) without an index of our own.

Every API call goes through a `Requester`: `request(subject, payload, headers, timeout) -> reply bytes`. The
ingestor and the runtimes pass their lean connection (`natsclient.NatsRequester.request_headers`), `lf dlq`
passes nats-py (`nats_py_requester`). Nothing here runs on the sync hot path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import msgspec

from lf_dataplane.names import check_name

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
API_TIMEOUT_S = 5.0

# headers of the messages in LF_ASYNC and LF_DEAD
MSG_ID = "Nats-Msg-Id"
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

Headers = Sequence[tuple[str, str]]
Requester = Callable[[str, bytes, Headers, float], Awaitable[bytes]]


class JetStreamError(RuntimeError):
    """The JetStream API answered an error (`code`, `err_code` as the server numbers them)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{code}/{err_code}: {description}")
        self.code = code
        self.err_code = err_code
        self.description = description


class WrongSequence(JetStreamError):  # noqa: N818 (named like the server's error)
    """A compare-and-set write lost: the key moved on since the revision it expected."""


ERR_WRONG_LAST_SEQUENCE = 10071
ERR_NO_MESSAGE = 10037
ERR_STREAM_NOT_FOUND = 10059
ERR_CONSUMER_NOT_FOUND = 10014


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


def parse_ack_subject(reply: str) -> tuple[int, int, float]:
    """`(delivered, stream sequence, published at)` from a JetStream ack subject (v1 and v2 formats)."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        delivered, sseq, ts = tokens[4], tokens[5], tokens[7]
    elif len(tokens) >= 11:  # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
        delivered, sseq, ts = tokens[6], tokens[7], tokens[9]
    else:
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    return int(delivered), int(sseq), int(ts) / 1e9


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
    if record.result is not None:
        result: dict[str, Any] = {"status": record.result.status, "headers": [list(h) for h in record.result.headers]}
        try:
            result["body"] = record.result.body.decode()
        except UnicodeDecodeError:
            result["bodyBase64"] = base64.b64encode(record.result.body).decode()
        view["result"] = result
    return view


# -- stream and bucket definitions --------------------------------------------------------------------------------


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def async_stream_config(*, replicas: int = 1) -> dict[str, Any]:
    return {
        "name": ASYNC_STREAM,
        "subjects": [f"{ASYNC_PREFIX}.>"],
        "retention": "workqueue",
        "storage": "file",
        "num_replicas": replicas,
        "duplicate_window": _ns(DUPLICATE_WINDOW_S),
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
        "max_age": _ns(DEAD_MAX_AGE_S),
        "duplicate_window": _ns(DUPLICATE_WINDOW_S),
        "discard": "old",
        "allow_direct": True,
    }


def kv_config(bucket: str, ttl_s: float, *, replicas: int = 1) -> dict[str, Any]:
    """A KV bucket as nats-py and the nats CLI create it (stream `KV_{bucket}`), history 1, per-message TTL on."""
    return {
        "name": f"KV_{bucket}",
        "subjects": [f"$KV.{bucket}.>"],
        "retention": "limits",
        "storage": "file",
        "num_replicas": replicas,
        "max_msgs_per_subject": 1,
        "max_age": _ns(ttl_s),
        "duplicate_window": _ns(min(ttl_s, 120.0)),
        "discard": "new",
        "deny_delete": True,
        "deny_purge": False,
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "allow_msg_ttl": True,
    }


def consumer_config(namespace: str, function: str, *, ack_wait_s: float, max_ack_pending: int = 1000) -> dict[str, Any]:
    """The function's durable pull consumer. Redeliveries are counted and stopped by the runtimes (maxAttempts),
    not by `max_deliver`, so the last failure can still be dead-lettered."""
    return {
        "durable_name": consumer_name(namespace, function),
        "filter_subject": async_filter(namespace, function),
        "ack_policy": "explicit",
        "ack_wait": _ns(ack_wait_s),
        "deliver_policy": "all",
        "max_deliver": -1,
        "max_ack_pending": max_ack_pending,
        "max_waiting": 512,
        "replay_policy": "instant",
    }


# -- the API calls ------------------------------------------------------------------------------------------------


def _check(reply: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reply) if reply else {}
    error = data.get("error")
    if error:
        code, err_code = int(error.get("code", 0)), int(error.get("err_code", 0))
        cls = WrongSequence if err_code == ERR_WRONG_LAST_SEQUENCE else JetStreamError
        raise cls(code, err_code, str(error.get("description", "")))
    return data


async def api(
    request: Requester, subject: str, body: dict[str, Any] | None = None, timeout: float = API_TIMEOUT_S
) -> dict[str, Any]:
    payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    return _check(await request(subject, payload, (), timeout))


async def ensure_stream(request: Requester, config: dict[str, Any]) -> None:
    """Create the stream, or leave it as it is (an operator may have tuned replicas or limits)."""
    name = config["name"]
    try:
        await api(request, f"$JS.API.STREAM.INFO.{name}")
        return
    except JetStreamError as exc:
        if exc.err_code != ERR_STREAM_NOT_FOUND:
            raise
    try:
        await api(request, f"$JS.API.STREAM.CREATE.{name}", config)
    except JetStreamError as exc:
        if "already in use" not in exc.description and "already exists" not in exc.description:
            raise  # a concurrent creator with the same config wins quietly


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


async def publish(
    request: Requester, subject: str, payload: bytes, headers: Headers, timeout: float = API_TIMEOUT_S
) -> dict[str, Any]:
    """A JetStream publish that returns the PubAck (`{"stream", "seq", "duplicate"?}`) once the stream stored it."""
    return _check(await request(subject, payload, headers, timeout))


async def kv_get(request: Requester, bucket: str, key: str) -> tuple[bytes, int] | None:
    """`(value, revision)` of a key, or None when it has none (never written, expired or deleted)."""
    try:
        reply = await api(request, f"$JS.API.STREAM.MSG.GET.KV_{bucket}", {"last_by_subj": f"$KV.{bucket}.{key}"})
    except JetStreamError as exc:
        if exc.err_code == ERR_NO_MESSAGE or exc.code == 404:
            return None
        raise
    message = reply["message"]
    if message.get("hdrs") and b"KV-Operation" in base64.b64decode(message["hdrs"]):
        return None
    return base64.b64decode(message.get("data", "")), int(message["seq"])


async def kv_put(
    request: Requester, bucket: str, key: str, value: bytes, *, revision: int | None, ttl_s: float | None = None
) -> int:
    """Write `key` if its revision is still `revision` (0: create-only; None: unconditional); return the new one.

    Raises:
        WrongSequence: someone else wrote the key since.
    """
    headers: list[tuple[str, str]] = []
    if revision is not None:
        headers.append(("Nats-Expected-Last-Subject-Sequence", str(revision)))
    if ttl_s is not None:
        headers.append(("Nats-TTL", f"{max(1, int(ttl_s))}s"))
    ack = await publish(request, f"$KV.{bucket}.{key}", value, headers)
    return int(ack["seq"])


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
        oldest = max(0.0, (time.time() if now is None else now) - _rfc3339(first["message"]["time"]))
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


def _rfc3339(value: str) -> float:
    """Seconds since the epoch of the server's `time` (nanosecond RFC 3339, UTC)."""
    from datetime import datetime

    head, _, frac = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{frac}") if frac else 0.0)


def nats_py_requester(nc: Any) -> Requester:
    """A `Requester` over a nats-py client (the CLI and lf dev; off any hot path)."""

    async def request(subject: str, payload: bytes, headers: Headers, timeout: float) -> bytes:
        msg = await nc.request(subject, payload, timeout=timeout, headers=dict(headers) if headers else None)
        return bytes(msg.data)

    return request


def lean_requester(conn: Any) -> Requester:
    """A `Requester` over the lean connection (`natsclient.NatsRequester`)."""
    return conn.request_headers  # type: ignore[no-any-return]
