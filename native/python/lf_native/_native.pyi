"""Type stubs of the compiled core (Rust, pyo3). Checked against the built module by a test (mypy.stubtest)."""

from collections.abc import Sequence
from typing import Any, final

__version__: str
build_profile: str
ENVELOPE_VERSION: int

Header = tuple[str, str]

class RouteNotFound(LookupError):
    """No route matches the host and path."""

class MethodNotAllowed(RouteNotFound):
    """A route matches the path, but not the method. `args[1]` is the list of allowed methods."""

class EnvelopeError(ValueError):
    """The bytes are not a well-formed envelope of a version this build reads."""

@final
class RoutingTable:
    """An immutable routing table, built once from plain Python data and swapped as a whole when routes change.

    Two kinds of entries:
    - functions `(namespace, name, target)`, served at `/function/{name}[.{namespace}][/{rest}]` for any method
      and host; `{namespace}` defaults to "default".
    - routes `(methods, host, pattern, target)`: `methods` is "*" or a comma-separated list ("GET,POST");
      `host` is "" (any host), an exact host ("api.example.com") or a suffix wildcard ("*.example.com");
      `pattern` is a path of `/`-separated segments, each literal, `{param}` (one segment) or, as the last
      segment, `{*param}` (the rest of the path, possibly empty).
    `target` is any Python object; `lookup` hands it back unchanged.
    """

    @staticmethod
    def build(
        functions: Sequence[tuple[str, str, Any]],
        routes: Sequence[tuple[str, str, str, Any]] = (),
    ) -> RoutingTable:
        """Validate and compile. Raises ValueError naming the first bad entry (bad pattern, duplicate route)."""

    def lookup(self, method: str, host: str, path: str) -> tuple[Any, str, list[Header]]:
        """Return `(target, rest, params)`.

        For a function entry `rest` is the path after `/function/{name}[.{namespace}]` ("" or starting with "/")
        and params is empty. For a route `rest` is the full path and params holds the `{param}` values.
        Precedence: function entries first; then exact host over wildcard host over any host; then, segment by
        segment, literal over `{param}` over `{*param}`.
        Raises RouteNotFound (no match) or MethodNotAllowed (path matches, method does not).
        """

    def __len__(self) -> int: ...

@final
class RequestEnvelope:
    call_id: str
    method: str
    path: str
    query: str
    headers: list[Header]
    params: list[Header]
    body: bytes
    budget_ms: int
    traceparent: str
    tracestate: str

@final
class ResponseEnvelope:
    status: int
    error_kind: int
    cold_start: bool
    duration_ns: int
    call_id: str
    error: str
    headers: list[Header]
    body: bytes

def encode_request(
    call_id: str,
    method: str,
    path: str,
    query: str,
    headers: Sequence[Header],
    body: bytes,
    budget_ms: int,
    params: Sequence[Header] = (),
    traceparent: str = "",
    tracestate: str = "",
) -> bytes: ...
def decode_request(data: bytes) -> RequestEnvelope: ...
def encode_response(
    status: int,
    headers: Sequence[Header],
    body: bytes,
    call_id: str = "",
    error_kind: int = 0,
    error: str = "",
    duration_ns: int = 0,
    cold_start: bool = False,
) -> bytes: ...
def decode_response(data: bytes) -> ResponseEnvelope: ...
