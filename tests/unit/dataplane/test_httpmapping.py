"""The pure HTTP mapping: error bodies, error kinds, request checks and routing misses."""

from __future__ import annotations

import json

import pytest
from lf_core.contract.protocol import ErrorKind
from lf_dataplane.http import mapping as hm


def decoded(err: hm.HttpError) -> dict[str, str]:
    body = json.loads(err.body())
    assert set(body) == {"error"}
    return body["error"]


def test_error_body_has_code_message_and_layer() -> None:
    assert json.loads(hm.error_body("timeout", 'say "hi"', "runtime")) == {
        "error": {"code": "timeout", "message": 'say "hi"', "layer": "runtime"}
    }


@pytest.mark.parametrize(
    ("kind", "status", "code", "layer"),
    [
        (ErrorKind.HANDLER, 500, "function_error", "function"),
        (ErrorKind.TIMEOUT, 504, "timeout", "runtime"),
        (ErrorKind.BUSY, 503, "busy", "runtime"),
        (ErrorKind.BAD_REQUEST, 502, "runtime_bad_request", "runtime"),
        (ErrorKind.RESPONSE_TOO_LARGE, 502, "response_too_large", "runtime"),
        (ErrorKind.INTERNAL, 502, "runtime_error", "runtime"),
        (7, 502, "bad_response", "runtime"),
        (255, 502, "bad_response", "runtime"),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_every_error_kind_maps_to_status_code_and_layer(kind: int, status: int, code: str, layer: str) -> None:
    err = hm.error_for_kind(kind, "")
    assert (err.status, err.code, err.layer) == (status, code, layer)
    assert decoded(err) == {"code": code, "message": err.message, "layer": layer}
    assert err.message  # a default message when the runtime sent none
    headers = dict(err.headers())
    assert headers["content-type"] == "application/json"
    assert ("retry-after" in headers) == (status == 503)


def test_the_handlers_message_reaches_callers_only_when_the_function_exposes_it() -> None:
    """Issue 14, item 10: an exception's text may name files, queries or secrets; callers get a generic message
    unless the function opts in (spec.errors.expose); the runtime's own messages are kept either way."""
    for kind in (ErrorKind.HANDLER, ErrorKind.INTERNAL):
        hidden = hm.error_for_kind(kind, "KeyError: 'postgres://admin:pw@db/x'")
        assert "postgres" not in hidden.message and "X-Call-Id" in hidden.message
        assert hidden.message.startswith(hm.ERROR_KINDS[kind][3])
        shown = hm.error_for_kind(kind, "KeyError: 'postgres://admin:pw@db/x'", expose=True)
        assert shown.message == "KeyError: 'postgres://admin:pw@db/x'"
    timeout = hm.error_for_kind(ErrorKind.TIMEOUT, "the handler did not answer within the call's budget (5 ms)")
    assert timeout.message == "the handler did not answer within the call's budget (5 ms)"
    too_large = hm.error_for_kind(ErrorKind.RESPONSE_TOO_LARGE, "response body of 9 bytes exceeds the limit of 8")
    assert too_large.message == "response body of 9 bytes exceeds the limit of 8"


def test_every_error_kind_but_none_is_in_the_table() -> None:
    assert set(hm.ERROR_KINDS) == {k for k in ErrorKind if k != ErrorKind.NONE}


@pytest.mark.parametrize(
    ("make", "status", "code", "layer", "retry_after"),
    [
        (lambda: hm.no_replica("echo.default"), 503, "no_replica", "broker", True),
        (hm.broker_unavailable, 503, "broker_unavailable", "broker", True),
        (lambda: hm.ingestor_timeout("echo.default", 1.5), 504, "timeout", "ingestor", False),
        (lambda: hm.bad_response("garbage"), 502, "bad_response", "runtime", False),
        (lambda: hm.response_too_large(11, 10), 502, "response_too_large", "runtime", False),
        (lambda: hm.body_too_large(10), 413, "body_too_large", "ingestor", False),
        (lambda: hm.broker_refused_payload(10), 413, "body_too_large", "broker", False),
        (hm.not_ready, 503, "not_ready", "ingestor", True),
    ],
    ids=["no-replica", "broker-down", "ingestor-timeout", "garbage", "response-too-large", "body-too-large",
         "broker-payload", "not-ready"],
)  # fmt: skip
def test_outcomes_map_to_status_and_layer(make, status: int, code: str, layer: str, retry_after: bool) -> None:
    err = make()
    assert (err.status, decoded(err)["code"], decoded(err)["layer"]) == (status, code, layer)
    assert ("retry-after" in dict(err.headers())) == retry_after


def test_method_not_allowed_carries_allow() -> None:
    err = hm.method_not_allowed(["GET", "HEAD"])
    assert err.status == 405
    assert dict(err.headers())["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [(None, 10, None), ("0", 10, 0), ("10", 10, 10), ("7", 10, 7)],
)
def test_content_length_within_the_limit(value: str | None, limit: int, expected: int | None) -> None:
    assert hm.check_content_length(value, limit) == expected


@pytest.mark.parametrize(
    ("value", "status"),
    [("11", 413), ("99999999999999999999", 413), ("abc", 400), ("-1", 400), ("1e3", 400), ("", 400), ("١٢", 400)],
)
def test_content_length_refused(value: str, status: int) -> None:
    with pytest.raises(hm.HttpError) as caught:
        hm.check_content_length(value, 10)
    assert caught.value.status == status


def test_headers_size_counts_names_and_values() -> None:
    assert hm.headers_size([("ab", "cde"), ("f", "")]) == 6
    hm.check_headers_size([("a" * 10, "b" * 10)], 20)
    with pytest.raises(hm.HttpError) as caught:
        hm.check_headers_size([("a" * 10, "b" * 11)], 20)
    assert caught.value.status == 431
    assert caught.value.code == "headers_too_large"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/function/echo", ("echo", "default", "")),
        ("/function/echo/", ("echo", "default", "/")),
        ("/function/echo.team-a/a/b", ("echo", "team-a", "/a/b")),
        ("/function/echo.a.b", ("echo", "a.b", "")),
        ("/function/", ("", "default", "")),
    ],
)
def test_parse_function_path(path: str, expected: tuple[str, str, str]) -> None:
    assert hm.parse_function_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/function/*",
        "/function/>",
        "/function/a b",
        "/function/a%20b",
        "/function/" + "a" * 300,
        "/function/Echo",
        "/function/echo.Team",
        "/function/echo.a.b",
        "/function/echo.*",
        "/function/",
        "/function/-echo",
        "/function/echo_1",
    ],
)
def test_invalid_names_are_400(path: str) -> None:
    err = hm.unrouted(path)
    assert (err.status, err.code, err.layer) == (400, "invalid_name", "ingestor")


@pytest.mark.parametrize("path", ["/function/..", "/function/f/../g", "/x/./y", "/async-function/f/.."])
def test_dot_segments_are_400_bad_path(path: str) -> None:
    err = hm.unrouted(path)
    assert (err.status, err.code, err.layer) == (400, "bad_path", "ingestor")


@pytest.mark.parametrize("path", ["/function/echo", "/function/echo.team-a/x", "/function/" + "a" * 63])
def test_valid_unknown_functions_are_404(path: str) -> None:
    err = hm.unrouted(path)
    assert (err.status, err.code) == (404, "function_not_found")


@pytest.mark.parametrize("path", ["/", "/functions/echo", "/function", "/async-function/echo"])
def test_other_paths_are_404(path: str) -> None:
    assert (hm.unrouted(path).status, hm.unrouted(path).code) == (404, "not_found")


def test_response_headers_drop_framing_and_ingestor_headers() -> None:
    headers = [
        ("Content-Type", "text/plain"),
        ("Content-Length", "3"),
        ("transfer-encoding", "chunked"),
        ("X-Call-Id", "forged"),
        ("x-duration-seconds", "0"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    assert hm.response_headers(headers) == [
        ("Content-Type", "text/plain"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]


@pytest.mark.parametrize("status", [200, 204, 302, 404, 500, 599])
def test_final_statuses_pass(status: int) -> None:
    assert hm.check_status(status) == status


@pytest.mark.parametrize("status", [0, 100, 101, 199, 600, 65535])
def test_other_statuses_are_garbage(status: int) -> None:
    with pytest.raises(hm.HttpError) as caught:
        hm.check_status(status)
    assert caught.value.status == 502


def test_call_headers_are_appended() -> None:
    headers = hm.with_call_headers([("a", "b")], "abc", 0.0012345)
    assert headers == [("a", "b"), ("x-call-id", "abc"), ("x-duration-seconds", "0.001234")]
    assert hm.format_duration(2) == "2.000000"
