"""Cron and NATS Trigger specs, their LF_ROUTES entries and the run ids (lf_core.contract, lf_core.asynccalls)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from lf_core.asynccalls import triggered
from lf_core.contract.routes import (
    decode_event_trigger_route,
    encode_event_trigger_route,
    event_trigger_key,
    event_trigger_route,
)
from lf_core.contract.specs import API_VERSION, ManifestError, load_trigger
from lf_core.contract.triggerstate import TriggerState, decode_state, encode_state, status_fields
from lf_dispatcher.triggers.cron import next_run, runs_between


def _cron(**cron: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Trigger",
        "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {"function": "report", "cron": cron},
    }


def test_a_cron_trigger_with_every_field() -> None:
    trigger = load_trigger(
        _cron(
            schedule="0 3 * * 1-5",
            timezone="Europe/Paris",
            body='{"x": 1}',
            headers={"Content-Type": "application/json"},
            concurrencyPolicy="Forbid",
            startingDeadlineSeconds=300,
        )
    )
    assert trigger.cron is not None
    assert trigger.cron.concurrency_policy == "Forbid"
    assert trigger.cron.starting_deadline_seconds == 300
    route = event_trigger_route(trigger)
    assert route is not None and route.kind == "cron" and route.revision
    assert event_trigger_key(route) == "et.shop.nightly"
    assert decode_event_trigger_route(encode_event_trigger_route(route)) == route


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ({"schedule": "0 3 * * * * *"}, "has 7 fields"),
        ({"schedule": "61 3 * * *"}, "is not a valid cron schedule"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "not a known IANA time zone"),
        ({"schedule": "0 3 * * *", "concurrencyPolicy": "Sometimes"}, "concurrencyPolicy"),
        ({"schedule": "0 3 * * *", "startingDeadlineSeconds": 90000}, "startingDeadlineSeconds"),
        ({"schedule": "0 3 * * *", "headers": {"bad header": "x"}}, "headers"),
    ],
)
def test_bad_cron_triggers_are_refused_naming_the_field(cron: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_trigger(_cron(**cron))


def test_the_revision_follows_the_spec() -> None:
    a = event_trigger_route(load_trigger(_cron(schedule="0 3 * * *")))
    b = event_trigger_route(load_trigger(_cron(schedule="0 4 * * *")))
    assert a is not None and b is not None and a.revision != b.revision


def test_run_ids_are_deterministic_call_ids() -> None:
    a = triggered.cron_call_id("shop", "nightly", 1_800_000_000.0)
    assert a == triggered.cron_call_id("shop", "nightly", 1_800_000_000.4)
    assert a != triggered.cron_call_id("shop", "nightly", 1_800_000_060.0)
    assert a != triggered.cron_call_id("shop2", "nightly", 1_800_000_000.0)
    s = triggered.stream_call_id("shop", "t", "EV_shop", 7)
    assert s == triggered.stream_call_id("shop", "t", "EV_shop", 7)
    assert s != triggered.stream_call_id("shop", "t", "EV_shop", 8)
    for call_id in (a, s, triggered.fresh_call_id()):
        assert len(call_id) <= 64 and call_id.replace("-", "").isalnum()


def test_message_headers_map_without_the_brokers_and_the_platforms() -> None:
    mapped = triggered.mapped_headers({"Nats-Msg-Id": "x", "Content-Type": "a/b", "Lf-Trigger": "spoof", "X-A": "1"})
    assert mapped == [("content-type", "a/b"), ("x-a", "1")]
    assert triggered.mapped_headers(None) == []


def test_runs_between_follows_the_time_zone() -> None:
    paris = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC).timestamp()
    runs = runs_between("0 3 * * *", "Europe/Paris", paris, paris + 2 * 86400)
    assert [dt.datetime.fromtimestamp(t, dt.UTC).hour for t in runs] == [2, 2]  # 03:00 CET is 02:00 UTC
    assert next_run("* * * * * *", "UTC", 100.0) == 101.0  # 6 fields: seconds last


def test_runs_between_keeps_the_latest_when_limited() -> None:
    runs = runs_between("* * * * * *", "UTC", 0.0, 10.0, limit=3)
    assert runs == [8.0, 9.0, 10.0]


def test_state_round_trips_and_becomes_status_fields() -> None:
    state = TriggerState(namespace="shop", name="t", kind="cron", last_fire=1_800_000_000.0, last_error="boom")
    assert decode_state(encode_state(state)) == state
    fields = status_fields(state)
    assert fields["lastFire"] == "2027-01-15T08:00:00Z" and fields["lastError"] == "boom" and fields["nextFire"] == ""
    assert status_fields(None) == {}
