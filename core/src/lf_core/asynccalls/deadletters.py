"""Dead letters in LF_DEAD: list, show, redrive, purge — the logic `lf dlq` and (later) the management API share.

A dead letter is the call's request envelope with `Lf-*` headers: the last error, attempts, when it was accepted
and when it died, the last status, the callback URL and how often it was redriven. Redrive puts the call back
on LF_ASYNC under the same call id with a fresh attempt count: the record is reset to `queued` (compare-and-set,
`redrives` + 1), the message is published with `Nats-Msg-Id` `{call id}.r{n}` (so a redrive sent twice is
deduplicated), then the dead letter is deleted.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import msgspec
from lf_native import decode_request, parse_nats_headers

from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream


class DeadLetter(msgspec.Struct, kw_only=True):
    seq: int
    call_id: str
    namespace: str
    function: str
    error: str
    attempts: int
    status: int
    submitted_at: float
    dead_at: float
    redrives: int
    callback: str = ""
    method: str = ""
    path: str = ""
    body_bytes: int = 0


def _letter(message: dict[str, Any]) -> tuple[DeadLetter, bytes, dict[str, str]]:
    raw = base64.b64decode(message.get("hdrs") or "")
    headers = dict(parse_nats_headers(raw)[2]) if raw else {}
    data = base64.b64decode(message.get("data") or "")
    _, _, ns, fn, call_id = str(message["subject"]).split(".", 4)
    letter = DeadLetter(
        seq=int(message["seq"]),
        call_id=call_id,
        namespace=ns,
        function=fn,
        error=headers.get(js.ERROR_HEADER, ""),
        attempts=int(headers.get(js.ATTEMPTS_HEADER) or 0),
        status=int(headers.get(js.STATUS_HEADER) or 0),
        submitted_at=float(headers.get(js.SUBMITTED_HEADER) or 0),
        dead_at=float(headers.get(js.DEAD_AT_HEADER) or 0),
        redrives=int(headers.get(js.REDRIVE_HEADER) or 0),
        callback=headers.get(js.CALLBACK_HEADER, ""),
    )
    try:
        envelope = decode_request(data)
        letter.method, letter.path, letter.body_bytes = envelope.method, envelope.path, len(envelope.body)
    except ValueError:
        pass
    return letter, data, headers


def _filter(namespace: str | None, function: str | None) -> str:
    return f"{js.DEAD_PREFIX}.{namespace or '*'}.{function or '*'}.*"


async def _next(request: jetstream.Requester, seq: int, subject: str) -> dict[str, Any] | None:
    try:
        reply = await jetstream.api(
            request, f"$JS.API.STREAM.MSG.GET.{js.DEAD_STREAM}", {"seq": seq, "next_by_subj": subject}
        )
    except jetstream.JetStreamError as exc:
        if exc.err_code in (jetstream.ERR_NO_MESSAGE, jetstream.ERR_STREAM_NOT_FOUND) or exc.code == 404:
            return None
        raise
    message: dict[str, Any] = reply["message"]
    return message


async def list_letters(
    request: jetstream.Requester, *, namespace: str | None = None, function: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The oldest `limit` dead letters (of one function or namespace if given)."""
    letters: list[DeadLetter] = []
    seq = 1
    subject = _filter(namespace, function)
    while len(letters) < limit:
        message = await _next(request, seq, subject)
        if message is None:
            break
        letters.append(_letter(message)[0])
        seq = int(message["seq"]) + 1
    return letters


async def find(request: jetstream.Requester, call_id: str) -> tuple[DeadLetter, bytes, dict[str, str]] | None:
    """The newest dead letter of a call: `(letter, envelope, headers)`."""
    message = await _next(request, 1, f"{js.DEAD_PREFIX}.*.*.{js.check_call_id(call_id)}")
    return None if message is None else _letter(message)


async def redrive(request: jetstream.Requester, call_id: str) -> DeadLetter:
    """Run a dead call again, from attempt 1. Raises LookupError if it has no dead letter."""
    found = await find(request, call_id)
    if found is None:
        raise LookupError(f"no dead letter for call {call_id}")
    letter, envelope, headers = found
    redrives = letter.redrives + 1
    now = time.time()
    record = js.CallRecord(
        call_id=call_id, namespace=letter.namespace, function=letter.function, status="queued",
        submitted_at=now, updated_at=now, redrives=redrives,
    )  # fmt: skip
    current = await jetstream.kv_get(request, js.RESULTS_BUCKET, call_id)
    await jetstream.kv_put(
        request, js.RESULTS_BUCKET, call_id, js.encode_record(record), revision=current[1] if current else 0
    )
    message_headers = [
        (jetstream.MSG_ID, f"{call_id}.r{redrives}"),
        (js.SUBMITTED_HEADER, f"{now:.6f}"),
        (js.REDRIVE_HEADER, str(redrives)),
    ]
    if headers.get(js.CALLBACK_HEADER):
        message_headers.append((js.CALLBACK_HEADER, headers[js.CALLBACK_HEADER]))
    await jetstream.publish(
        request, js.async_subject(letter.namespace, letter.function, call_id), envelope, message_headers
    )
    await delete(request, letter.seq)
    return letter


async def delete(request: jetstream.Requester, seq: int) -> None:
    await jetstream.api(request, f"$JS.API.STREAM.MSG.DELETE.{js.DEAD_STREAM}", {"seq": seq, "no_erase": True})


async def purge(request: jetstream.Requester, *, namespace: str | None = None, function: str | None = None) -> int:
    """Delete the dead letters (of one function or namespace); how many."""
    body = {} if namespace is None and function is None else {"filter": _filter(namespace, function)}
    reply = await jetstream.api(request, f"$JS.API.STREAM.PURGE.{js.DEAD_STREAM}", body)
    return int(reply.get("purged", 0))
