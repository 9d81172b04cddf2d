"""A final call record as a CloudEvent, HTTP binary content mode (docs/protocol.md, "CloudEvents out"): what the
dispatcher POSTs to a function's `spec.async.sink`, signed like a callback (`lf_dispatcher.callbacks`).

| header | value |
|---|---|
| `ce-specversion` | `1.0` |
| `ce-id` | the call id (a receiver deduplicates redeliveries by it; a redriven call's event has `-r{n}` appended) |
| `ce-source` | `/litefunctions/{namespace}/{function}` |
| `ce-type` | `dev.litefunctions.call.succeeded` or `dev.litefunctions.call.dead` |
| `ce-time` | when the record became final (RFC 3339, UTC) |
| `ce-subject` | the call id |
| `ce-lfstatus` | the handler's HTTP status, when there is a result |
| `ce-lfattempts` | attempts made |
| `Content-Type` | the result's content type (`application/octet-stream` if it gave none) |
| body | the result's body as the handler returned it |

A dead call without a result (past maxAge before any attempt) carries `application/json`
`{"callId": ..., "error": ...}`. The event is built with the CloudEvents SDK (`cloudevents.core`), off the hot path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent
from lf_core.asynccalls import streams as js

TYPE_PREFIX = "dev.litefunctions.call"
SOURCE_PREFIX = "/litefunctions"


def event_of(record: js.CallRecord) -> CloudEvent:
    """The record (succeeded or dead) as a CloudEvent."""
    if record.status not in ("succeeded", "dead"):
        raise ValueError(f"call {record.call_id} is {record.status}: only succeeded and dead calls make events")
    event_id = record.call_id if not record.redrives else f"{record.call_id}-r{record.redrives}"
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"{SOURCE_PREFIX}/{record.namespace}/{record.function}",
        "type": f"{TYPE_PREFIX}.{record.status}",
        "time": datetime.fromtimestamp(record.updated_at or record.submitted_at, UTC),
        "subject": record.call_id,
        "lfattempts": str(record.attempts),
    }
    data: bytes
    if record.result is not None:
        attributes["lfstatus"] = str(record.result.status)
        attributes["datacontenttype"] = _content_type(record.result.headers)
        data = record.result.body
    else:
        attributes["datacontenttype"] = "application/json"
        data = json.dumps({"callId": record.call_id, "error": record.last_error}, separators=(",", ":")).encode()
    return CloudEvent(attributes, data)


def binary(record: js.CallRecord) -> tuple[list[tuple[str, str]], bytes]:
    """`(headers, body)` of the record's event in binary content mode."""
    message = to_binary_event(event_of(record))
    return [(name if name != "content-type" else "Content-Type", value) for name, value in message.headers.items()], (
        message.body
    )


def _content_type(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "content-type" and value.isascii() and value.isprintable() and value.strip():
            return value.strip()
    return "application/octet-stream"
