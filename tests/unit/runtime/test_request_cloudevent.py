"""Request.event: the CloudEvent of a call, typed, read lazily from the binary mode's ce-* headers (which is
the one form the ingestor hands every runtime)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lf_runtime import CloudEvent, Request
from lf_runtime.requests import cloud_event

from tests.unit.runtime.test_request_parsing import FakeEnvelope

BINARY = [("ce-specversion", "1.0"), ("ce-id", "e-1"), ("ce-source", "/orders"), ("ce-type", "order.created")]


def request(headers: list[tuple[str, str]], body: bytes = b"") -> Request:
    return Request(FakeEnvelope(headers=headers, body=body), time.monotonic() + 10)


def test_every_attribute_typed() -> None:
    headers = [
        ("Host", "x"),
        *BINARY,
        ("ce-subject", "42"),
        ("ce-time", "2026-12-07T10:11:12.345678+02:00"),
        ("ce-dataschema", "https://example.com/s"),
        ("Content-Type", "application/json"),
        ("CE-TraceId", "t-1"),
        ("ce-count", "3"),
    ]
    req = request(headers, b'{"n": 1}')
    assert req.event == CloudEvent(
        id="e-1",
        source="/orders",
        type="order.created",
        specversion="1.0",
        subject="42",
        time=datetime(2026, 12, 7, 10, 11, 12, 345678, tzinfo=timezone(timedelta(hours=2))),
        datacontenttype="application/json",
        dataschema="https://example.com/s",
        extensions={"traceid": "t-1", "count": "3"},
    )
    assert req.event is req.event  # parsed once
    assert req.json() == {"n": 1}


def test_a_call_without_ce_specversion_has_no_event() -> None:
    assert request([("content-type", "application/json"), ("ce-id", "1")]).event is None
    assert request([]).event is None


def test_values_are_percent_decoded_and_the_first_of_a_repeated_header_counts() -> None:
    event = cloud_event([*BINARY, ("ce-subject", "na%C3%AFve%20%22q%22%20100%25"), ("ce-subject", "second")])
    assert event is not None and event.subject == 'naïve "q" 100%'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07T10:11:12Z", datetime(2026, 12, 7, 10, 11, 12, tzinfo=UTC)),
        ("2026-12-07t10:11:12.123456789z", datetime(2026, 12, 7, 10, 11, 12, 123456, tzinfo=UTC)),
        ("2026-12-07T10%3A11%3A12-01:30", datetime(2026, 12, 7, 10, 11, 12, tzinfo=timezone(-timedelta(minutes=90)))),
        ("2026-12-07", None),  # not RFC 3339: None (the ingestor refuses it; a message from elsewhere may carry it)
        ("20261207T101112Z", None),
        ("2026-02-30T00:00:00Z", None),
        ("soon", None),
    ],
)
def test_time_is_an_aware_datetime_or_none(text: str, expected: datetime | None) -> None:
    event = cloud_event([*BINARY, ("ce-time", text)])
    assert event is not None and event.time == expected


def test_missing_optional_attributes_are_none_and_missing_required_ones_empty() -> None:
    event = cloud_event([("ce-specversion", "1.0")])
    assert event == CloudEvent(id="", source="", type="", specversion="1.0")
    assert (event.subject, event.time, event.datacontenttype, event.dataschema, event.extensions) == (
        None, None, None, None, {},
    )  # fmt: skip
