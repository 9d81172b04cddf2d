"""The HTTP face of a call, as pure functions: what the ingestor answers for each outcome (docs/architecture.md,
"HTTP surface").

Every error answer is JSON `{"error": {"code", "message", "layer"}}`, where `layer` says who failed:
`ingestor` (this process refused or gave up), `broker` (NATS: no replica, unreachable), `runtime` (the replica
failed outside the handler, or reported a timeout / busy) or `function` (the handler itself raised).
No sockets here: the RSGI handler in `app.py` is a thin shell over these, and unit tests call them directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec
from lf_core.contract.names import DEFAULT_NAMESPACE, InvalidName, check_name
from lf_core.contract.paths import has_dot_segment
from lf_core.contract.protocol import ErrorKind

from lf_dataplane.calls.replies import Header

LAYER_INGESTOR: Final = "ingestor"
LAYER_BROKER: Final = "broker"
LAYER_RUNTIME: Final = "runtime"
LAYER_FUNCTION: Final = "function"

CALL_ID_HEADER: Final = "x-call-id"
DURATION_HEADER: Final = "x-duration-seconds"
OVERHEAD_HEADER: Final = "x-overhead-seconds"
"""Platform time of the call: X-Duration-Seconds minus the runtime's own time (all of it when no runtime ran)."""
FUNCTION_PREFIX: Final = "/function/"
RETRY_AFTER_S: Final = 1
SERVER: Final = ("server", "litefunctions")
"""Every answer's Server header: granian adds `server: granian` to an answer that has none, which tells a caller
which HTTP server (and so which known flaws) sits behind the platform; this says only whose platform it is."""
"""Retry-After on 503s. Replicas come and go within seconds; a longer hint only idles clients."""

# Headers a function's answer may not set: framing belongs to the HTTP server, and the call id and duration
# headers to the ingestor.
_RESERVED_RESPONSE_HEADERS: Final = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "server",  # the platform's own (SERVER), one per answer
        CALL_ID_HEADER,
        DURATION_HEADER,
        OVERHEAD_HEADER,
    }
)


