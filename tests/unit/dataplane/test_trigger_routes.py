"""HTTP Trigger entries of LF_ROUTES (`tr.{namespace}.{name}`): served at their host and path with their
function's target, only while the function has an entry; a bad one never blocks the others."""

from __future__ import annotations

import pytest
from lf_core.contract.routes import FunctionRoute, HttpTriggerRoute, encode_route, encode_trigger_route
from lf_dataplane.calls.routetable import Defaults, Routes, build_table, parse_entry
from lf_native import MethodNotAllowed, RouteNotFound

DEFAULTS = Defaults()


def fn(name: str = "users", namespace: str = "default") -> FunctionRoute:
    return FunctionRoute(namespace=namespace, name=name, timeout_ms=2000, max_request_bytes=10, max_response_bytes=20)


def trigger(name: str = "users-api", function: str = "users", **fields: object) -> HttpTriggerRoute:
    values = {"path": "/users/{id}", "methods": ("GET",)} | fields
    return HttpTriggerRoute(namespace="default", name=name, function=function, **values)  # type: ignore[arg-type]


def test_trigger_serves_its_path_with_params_and_the_functions_target() -> None:
    table = build_table([fn(), trigger(host="api.example.com")], DEFAULTS)
    target, rest, params = table.lookup("GET", "api.example.com", "/users/42")
    assert (target.name, target.timeout_s, rest, params) == ("users", 2.0, "/users/42", [("id", "42")])
    with pytest.raises(MethodNotAllowed):
        table.lookup("POST", "api.example.com", "/users/42")
    with pytest.raises(RouteNotFound):
        table.lookup("GET", "other.example.com", "/users/42")


def test_no_methods_means_any_method() -> None:
    table = build_table([fn(), trigger(methods=())], DEFAULTS)
    assert table.lookup("DELETE", "", "/users/1")[0].name == "users"


def test_a_trigger_waits_for_its_function() -> None:
    table = build_table([trigger(), fn("other")], DEFAULTS)
    with pytest.raises(RouteNotFound):
        table.lookup("GET", "", "/users/1")


def test_a_bad_or_duplicate_trigger_is_skipped_and_the_rest_served() -> None:
    entries = [fn(), trigger("a"), trigger("b"), trigger("c", path="/{*rest}/x"), trigger("d", path="/health")]
    table = build_table(entries, DEFAULTS)
    assert table.lookup("GET", "", "/users/1")[0].name == "users"
    assert table.lookup("GET", "", "/health")[0].name == "users"


def test_entries_are_parsed_by_key_prefix() -> None:
    route = trigger()
    assert parse_entry("tr.default.users-api", encode_trigger_route(route)) == route
    assert parse_entry("tr.default.wrong", encode_trigger_route(route)) is None
    assert parse_entry("fn.default.users", encode_trigger_route(route)) is None
    assert parse_entry("fn.default.users", encode_route(fn())) == fn()


def test_routes_swap_in_trigger_changes() -> None:
    routes = Routes()
    routes.replace_all({"fn.default.users": fn()})
    routes.put("tr.default.users-api", trigger())
    assert routes.table is not None and routes.table.lookup("GET", "", "/users/7")[0].name == "users"
    routes.put("tr.default.users-api", None)
    with pytest.raises(RouteNotFound):
        routes.table.lookup("GET", "", "/users/7")
