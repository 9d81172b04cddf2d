"""The dispatcher's pure parts: pull window sizing, busy back-pressure, the dispatcher-wide cap, ack subjects,
route entries and settings. No broker, no clock of their own."""

from __future__ import annotations

import pytest
from lf_core.contract.routes import FunctionRoute, encode_route
from lf_core.contract.specs import AsyncRule
from lf_dispatcher.functions import ack_parts, parse_function_entry
from lf_dispatcher.pulling import BUSY_FORGET_S, Capacity, Window, policy_of, window_target
from lf_dispatcher.settings import Settings, SettingsError


def route(concurrency: int = 4, replicas: int = 1, max_concurrency: int | None = None) -> FunctionRoute:
    return FunctionRoute(
        namespace="default", name="hello", timeout_ms=2000, max_request_bytes=1024, max_response_bytes=1024,
        concurrency=concurrency, replicas=replicas,
        async_rule=AsyncRule(max_attempts=5, backoff_s=0.5, max_concurrency=max_concurrency),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "cap", "target"),
    [
        (route(4, 1), 1000, 4),
        (route(4, 3), 1000, 12),
        (route(4, 0), 1000, 4),  # replicas 0 (at zero, or an older entry): as one
        (route(0, 2), 1000, 16),  # no concurrency in the entry: the dispatcher's default (8)
        (route(4, 3, max_concurrency=5), 1000, 5),  # async.maxConcurrency caps
        (route(64, 10), 100, 100),  # the dispatcher-wide cap caps
    ],
)
def test_window_target_is_concurrency_times_replicas_capped(entry: FunctionRoute, cap: int, target: int) -> None:
    assert window_target(entry, 8, cap) == target


def test_policy_follows_the_route_s_async_rule() -> None:
    policy = policy_of(route())
    assert (policy.max_attempts, policy.backoff_s, policy.max_age_s) == (5, 0.5, None)


def test_busy_shrinks_to_one_less_than_held_and_never_below_one() -> None:
    window = Window(10)
    assert window.free(0) == 10
    window.busy(held=7, now=0.0)
    assert window.limit == 6 and window.free(6) == 0
    window.busy(held=6, now=0.1)
    assert window.limit == 5
    window.busy(held=1, now=0.2)
    assert window.limit == 1  # never below one: the function still gets calls
    window.busy(held=8, now=0.3)
    assert window.limit == 1  # a busy never grows it


def test_answers_grow_it_back_one_per_window_then_whole_after_quiet() -> None:
    window = Window(10)
    window.busy(held=3, now=0.0)
    assert window.limit == 2
    window.answered(now=1.0)
    assert window.limit == 2
    window.answered(now=1.0)
    assert window.limit == 3  # two answers (a window's worth) give one more
    for _ in range(3):
        window.answered(now=1.0)
    assert window.limit == 4
    window.answered(now=BUSY_FORGET_S)
    assert window.limit == 10  # no busy for BUSY_FORGET_S: the whole target again
    window.answered(now=BUSY_FORGET_S + 1)
    assert window.limit == 10  # never past the target


def test_resize_adds_an_increase_and_caps_a_decrease() -> None:
    window = Window(10)
    window.busy(held=5, now=0.0)
    assert window.limit == 4
    window.resize(20)  # a replica more: its share added to where the window stands
    assert (window.target, window.limit) == (20, 14)
    window.resize(6)
    assert (window.target, window.limit) == (6, 6)
    window.resize(0)
    assert (window.target, window.limit) == (1, 1)


class FakePuller:
    def __init__(self) -> None:
        self.pulled = 0

    def pull(self) -> None:
        self.pulled += 1


def test_capacity_wakes_starved_pullers_when_released() -> None:
    capacity = Capacity(3)
    capacity.take(3)
    assert capacity.free() == 0
    starved = FakePuller()
    capacity.starved.add(starved)  # type: ignore[arg-type]
    capacity.release(1)
    assert capacity.free() == 1 and starved.pulled == 1 and not capacity.starved
    capacity.release(10)
    assert capacity.used == 0


def test_ack_subjects_in_both_formats() -> None:
    v1 = "$JS.ACK.LF_ASYNC.default_hello.3.120.118.1733570000123456789.7"
    assert ack_parts(v1) == ("default_hello", 3, 1733570000.1234568, 7)
    v2 = "$JS.ACK.hub.ACCHASH.LF_ASYNC.default_hello.1.5.5.1733570000000000000.0.rnd"
    assert ack_parts(v2)[:2] == ("default_hello", 1)
    with pytest.raises(ValueError, match="not a JetStream ack subject"):
        ack_parts("_INBOX.abc.1")


def test_route_entries_function_keys_only() -> None:
    entry = route()
    assert parse_function_entry("fn.default.hello", encode_route(entry)) == entry
    assert parse_function_entry("tr.default.cron1", b"{}") is None  # triggers are not pulled for
    assert parse_function_entry("fn.default.other", encode_route(entry)) is None  # key and names differ
    assert parse_function_entry("fn.default.hello", b"not json") is None


def test_settings_defaults_and_errors_name_the_variable() -> None:
    settings = Settings.from_env({})
    assert (settings.ack_grace_s, settings.max_inflight, settings.drain_timeout_s) == (5.0, 1000, 30.0)
    assert Settings.from_env({"LF_ASYNC_ACK_GRACE": "250ms"}).ack_grace_s == 0.25
    assert Settings.from_env({"LF_NATS_URL": "nats://a:1,nats://b:2"}).servers == ["nats://a:1", "nats://b:2"]
    for env, name in [
        ({"LF_DISPATCHER_MAX_INFLIGHT": "0"}, "LF_DISPATCHER_MAX_INFLIGHT"),
        ({"LF_ASYNC_ACK_GRACE": "soon"}, "LF_ASYNC_ACK_GRACE"),
        ({"LF_STREAM_REPLICAS": "7"}, "LF_STREAM_REPLICAS"),
        ({"LF_NATS_URL": "http://x"}, "LF_NATS_URL"),
        ({"LF_CALLBACK_ALLOW_PRIVATE": "maybe"}, "LF_CALLBACK_ALLOW_PRIVATE"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env(env)


def test_route_entries_with_names_that_are_not_dns_labels_are_skipped() -> None:
    bad = FunctionRoute(
        namespace="default", name="Not_A_Label", timeout_ms=1, max_request_bytes=1, max_response_bytes=1
    )
    assert parse_function_entry("fn.default.Not_A_Label", encode_route(bad)) is None


@pytest.mark.parametrize(
    "variable",
    ["LF_DISPATCHER_MAX_INFLIGHT", "LF_CALLBACK_TIMEOUT", "LF_TRIGGER_LEASE_TTL"],  # its own, callbacks, triggers
)
def test_a_bad_setting_exits_2_naming_it(variable: str) -> None:
    import subprocess
    import sys

    from tests.harness.processes import clean_environ

    done = subprocess.run(
        [sys.executable, "-m", "lf_dispatcher"],
        env=clean_environ(**{variable: "lots"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and "bad_settings" in done.stderr
