"""CloudEvents on the way in, as pure functions (lf_dataplane.http.cloudevents): binary mode checked, structured
mode turned into binary mode, the refusals and their one JSON error shape."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest
from lf_dataplane.http import cloudevents as ce
from lf_dataplane.http.mapping import HttpError

BINARY = [("ce-specversion", "1.0"), ("ce-id", "e-1"), ("ce-source", "/orders"), ("ce-type", "order.created")]
BASE: dict[str, Any] = {"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "order.created"}


def refusal(items: list[tuple[str, str]], body: bytes = b"") -> tuple[int, dict[str, str]]:
    with pytest.raises(HttpError) as caught:
        ce.to_binary(items, body)
    err = caught.value
    payload = json.loads(err.body())
    assert set(payload) == {"error"} and payload["error"]["layer"] == "ingestor"
    assert payload["error"]["code"] == err.code and err.headers()[0] == ("content-type", "application/json")
    return err.status, payload["error"]


def structured(event: dict[str, Any], *extra: tuple[str, str]) -> tuple[dict[str, str], bytes]:
    body = json.dumps(event).encode()
    items = [("host", "x"), ("content-type", "application/cloudevents+json"), ("content-length", str(len(body)))]
    headers, data = ce.to_binary([*items, *extra], body)
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), names  # one value per header after the conversion
    return dict(headers), data


# -- which requests are events --------------------------------------------------------------------------------------


class Headers(dict[str, str]):
    pass


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"content-type": "application/json"}, b"{}", False),
        ({}, b"", False),
        ({"ce-specversion": "1.0"}, b"", True),
        ({"content-type": "application/cloudevents+json"}, b"{}", True),
        ({"content-type": "Application/CloudEvents+JSON"}, b"{}", True),  # media types are case-insensitive
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", True),
        ({"content-type": "application/cloudevents+json"}, b"", False),  # no body, nothing to convert
        ({"ce-id": "1"}, b"", False),  # binary mode is told by ce-specversion
    ],
)
def test_a_request_is_a_candidate_by_ce_specversion_or_its_content_type(
    headers: dict[str, str], body: bytes, expected: bool
) -> None:
    assert ce.is_candidate(Headers(headers), body) is expected


# -- binary mode ----------------------------------------------------------------------------------------------------


def test_a_binary_event_goes_on_as_it_came() -> None:
    items = [("host", "x"), *BINARY, ("ce-time", "2026-12-07T10:11:12Z"), ("ce-traceid", "abc"), ("x-a", "1")]
    body = b'{"n": 1}'
    out_items, out_body = ce.to_binary(items, body)
    assert out_items is items and out_body is body


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type"])
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_binary_without_a_required_attribute_is_400_naming_it(attribute: str, how: str) -> None:
    items = [(n, v) for n, v in BINARY if n != f"ce-{attribute}"]
    if how == "empty":
        items.append((f"ce-{attribute}", " "))
    status, error = refusal(items)  # (without ce-specversion the ingestor does not take it for an event)
    assert (status, error["code"]) == (400, "bad_cloudevent")
    assert f"'{attribute}'" in error["message"] and f"ce-{attribute}" in error["message"]


def test_binary_with_another_specversion_is_400() -> None:
    items = [("ce-specversion", "0.3"), *BINARY[1:]]
    status, error = refusal(items)
    assert status == 400 and "'specversion'" in error["message"] and "0.3" in error["message"]


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (("ce-id", "again"), "more than once"),
        (("ce-foo_bar", "1"), "ce-foo_bar"),
        (("ce-", "1"), "does not name"),
        (("ce-datacontenttype", "text/plain"), "Content-Type"),
        (("ce-data", "x"), "body"),
    ],
)
def test_binary_with_a_malformed_attribute_header_is_400(header: tuple[str, str], said: str) -> None:
    status, error = refusal([*BINARY, header])
    assert status == 400 and said in error["message"]


@pytest.mark.parametrize(
    "time",
    [
        "2026-12-07T10:11:12Z",
        "2026-12-07t10:11:12.123456789z",
        "2026-12-07T10:11:12.5+05:30",
        "2026-12-07T10%3A11%3A12Z",
    ],
)
def test_binary_with_an_rfc3339_time_passes(time: str) -> None:
    ce.to_binary([*BINARY, ("ce-time", time)], b"")


@pytest.mark.parametrize("time", ["yesterday", "2026-12-07", "2026-02-30T00:00:00Z", ""])
def test_binary_with_a_bad_time_is_400(time: str) -> None:
    status, error = refusal([*BINARY, ("ce-time", time)])
    assert status == 400 and "'time'" in error["message"] and "ce-time" in error["message"]


# -- structured mode ------------------------------------------------------------------------------------------------


def test_structured_becomes_binary_attributes_as_headers_data_as_body() -> None:
    event = {
        **BASE,
        "subject": "42",
        "time": "2026-12-07T10:11:12.345+02:00",
        "dataschema": "https://example.com/schema",
        "datacontenttype": "application/json",
        "traceid": "t-1",
        "count": 3,
        "urgent": True,
        "data": {"n": 1, "list": [True, None, "x"]},
    }
    stray = ("ce-id", "from-a-header")  # the body's attributes replace any ce-* header
    headers, body = structured(event, ("x-keep", "yes"), stray)
    assert headers == {
        "host": "x",
        "x-keep": "yes",
        "ce-specversion": "1.0",
        "ce-id": "e-1",
        "ce-source": "/orders",
        "ce-type": "order.created",
        "ce-subject": "42",
        "ce-time": "2026-12-07T10:11:12.345+02:00",
        "ce-dataschema": "https://example.com/schema",
        "ce-traceid": "t-1",
        "ce-count": "3",
        "ce-urgent": "true",
        "content-type": "application/json",
        "content-length": str(len(body)),
    }
    assert json.loads(body) == event["data"]
    ce.to_binary(list(headers.items()), body)  # what comes out is a valid binary event


def test_structured_data_keeps_its_json_text_as_sent() -> None:
    body = b'{"specversion":"1.0","id":"1","source":"s","type":"t","data": [1.50, {"a" : "\\u00e9"}] }'
    headers, data = ce.to_binary([("content-type", "application/cloudevents+json")], body)
    assert data == b'[1.50, {"a" : "\\u00e9"}]'
    assert dict(headers)["content-type"] == "application/json"  # the JSON event format's default


def test_structured_data_base64_is_the_decoded_bytes() -> None:
    raw = bytes(range(256))
    event = {**BASE, "datacontenttype": "application/octet-stream", "data_base64": base64.b64encode(raw).decode()}
    headers, body = structured(event)
    assert body == raw and headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == "256"


def test_structured_text_data_of_a_non_json_type_is_the_string() -> None:
    headers, body = structured({**BASE, "datacontenttype": "text/plain; charset=utf-8", "data": "héllo"})
    assert (body, headers["content-type"]) == ("héllo".encode(), "text/plain; charset=utf-8")
    _, body = structured({**BASE, "datacontenttype": "application/cloudevents-thing+json", "data": "x"})
    assert body == b'"x"'  # a +json type: the JSON text


def test_structured_without_data_has_an_empty_body_and_no_content_type() -> None:
    headers, body = structured({**BASE, "data": None})
    assert body == b"" and "content-type" not in headers and headers["content-length"] == "0"


def test_structured_null_attributes_are_absent() -> None:
    headers, _ = structured({**BASE, "subject": None, "traceid": None})
    assert "ce-subject" not in headers and "ce-traceid" not in headers


def test_structured_values_are_percent_encoded_in_headers() -> None:
    subject = 'naïve "quoted" 100% \u2603'
    headers, _ = structured({**BASE, "subject": subject, "source": "/a b"})
    assert headers["ce-subject"].isascii() and " " not in headers["ce-subject"]
    assert unquote(headers["ce-subject"]) == subject
    assert headers["ce-source"] == "/a%20b"


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type"])
@pytest.mark.parametrize("value", ["missing", "", None, 7])
def test_structured_without_a_required_string_attribute_is_400_naming_it(attribute: str, value: object) -> None:
    event = dict(BASE)
    if value == "missing":
        del event[attribute]
    else:
        event[attribute] = value
    status, error = refusal([("content-type", "application/cloudevents+json")], json.dumps(event).encode())
    assert (status, error["code"]) == (400, "bad_cloudevent") and f"'{attribute}'" in error["message"]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"specversion": "0.3"}, "'specversion'"),
        ({"time": "2026-12-07 10:11:12Z"}, "'time'"),
        ({"time": 1765102272}, "'time'"),
        ({"subject": ["a"]}, "'subject'"),
        ({"data": 1, "data_base64": "AA=="}, "not both"),
        ({"data_base64": "not base64!"}, "base64"),
        ({"data_base64": 12}, "data_base64"),
        ({"Bad-Name": "x"}, "Bad-Name"),
        ({"ratio": 0.5}, "'ratio'"),
        ({"nested": {"a": 1}}, "'nested'"),
    ],
)
def test_a_malformed_structured_event_is_400_saying_what(change: dict[str, Any], said: str) -> None:
    body = json.dumps({**BASE, **change}).encode()
    status, error = refusal([("content-type", "application/cloudevents+json")], body)
    assert status == 400 and said in error["message"]


@pytest.mark.parametrize(("body", "said"), [(b"[1]", "JSON object"), (b"{nope", "not valid JSON"), (b"", "JSON")])
def test_a_structured_body_that_is_no_json_object_is_400(body: bytes, said: str) -> None:
    status, error = refusal([("content-type", "application/cloudevents+json")], body)
    assert status == 400 and said in error["message"]


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        ("application/cloudevents-batch+json", "application/cloudevents-batch+json"),
        ("Application/CloudEvents-Batch+JSON; charset=utf-8", "application/cloudevents-batch+json"),
        ("application/cloudevents+avro", "application/cloudevents+avro"),
    ],
)
def test_a_batch_or_another_format_is_415_naming_it(content_type: str, said: str) -> None:
    status, error = refusal([*BINARY, ("content-type", content_type)], b"[]")
    assert (status, error["code"]) == (415, "unsupported_cloudevent") and said in error["message"]


def test_the_structured_content_type_wins_over_ce_headers_and_takes_parameters() -> None:
    body = json.dumps({**BASE, "id": "from-body"}).encode()
    headers, _ = ce.to_binary([("ce-id", "x"), ("content-type", "application/cloudevents+json; charset=UTF-8")], body)
    assert dict(headers)["ce-id"] == "from-body"


# -- time -----------------------------------------------------------------------------------------------------------


def test_parse_time_reads_rfc3339_with_its_offset() -> None:
    assert ce.parse_time("2026-12-07T10:11:12.3456789-01:30") == datetime(
        2026, 12, 7, 10, 11, 12, 345678, tzinfo=timezone(-timedelta(hours=1, minutes=30))
    )
    assert ce.parse_time("2026-12-07t10:11:12z") == datetime(2026, 12, 7, 10, 11, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-07",  # ISO 8601 forms RFC 3339 does not allow
        "20261207T101112Z",
        "2026-12-07T10:11Z",
        "2026-12-07T10:11:12",  # no offset
        "2026-12-07T10:11:12+0100",
        "2026-12-07T10:11:12,5Z",
        "2026-13-01T00:00:00Z",  # no such day or time
        "2026-12-07T24:00:00Z",
        "2026-12-31T23:59:60Z",  # a leap second: refused
        "2026-12-07T10:11:12+24:00",
        "２026-12-07T10:11:12Z",  # digits are ASCII
        "2026-12-07T10:11:12Z\n",
    ],
)
def test_parse_time_refuses_what_rfc3339_does_not_allow(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339|not a valid time|offset"):
        ce.parse_time(text)
