"""Type stubs of the compiled core (Rust, pyo3). Checked against the built module by a test (mypy.stubtest)."""

from collections.abc import Sequence
from typing import Any, final

__version__: str
build_profile: str
ENVELOPE_VERSION: int

Header = tuple[str, str]

class RouteNotFound(LookupError):  # noqa: N818 (name fixed by the API)
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
        Raises RouteNotFound (no match) or MethodNotAllowed (path matches, method does not; `args[1]` is the
        sorted list of every method some matching route accepts).

        Matching details: the path is matched raw, as given (`%2F` is not a separator, nothing is decoded); a
        `{param}` never matches an empty segment; the host is compared case-insensitively after dropping a
        `:port` and a trailing `.`; `*.example.com` matches `a.example.com` and `a.b.example.com`, not
        `example.com`; methods compare case-insensitively. A route that matches the path but not the method
        does not stop the search: lower-precedence routes that accept the method still match.
        """

    def __len__(self) -> int: ...

@final
class RequestEnvelope:
    """A decoded request envelope (docs/protocol.md). Immutable; built only by `decode_request`.

    `path` is the path the handler sees, `query` the raw query string without `?`, `headers` and `params` keep
    order and repeats, `budget_ms` is what was left of the call's deadline when the ingestor sent it.
    """

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
    """A decoded response envelope (docs/protocol.md). Immutable; built only by `decode_response`.

    `error_kind` is 0 when the handler answered (then `status` is its own) or one of the error kinds of the
    protocol (1 handler, 2 timeout, 3 busy, 4 bad_request, 5 response_too_large, 6 internal).
    """

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
) -> bytes:
    """Encode a request envelope, sized exactly and written once into the returned bytes.

    Raises TypeError for a header or param that is not a `(str, str)` tuple, OverflowError for a `budget_ms`
    outside 0..2**32-1, EnvelopeError for a field longer than 4 GiB.
    """

def decode_request(data: bytes) -> RequestEnvelope:
    """Decode a request envelope. Raises EnvelopeError (with the reason and offset) for anything malformed."""

def encode_response(
    status: int,
    headers: Sequence[Header],
    body: bytes,
    call_id: str = "",
    error_kind: int = 0,
    error: str = "",
    duration_ns: int = 0,
    cold_start: bool = False,
) -> bytes:
    """Encode a response envelope. Raises TypeError for a malformed header, OverflowError for a `status`,
    `error_kind` or `duration_ns` outside u16/u8/u64."""

def decode_response(data: bytes) -> ResponseEnvelope:
    """Decode a response envelope. Raises EnvelopeError (with the reason and offset) for anything malformed."""

# -- NATS protocol (sans-IO) -------------------------------------------------------------------------------------

class NatsProtocolError(ValueError):
    """The server sent bytes that are not NATS protocol (or over a limit), or a value cannot be encoded as such."""

@final
class NatsParser:
    """A streaming parser of server → client NATS ops for one connection (make a new one per connection).

    `feed(chunk)` takes bytes as they come off the socket (ops split anywhere, many per chunk) and returns the
    complete ops, one flat tuple each: `(kind, sid, key, reply, payload, status, headers)`.

    - `REPLY`: a message on the inbox given at construction (`<inbox_prefix><decimal token>`); `key` is the token
      as an int. `MSG`: any other message; `key` is its subject. For both, `sid` is the subscription id, `reply`
      the reply subject or None, `payload` the body, `status` the code on the header block's status line (503 =
      no responders; 0 without one), `headers` the raw header block of an HMSG (parse it with
      `parse_nats_headers`) or None.
    - `INFO`: `key` is the JSON text; `ERR`: `key` is the -ERR message without quotes; `PING`, `PONG`, `OK`:
      `key` is None. The other fields are 0 or None.

    Raises NatsProtocolError on garbage or a limit passed (a control line over `max_control_line`, INFO over
    64 KiB, a message over `max_payload`); then drop the connection: the parser's state is undefined.
    """

    REPLY: int
    MSG: int
    PING: int
    PONG: int
    INFO: int
    OK: int
    ERR: int

    def __new__(cls, inbox_prefix: str = "", max_control_line: int = 4096) -> NatsParser: ...
    @property
    def max_payload(self) -> int:
        """The server's max_payload once INFO was parsed (1 MiB before)."""

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of an op."""

    def feed(
        self, data: bytes
    ) -> list[tuple[int, int, int | str | None, str | None, bytes | None, int, bytes | None]]: ...

def encode_pub(subject: str, reply: str, payload: bytes) -> bytes:
    """`PUB <subject> [reply] <size>` and the payload; `reply` "" means none. NatsProtocolError for a subject or
    reply that is empty or holds whitespace."""

def encode_inbox_pub(subject: str, inbox_prefix: str, token: int, payload: bytes) -> bytes:
    """A request to an inbox: `PUB <subject> <inbox_prefix><token> <size>` and the payload."""

def encode_hpub(subject: str, reply: str, headers: Sequence[Header], payload: bytes) -> bytes:
    """`HPUB` with a `NATS/1.0` header block built from `headers`, then the payload."""

def encode_sub(subject: str, sid: int, queue: str = "") -> bytes:
    """`SUB <subject> [queue] <sid>`; `queue` "" means none."""

def encode_unsub(sid: int, max_msgs: int = 0) -> bytes:
    """`UNSUB <sid> [max_msgs]`; `max_msgs` 0 means none."""

def encode_connect(options_json: str) -> bytes:
    """`CONNECT <options_json>`; the JSON must be one line."""

def parse_nats_headers(block: bytes) -> tuple[int, str, list[Header]]:
    """`(status, description, headers)` of a raw header block: status 0 and description "" when the status line
    has no code; headers in order, repeats kept, values trimmed. NatsProtocolError when malformed."""
