"""Router lookup: the native table against a pure-Python trie with the same rules, at 10 and 10,000 routes.

uv run pytest bench/micro --benchmark-only        (off in the normal test run)
"""

from __future__ import annotations

from typing import Any

import pytest
from lf_native import RoutingTable

from bench.micro.pyrouter import PyRouter


def _routes(count: int) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, str, Any]]]:
    functions = [("default", f"fn-{i}", i) for i in range(count)]
    routes = [("GET,POST", "", f"/v1/res-{i}/{{id}}/items/{{item}}", i) for i in range(count)]
    return functions, routes


@pytest.mark.parametrize("count", [10, 10_000])
@pytest.mark.parametrize("kind", ["native", "python"])
def test_route_lookup(benchmark: Any, kind: str, count: int) -> None:
    functions, routes = _routes(count)
    table = RoutingTable.build(functions, routes) if kind == "native" else PyRouter(functions, routes)
    path = f"/v1/res-{count - 1}/42/items/7"
    target, _, params = benchmark(table.lookup, "GET", "example.com", path)
    assert target == count - 1 and params == [("id", "42"), ("item", "7")]


@pytest.mark.parametrize("count", [10, 10_000])
@pytest.mark.parametrize("kind", ["native", "python"])
def test_function_lookup(benchmark: Any, kind: str, count: int) -> None:
    functions, routes = _routes(count)
    table = RoutingTable.build(functions, routes) if kind == "native" else PyRouter(functions, routes)
    target, rest, _ = benchmark(table.lookup, "GET", "example.com", f"/function/fn-{count // 2}/orders/1")
    assert target == count // 2 and rest == "/orders/1"
