"""Building the native table from route entries: targets computed once, defaults, bad entries skipped."""

from __future__ import annotations

import pytest
from lf_core.contract.routes import FunctionRoute, encode_route
from lf_dataplane.calls.routetable import Defaults, FunctionTarget, Routes, build_table, parse_entry, target_of
from lf_native import RouteNotFound

DEFAULTS = Defaults(timeout_s=60.0, max_request_bytes=100, max_response_bytes=200)


def route(name: str = "echo", namespace: str = "default", **limits: int) -> FunctionRoute:
    fields = {"timeout_ms": 1500, "max_request_bytes": 10, "max_response_bytes": 20} | limits
    return FunctionRoute(namespace=namespace, name=name, **fields)


def test_target_precomputes_subject_and_limits() -> None:
    target = target_of(route(), DEFAULTS)
    assert (target.subject, target.label) == ("lf.invoke.default.echo", "echo.default")
    assert (target.timeout_s, target.max_request_bytes, target.max_response_bytes) == (1.5, 10, 20)


def test_zero_limits_take_the_defaults() -> None:
    target = target_of(route(timeout_ms=0, max_request_bytes=0, max_response_bytes=-1), DEFAULTS)
    assert (target.timeout_s, target.max_request_bytes, target.max_response_bytes) == (60.0, 100, 200)


def test_table_serves_each_function_with_its_target() -> None:
    table = build_table([route("echo"), route("echo", "team-a"), route("BAD")], DEFAULTS)
    assert len(table) == 2
    target, rest, params = table.lookup("POST", "", "/function/echo/a/b")
    assert isinstance(target, FunctionTarget)
    assert (target.namespace, rest, params) == ("default", "/a/b", [])
    target, rest, _ = table.lookup("GET", "example.com", "/function/echo.team-a")
    assert (target.namespace, rest) == ("team-a", "")
    with pytest.raises(RouteNotFound):
        table.lookup("GET", "", "/function/nope")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fn.default.echo", b"not json"),
        ("fn.default.echo", b'{"name": "echo"}'),
        ("fn.default.echo", encode_route(route("other"))),
        ("fn.default.echo", encode_route(route("Echo"))),
    ],
    ids=["not-json", "missing-fields", "wrong-key", "bad-name"],
)
def test_malformed_entries_are_skipped(key: str, value: bytes) -> None:
    assert parse_entry(key, value) is None


def test_routes_swap_whole_tables() -> None:
    routes = Routes(DEFAULTS)
    assert not routes.loaded and routes.table is None
    routes.replace_all({"fn.default.echo": route()})
    first = routes.table
    assert routes.loaded and first is not None and len(first) == 1
    routes.put("fn.default.other", route("other"))
    assert routes.table is not first and len(routes.table) == 2
    routes.put("fn.default.echo", None)
    with pytest.raises(RouteNotFound):
        routes.table.lookup("GET", "", "/function/echo")
    assert len(first) == 1  # the old table was never changed under a reader


def test_loaded_with_no_entries_is_an_empty_table() -> None:
    routes = Routes()
    routes.replace_all({})
    assert routes.loaded and routes.table is not None and len(routes.table) == 0


def test_route_entries_keep_their_runtime_and_old_entries_still_decode() -> None:
    from lf_core.contract.routes import FunctionRoute, decode_route, encode_route
    from lf_dataplane.calls.routetable import Defaults, target_of

    entry = FunctionRoute(
        namespace="default", name="f", timeout_ms=1000, max_request_bytes=1, max_response_bytes=1, runtime="go"
    )
    assert decode_route(encode_route(entry)).runtime == "go"
    old = b'{"namespace":"default","name":"f","timeout_ms":1000,"max_request_bytes":1,"max_response_bytes":1}'
    assert target_of(decode_route(old), Defaults()).subject == "lf.invoke.default.f", "entries written before fields"
