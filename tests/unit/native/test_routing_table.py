"""The routing table through the Python API: functions, params, wildcards, hosts, methods, precedence, scale."""

import pytest
from lf_native import MethodNotAllowed, RouteNotFound, RoutingTable


class Target:
    """A stand-in for whatever the caller routes to; compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def targets() -> dict[str, Target]:
    return {n: Target(n) for n in ["hello", "ns-hello", "me", "user", "rest", "exact", "wild", "any", "read"]}


@pytest.fixture
def table(targets: dict[str, Target]) -> RoutingTable:
    t = targets
    return RoutingTable.build(
        [("default", "hello", t["hello"]), ("team-a", "hello", t["ns-hello"])],
        [
            ("GET", "", "/users/me", t["me"]),
            ("GET,HEAD", "", "/users/{id}", t["user"]),
            ("*", "", "/static/{*path}", t["rest"]),
            ("*", "api.example.com", "/", t["exact"]),
            ("*", "*.example.com", "/", t["wild"]),
            ("*", "", "/", t["any"]),
            ("GET", "", "/items/{id}", t["read"]),
        ],
    )


@pytest.mark.parametrize(
    ("path", "want", "rest"),
    [
        ("/function/hello", "hello", ""),
        ("/function/hello/", "hello", "/"),
        ("/function/hello/a/b", "hello", "/a/b"),
        ("/function/hello.default", "hello", ""),
        ("/function/hello.team-a/x", "ns-hello", "/x"),
    ],
)
def test_function_paths(table: RoutingTable, targets: dict[str, Target], path: str, want: str, rest: str) -> None:
    assert table.lookup("DELETE", "whatever", path) == (targets[want], rest, [])


def test_targets_come_back_by_identity(table: RoutingTable, targets: dict[str, Target]) -> None:
    target, _, _ = table.lookup("GET", "", "/users/7")
    assert target is targets["user"]


@pytest.mark.parametrize(
    ("path", "want", "params"),
    [
        ("/users/me", "me", []),
        ("/users/7", "user", [("id", "7")]),
        ("/static", "rest", [("path", "")]),
        ("/static/css/a.css", "rest", [("path", "css/a.css")]),
        ("/users/a%2Fb", "user", [("id", "a%2Fb")]),
    ],
)
def test_route_params_and_precedence(
    table: RoutingTable, targets: dict[str, Target], path: str, want: str, params: list[tuple[str, str]]
) -> None:
    assert table.lookup("GET", "", path) == (targets[want], path, params)


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("api.example.com", "exact"),
        ("API.EXAMPLE.COM:443", "exact"),
        ("www.example.com", "wild"),
        ("a.b.example.com:8080", "wild"),
        ("example.com", "any"),
        ("", "any"),
    ],
)
def test_hosts(table: RoutingTable, targets: dict[str, Target], host: str, want: str) -> None:
    assert table.lookup("GET", host, "/")[0] is targets[want]


def test_method_mismatch_lists_allowed_methods(table: RoutingTable) -> None:
    with pytest.raises(MethodNotAllowed) as info:
        table.lookup("POST", "", "/users/7")
    assert info.value.args[1] == ["GET", "HEAD"]
    assert isinstance(info.value, RouteNotFound)


def test_unknown_path_is_not_found(table: RoutingTable) -> None:
    with pytest.raises(RouteNotFound) as info:
        table.lookup("GET", "", "/nope/x")
    assert not isinstance(info.value, MethodNotAllowed)
    with pytest.raises(LookupError):
        table.lookup("GET", "", "/function/unknown")


def test_len_counts_functions_and_routes(table: RoutingTable) -> None:
    assert len(table) == 9
    assert len(RoutingTable.build([])) == 0


def test_ten_thousand_routes() -> None:
    routes = [("GET", "", f"/v{i % 7}/svc{i}/items/{{id}}", i) for i in range(10_000)]
    table = RoutingTable.build([], routes)
    assert len(table) == 10_000
    for i in range(0, 10_000, 331):
        assert table.lookup("GET", "h", f"/v{i % 7}/svc{i}/items/{i}") == (
            i,
            f"/v{i % 7}/svc{i}/items/{i}",
            [("id", str(i))],
        )


@pytest.mark.parametrize(
    ("functions", "routes", "match"),
    [
        ([("Default", "f", 0)], [], r"function #0 .*namespace"),
        ([("default", "f", 0), ("default", "f", 1)], [], r"function #1 .*duplicate"),
        ([], [("GET", "", "/a/{*x}/b", 0)], r"route #0 .*last segment"),
        ([], [("GET", "", "no-slash", 0)], r"route #0 .*start with '/'"),
        ([], [("GET", "", "/a", 0), ("GET", "", "/a", 1)], r"route #1 .*duplicate route"),
        ([], [("GET", "h:80", "/a", 0)], r"route #0 .*invalid host"),
    ],
)
def test_build_errors_name_the_entry(functions: list, routes: list, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        RoutingTable.build(functions, routes)


def test_build_rejects_wrong_shapes() -> None:
    with pytest.raises(TypeError, match=r"routes\[0\]"):
        RoutingTable.build([], [("GET", "", "/")])  # type: ignore[list-item]


def test_table_is_frozen(table: RoutingTable) -> None:
    with pytest.raises(AttributeError):
        table.extra = 1  # type: ignore[attr-defined]
