"""The pure parts of async calls: retry classification, the backoff schedule on an injected clock, decisions
before and after an attempt, the SSRF guard, names and the ack subject."""

from __future__ import annotations

import ipaddress

import pytest
from lf_core.asynccalls import streams as js
from lf_core.asynccalls.policy import (
    AsyncPolicy,
    Clock,
    after_attempt,
    backoff_s,
    before_attempt,
    is_retryable,
    schedule,
)
from lf_core.bus import jetstream
from lf_core.ssrf import UnsafeUrl, check_url, is_public, numeric_host, resolve_target


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable(status: int) -> None:
    assert is_retryable(status)


@pytest.mark.parametrize("status", [200, 204, 301, 400, 401, 403, 404, 409, 413, 422])
def test_not_retryable(status: int) -> None:
    assert not is_retryable(status)


def test_backoff_doubles_is_capped_and_jitter_only_adds() -> None:
    policy = AsyncPolicy(backoff_s=1.0, max_backoff_s=5.0, jitter=0.2)
    assert [backoff_s(n, policy, lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert [backoff_s(n, policy, lambda: 1.0) for n in (1, 2, 3)] == [1.2, 2.4, 4.8]


def test_schedule_on_an_injected_clock_spaces_attempts_by_at_least_the_backoff() -> None:
    clock = Clock(1000.0)
    policy = AsyncPolicy(max_attempts=3, backoff_s=2.0, jitter=0.5)
    jitters = iter([0.5, 1.0])
    plan = schedule(policy, clock, [500, 503, 500, 500], lambda: next(jitters))
    starts = [t for t, _ in plan]
    assert starts == [1000.0, 1002.5, 1008.5]  # 2 s * (1 + 0.5 * 0.5), then 4 s * (1 + 0.5 * 1.0)
    assert [d.action for _, d in plan] == ["retry", "retry", "dead"]
    assert starts[1] - starts[0] >= 2.0 and starts[2] - starts[1] >= 4.0


def test_schedule_success_and_non_retryable() -> None:
    policy = AsyncPolicy()
    assert [d.action for _, d in schedule(policy, Clock(), [500, 200], lambda: 0.0)] == ["retry", "done"]
    assert [d.action for _, d in schedule(policy, Clock(), [400], lambda: 0.0)] == ["dead"]


def test_max_age_stops_retries_and_stale_deliveries() -> None:
    policy = AsyncPolicy(max_attempts=5, backoff_s=10.0, jitter=0.0, max_age_s=15.0)
    assert after_attempt(1, 500, 0.0, 1.0, policy).action == "retry"  # next at 11 s
    assert after_attempt(2, 500, 0.0, 11.0, policy).action == "dead"  # next would be at 31 s
    assert before_attempt(2, 0.0, 16.0, policy).action == "dead"
    assert before_attempt(4, 0.0, 1.0, AsyncPolicy(max_attempts=3)).action == "dead"  # died on the last attempt
    assert before_attempt(3, 0.0, 1.0, AsyncPolicy(max_attempts=3)).action == "run"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",
     "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "::127.0.0.1",
     "224.0.0.1", "ff02::1"],
)  # fmt: skip
def test_non_public_addresses(host: str) -> None:
    assert not is_public(ipaddress.ip_address(host))


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(host: str) -> None:
    assert is_public(ipaddress.ip_address(host))


@pytest.mark.parametrize(
    ("written", "address"),
    [("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
     ("0x7f000001", "127.0.0.1"), ("[::1]", "::1")],
)  # fmt: skip
def test_numeric_hosts_are_read_like_inet_aton(written: str, address: str) -> None:
    assert str(numeric_host(written)) == address


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "http://2130706433/", "http://0x7f.1:8080/", "http://[::1]/", "http://[::ffff:7f00:1]/",
     "http://169.254.169.254/latest/meta-data", "ftp://example.com/", "file:///etc/passwd", "http:///x",
     "http://user:pw@example.com/", "http://exa mple.com/", "gopher://example.com"],
)  # fmt: skip
def test_unsafe_urls_are_refused_without_dns(url: str) -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("must not resolve")

    with pytest.raises(UnsafeUrl):
        resolve_target(url, resolve=no_dns)


def test_every_resolved_address_must_be_public() -> None:
    def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    with pytest.raises(UnsafeUrl, match="non-public") as refused:
        resolve_target("https://example.com/hook", resolve=rebinding)
    assert "10.0.0.5" not in str(refused.value) and "10.0.0.5" in refused.value.detail  # the log's, not the caller's
    target = resolve_target("https://example.com:8443/hook?a=1", resolve=lambda h, p: ["93.184.216.34"])
    assert (target.host, target.port, target.path, target.addresses) == (
        "example.com", 8443, "/hook?a=1", ("93.184.216.34",),
    )  # fmt: skip


def test_private_targets_allowed_by_the_setting() -> None:
    assert resolve_target("http://127.0.0.1:9000/x", allow_private=True).addresses == ("127.0.0.1",)
    assert check_url("http://localhost/", allow_private=False)[1] == "localhost"  # resolved later, then refused


def test_idempotency_keys_are_scoped_hashed_and_valid_kv_keys() -> None:
    a = js.idempotency_key("default", "hello", "order 42 / ünïcode > *")
    assert a == js.idempotency_key("default", "hello", "order 42 / ünïcode > *")
    assert a != js.idempotency_key("default", "other", "order 42 / ünïcode > *")
    assert a.startswith("default.hello.") and all(c.isalnum() or c in ".-" for c in a)


def test_names_and_ack_subjects() -> None:
    assert js.async_subject("default", "hello", "abc") == "lf.async.default.hello.abc"
    assert js.consumer_name("default", "hello") == "default_hello"
    with pytest.raises(ValueError):
        js.async_subject("default", "hello", "a.b")
    with pytest.raises(ValueError):
        js.check_call_id("x>")
    assert jetstream.parse_ack_subject("$JS.ACK.LF_ASYNC.default_hello.3.17.9.1700000000500000000.4") == (
        3,
        17,
        1700000000.5,
    )
    assert jetstream.parse_ack_subject("$JS.ACK.dom.hash.LF_ASYNC.c.2.5.5.1700000000000000000.0.tok")[:2] == (2, 5)


def test_record_view_shows_text_or_base64() -> None:
    record = js.CallRecord(call_id="c", namespace="n", function="f", status="succeeded",
                           result=js.CallResult(status=200, body=b"\xff"))  # fmt: skip
    assert js.record_view(js.decode_record(js.encode_record(record)))["result"]["bodyBase64"] == "/w=="