class HttpError(Exception):
    """An answer other than the function's own: status, JSON error body and any extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        layer: str,
        *,
        retry_after: int | None = None,
        allow: Sequence[str] = (),
        extra: Sequence[Header] = (),
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.layer = layer
        self.retry_after = retry_after
        self.allow = tuple(allow)
        self.extra = tuple(extra)

    def headers(self) -> list[Header]:
        headers: list[Header] = [("content-type", "application/json")]
        if self.retry_after is not None:
            headers.append(("retry-after", str(self.retry_after)))
        if self.allow:
            headers.append(("allow", ", ".join(self.allow)))
        headers.extend(self.extra)
        return headers

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.layer)


class _ErrorDetail(msgspec.Struct):
    code: str
    message: str
    layer: str


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


_encode_json = msgspec.json.Encoder().encode


def error_body(code: str, message: str, layer: str) -> bytes:
    """`{"error": {"code", "message", "layer"}}` as JSON bytes."""
    return _encode_json(_ErrorBody(_ErrorDetail(code, message, layer)))


def format_duration(seconds: float) -> str:
    """Value of X-Duration-Seconds: seconds with microsecond resolution, as OpenFaaS does."""
    return f"{seconds:.6f}"


def with_call_headers(headers: list[Header], call_id: str, seconds: float) -> list[Header]:
    """Append X-Call-Id and X-Duration-Seconds to `headers` (in place) and return it."""
    headers.append((CALL_ID_HEADER, call_id))
    headers.append((DURATION_HEADER, f"{seconds:.6f}"))
    return headers


# -- request checks -----------------------------------------------------------------------------------------------


def check_content_length(value: str | None, limit: int) -> int | None:
    """The declared body size, or None when the request has no Content-Length (chunked, or no body).

    Raises:
        HttpError: 400 when the value is not a number, 413 when it is over `limit`; the body is never read.
    """
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise HttpError(400, "bad_content_length", f"Content-Length {value[:40]!r} is not a number", LAYER_INGESTOR)
    size = int(value)
    if size > limit:
        raise body_too_large(limit)
    return size


def body_too_large(limit: int) -> HttpError:
    return HttpError(
        413, "body_too_large", f"the request body is larger than the function's limit of {limit} bytes", LAYER_INGESTOR
    )


def headers_size(headers: Iterable[Header]) -> int:
    """Total length of the header names and values (characters; HTTP/1 headers are Latin-1, one byte each)."""
    return sum([len(name) + len(value) for name, value in headers])


def check_headers_size(headers: Iterable[Header], limit: int) -> None:
    """Raises HttpError 431 when the headers together are longer than `limit`."""
    size = headers_size(headers)
    if size > limit:
        raise HttpError(
            431, "headers_too_large", f"the request headers total {size} bytes; at most {limit} are allowed",
            LAYER_INGESTOR,
        )  # fmt: skip


# -- routing misses -----------------------------------------------------------------------------------------------


def parse_function_path(path: str) -> tuple[str, str, str]:
    """Split `/function/{name}[.{namespace}][/{rest}]` into (name, namespace, rest); nothing is validated.

    `rest` is "" or starts with "/". The caller checks that `path` starts with FUNCTION_PREFIX.
    """
    head, slash, rest = path[len(FUNCTION_PREFIX) :].partition("/")
    name, dot, namespace = head.partition(".")
    return name, (namespace if dot else DEFAULT_NAMESPACE), slash + rest


def unrouted(path: str) -> HttpError:
    """The answer for a path the routing table did not match: 400 for a dot segment (`..`, `%2e%2e` once decoded:
    the table matches no such path) or a malformed name, else 404.

    Only called on a miss, so names are parsed in Python only for requests that fail anyway.
    """
    if has_dot_segment(path):
        return HttpError(400, "bad_path", "a path with a '.' or '..' segment is refused", LAYER_INGESTOR)
    if not path.startswith(FUNCTION_PREFIX):
        return HttpError(404, "not_found", f"no route for {path[:200]!r}", LAYER_INGESTOR)
    name, namespace, _ = parse_function_path(path)
    try:
        check_name(name)
        check_name(namespace, "namespace")
    except InvalidName as exc:
        return HttpError(400, "invalid_name", str(exc), LAYER_INGESTOR)
    return HttpError(404, "function_not_found", f"function {name}.{namespace} is not deployed", LAYER_INGESTOR)


def method_not_allowed(allowed: Sequence[str]) -> HttpError:
    return HttpError(
        405, "method_not_allowed", f"method not allowed here; use {', '.join(allowed)}", LAYER_INGESTOR,
        allow=allowed,
    )  # fmt: skip


def not_ready() -> HttpError:
    return HttpError(
        503, "not_ready", "the ingestor has not loaded its route table yet", LAYER_INGESTOR, retry_after=RETRY_AFTER_S
    )


# -- limits and overload -----------------------------------------------------------------------------------------


def rate_limit_headers(limit: int, remaining: int, reset_s: float) -> list[Header]:
    """RateLimit-Limit / -Remaining / -Reset (IETF httpapi-ratelimit-headers): the bucket size, the calls left
    now, and the whole seconds until the bucket is full again."""
    reset = max(1, math.ceil(reset_s)) if reset_s > 0 else 0
    return [("ratelimit-limit", str(limit)), ("ratelimit-remaining", str(remaining)), ("ratelimit-reset", str(reset))]


def rate_limited(function: str, limit: int, remaining: int, reset_s: float, retry_after_s: float) -> HttpError:
    return HttpError(
        429, "rate_limited", f"too many calls to {function}; retry after the time in Retry-After", LAYER_INGESTOR,
        retry_after=max(1, math.ceil(retry_after_s)), extra=rate_limit_headers(limit, remaining, reset_s),
    )  # fmt: skip


def function_overloaded(function: str) -> HttpError:
    """429: the function's in-flight cap in this ingestor is reached and its wait queue is full."""
    return HttpError(
        429, "concurrency_limit", f"{function} has too many calls in flight; retry later", LAYER_INGESTOR,
        retry_after=RETRY_AFTER_S,
    )  # fmt: skip


def overloaded() -> HttpError:
    """503: this ingestor worker has too many calls in flight and its wait queue is full (or the wait ran out)."""
    return HttpError(
        503, "overloaded", "the ingestor is at capacity; retry later", LAYER_INGESTOR, retry_after=RETRY_AFTER_S
    )


def namespace_overloaded(namespace: str, cap: int) -> HttpError:
    """503: the namespace has its share of this worker in flight (LF_NAMESPACE_MAX_INFLIGHT) and its wait ran out."""
    return HttpError(
        503, "overloaded",
        f"namespace {namespace} has {cap} calls in flight in this ingestor worker, its share "
        "(LF_NAMESPACE_MAX_INFLIGHT); retry later", LAYER_INGESTOR, retry_after=RETRY_AFTER_S,
    )  # fmt: skip


def body_timeout(timeout_s: float) -> HttpError:
    """408: the request body did not arrive within LF_BODY_TIMEOUT (the connection is closed after the answer)."""
    return HttpError(408, "body_timeout", f"the request body did not arrive within {timeout_s:g} s", LAYER_INGESTOR)


