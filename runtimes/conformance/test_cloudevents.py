"""CloudEvents through the real ingestor and NATS to every runtime: an event sent in binary mode (ce-* headers)
or structured mode (application/cloudevents+json) reaches the handler as the same typed attributes, and a
malformed one is refused by the ingestor before any runtime sees it.

Each function's `event` action answers what its runtime typed (`Request.event`, `req.Event()`,
`request.event()`): the attributes, the time as Unix microseconds and its offset, and the body's digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from conformance_harness import Replica

pytestmark = pytest.mark.conformance

TIME = datetime(2026, 12, 7, 10, 11, 12, 345678, tzinfo=timezone(timedelta(hours=5, minutes=30)))
TIME_TEXT = "2026-12-07T10:11:12.345678+05:30"
SUBJECT = 'naïve "subject" 100% ☃'


def unix_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def event_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def digest(body: bytes) -> dict[str, Any]:
    return {"body_size": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}


def test_a_binary_mode_event_reaches_the_handler_typed(replica: Replica) -> None:
    body = "héllo".encode()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "/orders/eu",
        "ce-type": "com.example.order.created",
        "ce-subject": "na%C3%AFve%20%22subject%22%20100%25%20%E2%98%83",  # percent-encoded, as the binding says
        "ce-time": TIME_TEXT,
        "ce-dataschema": "https://example.com/order.json",
        "ce-traceid": "t-42",
        "content-type": "text/plain; charset=utf-8",
    }
    answer = event_of(httpx.post(replica.url("/event"), content=body, headers=headers, timeout=10))
    assert answer == {
        "event": {
            "specversion": "1.0",
            "id": "b-1",
            "source": "/orders/eu",
            "type": "com.example.order.created",
            "subject": SUBJECT,
            "time_unix_us": unix_us(TIME),
            "time_offset_s": 5 * 3600 + 30 * 60,
            "datacontenttype": "text/plain; charset=utf-8",
            "dataschema": "https://example.com/order.json",
            "extensions": {"traceid": "t-42"},
        },
        **digest(body),
    }


def test_a_structured_mode_event_reaches_the_handler_in_binary_mode(replica: Replica) -> None:
    data = {"order": 42, "items": [{"sku": "a", "qty": 2}], "gift": True}
    event = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/orders/eu",
        "type": "com.example.order.created",
        "subject": SUBJECT,
        "time": TIME_TEXT,
        "datacontenttype": "application/json",
        "priority": 3,
        "urgent": False,
        "data": data,
    }
    body = json.dumps(event, ensure_ascii=False).encode()
    headers = {"content-type": "application/cloudevents+json; charset=utf-8", "ce-id": "ignored"}
    answer = event_of(httpx.post(replica.url("/event"), content=body, headers=headers, timeout=10))
    assert answer["event"] == {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/orders/eu",
        "type": "com.example.order.created",
        "subject": SUBJECT,
        "time_unix_us": unix_us(TIME),
        "time_offset_s": 5 * 3600 + 30 * 60,
        "datacontenttype": "application/json",
        "dataschema": None,
        "extensions": {"priority": "3", "urgent": "false"},
    }
    data_text = json.dumps(data).encode()  # the data's JSON text as sent (json.dumps wrote it this way)
    assert {k: answer[k] for k in ("body_size", "body_sha256")} == digest(data_text)


def test_structured_data_base64_reaches_the_handler_as_bytes(replica: Replica) -> None:
    data = bytes(range(256)) * 4
    event = {
        "specversion": "1.0",
        "id": "s-2",
        "source": "urn:sensor:7",
        "type": "reading",
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(data).decode(),
    }
    answer = event_of(
        httpx.post(
            replica.url("/event"),
            content=json.dumps(event),
            headers={"content-type": "application/cloudevents+json"},
            timeout=10,
        )
    )
    assert answer["event"]["datacontenttype"] == "application/octet-stream"
    assert answer["event"]["time_unix_us"] is None and answer["event"]["subject"] is None
    assert {k: answer[k] for k in ("body_size", "body_sha256")} == digest(data)


def test_a_plain_request_has_no_event(replica: Replica) -> None:
    body = b'{"specversion": "1.0"}'
    answer = event_of(
        httpx.post(replica.url("/event"), content=body, headers={"content-type": "application/json"}, timeout=10)
    )
    assert answer == {"event": None, **digest(body)}


@pytest.mark.parametrize(
    ("headers", "body", "status", "said"),
    [
        (  # structured without an id
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "source": "/s", "type": "t", "data": 1}',
            400,
            "'id'",
        ),
        (  # binary with a time that is not RFC 3339
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-time": "07/12/2026"},
            b"",
            400,
            "'time'",
        ),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", 415, "application/cloudevents-batch+json"),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_malformed_event_is_refused_by_the_ingestor(
    replica: Replica, headers: dict[str, str], body: bytes, status: int, said: str, mode: str
) -> None:
    url = replica.url("/event")
    if mode == "async":
        url = url.replace("/function/", "/async-function/", 1)
    response = httpx.post(url, content=body, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["layer"] == "ingestor" and said in error["message"]
