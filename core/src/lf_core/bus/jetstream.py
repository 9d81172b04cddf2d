"""The JetStream API over any request function: streams, consumers, KV get/compare-and-set put, publish with
acknowledgement, and its errors. Only the few calls the platform makes, over a `Requester`: the lean connection
(`lf_core.bus.requester.NatsRequester.request_headers`) or nats-py (`nats_py_requester`: the CLI and `lf dev`).
Nothing here runs on the sync hot path; the async streams that use it are `lf_core.asynccalls.streams`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

API_TIMEOUT_S = 5.0
MSG_ID = "Nats-Msg-Id"
"""The header JetStream deduplicates publishes by (within the stream's duplicate window)."""

Headers = Sequence[tuple[str, str]]
Requester = Callable[[str, bytes, Headers, float], Awaitable[bytes]]
"""`request(subject, payload, headers, timeout) -> reply bytes`."""


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


def nanoseconds(seconds: float) -> int:
    """A duration as the JetStream API takes it."""
    return int(seconds * 1e9)


def kv_config(bucket: str, ttl_s: float, *, replicas: int = 1) -> dict[str, Any]:
    """A KV bucket as nats-py and the nats CLI create it (stream `KV_{bucket}`), history 1, per-message TTL on."""
    return {
        "name": f"KV_{bucket}",
        "subjects": [f"$KV.{bucket}.>"],
        "retention": "limits",
        "storage": "file",
        "num_replicas": replicas,
        "max_msgs_per_subject": 1,
        "max_age": nanoseconds(ttl_s),
        "duplicate_window": nanoseconds(min(ttl_s, 120.0)),
        "discard": "new",
        "deny_delete": True,
        "deny_purge": False,
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "allow_msg_ttl": True,
    }


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


def rfc3339_seconds(value: str) -> float:
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