def body_budget_exceeded() -> HttpError:
    """503: this worker holds LF_MAX_INFLIGHT_BODY_BYTES of request bodies already."""
    return HttpError(
        503, "body_budget", "the ingestor holds too many request bodies at once; retry later", LAYER_INGESTOR,
        retry_after=RETRY_AFTER_S,
    )  # fmt: skip


def async_backlog_full(namespace: str, cap: int) -> HttpError:
    """429: the namespace has LF_NAMESPACE_ASYNC_BACKLOG async calls accepted and not finished."""
    return HttpError(
        429, "async_backlog_full",
        f"namespace {namespace} has {cap} async calls accepted and not finished, its cap "
        "(LF_NAMESPACE_ASYNC_BACKLOG); retry when some have run", LAYER_INGESTOR, retry_after=RETRY_AFTER_S,
    )  # fmt: skip


# -- outcomes of forwarding ---------------------------------------------------------------------------------------

# error kind -> (status, code, layer, message when the runtime sent none)
ERROR_KINDS: Final[dict[int, tuple[int, str, str, str]]] = {
    ErrorKind.HANDLER: (500, "function_error", LAYER_FUNCTION, "the function raised an exception"),
    ErrorKind.TIMEOUT: (504, "timeout", LAYER_RUNTIME, "the function did not answer within its timeout"),
    ErrorKind.BUSY: (503, "busy", LAYER_RUNTIME, "every replica is at its concurrency limit"),
    ErrorKind.BAD_REQUEST: (502, "runtime_bad_request", LAYER_RUNTIME, "the runtime could not read the request"),
    ErrorKind.RESPONSE_TOO_LARGE: (
        502,
        "response_too_large",
        LAYER_RUNTIME,
        "the function's response exceeded its limit",
    ),  # fmt: skip
    ErrorKind.INTERNAL: (502, "runtime_error", LAYER_RUNTIME, "the runtime failed outside the function"),
}


# Kinds whose message is the handler's (an exception's text, a value that would not encode): what it says may name
# files, queries or secrets, so callers get the generic message unless the function exposes its errors.
_PRIVATE_MESSAGES: Final = frozenset({ErrorKind.HANDLER, ErrorKind.INTERNAL})
SEE_LOGS: Final = " (its message is in the function's logs, under this call's X-Call-Id)"


def error_for_kind(kind: int, message: str = "", *, expose: bool = False) -> HttpError:
    """The answer for a response envelope whose `error_kind` is not NONE (docs/protocol.md, "Error kinds").

    A handler's own message reaches the caller only with `expose` (the function's `spec.errors.expose`); else the
    caller gets the kind's generic message, and the text stays in the replica's log and the async call record."""
    known = ERROR_KINDS.get(kind)
    if known is None:
        return bad_response(f"the runtime answered with unknown error kind {kind}")
    status, code, layer, default = known
    retry_after = RETRY_AFTER_S if status == 503 else None
    if kind in _PRIVATE_MESSAGES and not expose:
        message = default + SEE_LOGS
    return HttpError(status, code, message or default, layer, retry_after=retry_after)


def bad_response(detail: str) -> HttpError:
    return HttpError(502, "bad_response", detail, LAYER_RUNTIME)


def response_too_large(size: int, limit: int) -> HttpError:
    return HttpError(
        502, "response_too_large", f"the function answered {size} bytes; its limit is {limit}", LAYER_RUNTIME
    )


def no_replica(function: str) -> HttpError:
    return HttpError(503, "no_replica", f"no replica of {function} is running", LAYER_BROKER, retry_after=RETRY_AFTER_S)


def broker_unavailable() -> HttpError:
    return HttpError(
        503, "broker_unavailable", "the ingestor is not connected to the broker", LAYER_BROKER,
        retry_after=RETRY_AFTER_S,
    )  # fmt: skip


def broker_refused_payload(size: int) -> HttpError:
    return HttpError(413, "body_too_large", f"the call ({size} bytes) is larger than the broker carries", LAYER_BROKER)


def ingestor_timeout(function: str, timeout_s: float) -> HttpError:
    return HttpError(504, "timeout", f"no answer from {function} within {timeout_s:g}s", LAYER_INGESTOR)


def response_headers(headers: Iterable[Header]) -> list[Header]:
    """The function's response headers minus those the HTTP server and the ingestor own."""
    reserved = _RESERVED_RESPONSE_HEADERS
    return [h for h in headers if h[0].lower() not in reserved]


def check_status(status: int) -> int:
    """A function may answer any final status (200-599); anything else is garbage."""
    if not 200 <= status <= 599:
        raise bad_response(f"the runtime answered with HTTP status {status}")
    return status
